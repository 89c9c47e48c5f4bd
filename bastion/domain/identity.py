"""Which instances are bastion's own gateway: tied to this machine's record, never by tags alone.

Anyone with `ec2:CreateTags` can make any instance look like the gateway (name, generation,
fingerprints, an open incident). So `burn`, `down`, `rotate` and pin recovery act only on an
instance this machine can tie to its own record: an instance id it launched (or verified), a
console that prints the pinned host key (GetConsoleOutput is the instance's own), or the pinned
host key answering at the instance. Anything else needs the operator's explicit `--instance`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bastion.domain.errors import ConflictError, NotFoundError
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_CREATED_AT, TAG_CREATED_BY, TAG_GENERATION


@dataclass(frozen=True)
class GatewayRecord:
    """What this machine holds of its gateway: ids it launched, the pin, whether it has keys."""

    instance_ids: frozenset[str] = frozenset()
    pinned_fingerprint: str | None = None
    holds_keys: bool = False

    @property
    def empty(self) -> bool:
        """Tell whether this machine holds nothing of the gateway (another operator's machine)."""
        return not (self.instance_ids or self.pinned_fingerprint or self.holds_keys)


@dataclass(frozen=True)
class Proof:
    """What was learned of one instance beyond its tags."""

    console_fingerprint: str | None = None  # the host key its own console printed
    pinned_key_answered: bool = False  # its sshd proved the pinned host key
    # Its sshd, answering with the host key its own console printed, let this operator in
    # with an admin certificate from the gateway's CA (held in KMS): no production host or
    # decoy trusts that CA.
    admin_certificate_accepted: bool = False


def tie(instance: InstanceInfo, record: GatewayRecord, proof: Proof | None) -> str | None:
    """Return why `instance` is this machine's gateway, or None when nothing ties it."""
    if instance.instance_id in record.instance_ids:
        return "launched or verified by this machine"
    if proof is None:
        return None
    if record.pinned_fingerprint and proof.console_fingerprint == record.pinned_fingerprint:
        return "its console prints the pinned host key"
    if proof.pinned_key_answered:
        return "it answers with the pinned host key"
    if proof.admin_certificate_accepted:
        return "it accepts this operator's admin certificate from the gateway's CA"
    return None


def named_by_bastion(name: str, resource_name: str) -> bool:
    """Tell whether a group or key pair carries a name bastion gives (`bastion-NAME-gw-N`, etc.).

    A name is fixed when the resource is made; CreateTags cannot change it. So a production
    group or key pair tagged as the gateway's is not taken for bastion's own (and never deleted).
    """
    own = re.escape(name)
    return bool(re.fullmatch(rf"bastion-{own}-(gw-\d+|[A-Za-z0-9]{{1,10}})", resource_name))


def needs_proof(instance: InstanceInfo, record: GatewayRecord) -> bool:
    """Tell whether the record alone does not tie `instance` (so proof is worth gathering)."""
    return instance.instance_id not in record.instance_ids


def made_by(instance: InstanceInfo) -> str:
    """Return who made the instance and when, as its tags claim (shown, never trusted)."""
    who = instance.tags.get(TAG_CREATED_BY, "an unknown operator")
    when = instance.tags.get(TAG_CREATED_AT, "an unknown time")
    return f"{instance.instance_id} (made by {who} at {when})"


def choose_instances(
    name: str,
    candidates: Sequence[InstanceInfo],
    record: GatewayRecord,
    proofs: Mapping[str, Proof],
    command: str,
    chosen: str | None = None,
    without_keys: bool = False,
) -> tuple[InstanceInfo, ...]:
    """Return the instances `command` may act on, or raise a one-line error; changes nothing.

    `candidates` are the live instances whose tags name gateway `name`. `chosen` is the
    operator's `--instance`; `without_keys` their explicit consent to act from a machine that
    holds none of the gateway's keys (only `down` and `burn` offer it).
    """
    if chosen is not None:
        picked = [c for c in candidates if c.instance_id == chosen]
        if not picked:
            known = ", ".join(c.instance_id for c in candidates) or "none"
            raise NotFoundError(
                f"--instance {chosen} is not a live instance of gateway {name!r} (its tags "
                f"name: {known}); run `bastion status`"
            )
        return tuple(picked)
    if not candidates:
        return ()
    tied = [c for c in candidates if tie(c, record, proofs.get(c.instance_id))]
    untied = [c for c in candidates if c not in tied]
    if not untied:
        return tuple(candidates)
    decoy = max(untied, key=lambda c: c.generation)
    if tied:
        own = max(tied, key=lambda c: c.generation)
        raise ConflictError(
            f"gateway {name!r}: {decoy.instance_id} carries its tags (generation "
            f"{decoy.tags.get(TAG_GENERATION, '?')}) but is not tied to this machine's record, "
            f"whose gateway is {own.instance_id}; nothing was changed: run `bastion {command} "
            f"--instance {own.instance_id}` (or `--instance {decoy.instance_id}` if you mean it)"
        )
    if record.empty:
        if without_keys:
            return tuple(untied) if len(untied) == 1 else _pick_one(name, untied, command)
        offer = (
            f"pass `--without-keys` to {command} it anyway"
            if command in ("down", "burn")
            else "copy the gateway folder from the machine that made it"
        )
        raise ConflictError(
            f"gateway {name!r} is {made_by(decoy)}, and this machine holds none of its keys "
            f"or records; nothing was changed: {offer}, or ask that operator"
        )
    launched = ", ".join(sorted(record.instance_ids)) or "none recorded"
    raise ConflictError(
        f"gateway {name!r}: {decoy.instance_id} carries its tags but is not tied to this "
        f"machine's record (launched here: {launched}; its console and sshd do not show the "
        f"pinned host key); nothing was changed: run `bastion {command} --instance "
        f"{decoy.instance_id}` only if you know it is yours"
    )


def _pick_one(name: str, untied: Sequence[InstanceInfo], command: str) -> tuple[InstanceInfo]:
    ids = ", ".join(c.instance_id for c in untied)
    raise ConflictError(
        f"gateway {name!r} has several instances ({ids}) and this machine holds none of their "
        f"keys; nothing was changed: run `bastion {command} --without-keys --instance ID`"
    )


def require_record(
    name: str,
    record: GatewayRecord,
    maker: Mapping[str, str] | None,
    command: str,
    without_keys: bool,
) -> str | None:
    """Refuse to act on a gateway this machine holds nothing of, unless `--without-keys`.

    `maker` is the tags of the gateway's resources (None: AWS holds nothing of it). Returns the
    warning to show before going ahead without keys (who made the gateway), if any.
    """
    if maker is None or not record.empty:
        return None
    who = maker.get(TAG_CREATED_BY, "an unknown operator")
    when = maker.get(TAG_CREATED_AT, "an unknown time")
    if without_keys:
        return (
            f"gateway {name!r} was made by {who} at {when}; this machine holds none of its keys "
            f"(--without-keys): {command} goes ahead"
        )
    raise ConflictError(
        f"gateway {name!r} was made by {who} at {when}, and this machine holds none of its keys "
        f"or records; nothing was changed: pass `--without-keys` to {command} it anyway, or ask "
        "that operator"
    )
