"""Gather what ties instances to this machine's record, then let the domain decide (see
domain.identity): the cheap proof first (the recorded ids), then the instance's own console,
then its sshd answering with the pinned host key; nothing here changes anything."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bastion.domain.errors import BastionError
from bastion.domain.fingerprints import fingerprint
from bastion.domain.identity import GatewayRecord, Proof, choose_instances, needs_proof
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_CERTIFICATES, TAG_INCIDENT, TAG_INCIDENT_STATE
from bastion.usecases.ports import Deps
from bastion.usecases.shared.certificates import issue_certificate, operator_key
from bastion.usecases.shared.context import Context, endpoint_for
from bastion.usecases.shared.hostkey import console_host_key

log = logging.getLogger(__name__)


def gateway_candidates(
    instances: Sequence[InstanceInfo], open_incidents: bool = False
) -> list[InstanceInfo]:
    """Return the instances that claim to be the gateway (with `open_incidents`, burn's too)."""
    return [
        i for i in instances if TAG_INCIDENT not in i.tags or (open_incidents and _open_incident(i))
    ]


def identify(
    ctx: Context,
    deps: Deps | None,
    command: str,
    candidates: Sequence[InstanceInfo] | None = None,
) -> frozenset[str]:
    """Return the ids of the live instances `command` may act on, or raise (nothing changed)."""
    if candidates is None:
        candidates = gateway_candidates(ctx.aws.compute.find_instances(ctx.settings.name))
    record = ctx.files.record()
    proofs = {
        c.instance_id: prove(ctx, deps, c, record)
        for c in candidates
        if ctx.chosen_instance is None and needs_proof(c, record)
    }
    chosen = choose_instances(
        ctx.settings.name,
        candidates,
        record,
        proofs,
        command,
        chosen=ctx.chosen_instance,
        without_keys=ctx.without_keys,
    )
    return frozenset(c.instance_id for c in chosen)


def prove(ctx: Context, deps: Deps | None, instance: InstanceInfo, record: GatewayRecord) -> Proof:
    """Learn what the instance itself shows: its console's host key, its sshd's host key, and
    (on a certificate gateway) whether it takes this operator's admin certificate."""
    pinned = ctx.files.read().pinned_host_key
    if not record.pinned_fingerprint or pinned is None:
        # Nothing pinned: neither the console nor sshd can prove anything, but the CA can.
        return Proof(admin_certificate_accepted=_admin_certificate_accepted(ctx, deps, instance))
    iid = instance.instance_id
    try:
        printed: str | None = fingerprint(console_host_key(ctx, None, iid, wait=False))
    except BastionError as exc:
        log.info("no host key on the console of %s: %s", iid, exc.message)
        printed = None
    if printed == record.pinned_fingerprint:
        return Proof(console_fingerprint=printed)
    if _pinned_key_answers(ctx, deps, instance, pinned):
        return Proof(printed, pinned_key_answered=True)
    accepted = _admin_certificate_accepted(ctx, deps, instance, pinned)
    return Proof(printed, admin_certificate_accepted=accepted)


def _pinned_key_answers(
    ctx: Context, deps: Deps | None, instance: InstanceInfo, pinned: str
) -> bool:
    if deps is None or instance.state != "running" or not ctx.files.login_key.exists():
        return False
    try:
        host, port = endpoint_for(ctx.settings, instance, instance.port or ctx.settings.port)
        deps.probe.verify_login(
            host, port, ctx.settings.login_user, str(ctx.files.login_key), pinned
        )
    except BastionError as exc:
        log.info("%s did not prove the pinned host key: %s", instance.instance_id, exc.message)
        return False
    return True


def _admin_certificate_accepted(
    ctx: Context, deps: Deps | None, instance: InstanceInfo, pinned: str | None = None
) -> bool:
    """Log in as the admin principal with a fresh certificate, trusting the pinned host key (or,
    with none pinned, the one the instance's own console printed)."""
    if deps is None or instance.state != "running" or not takes_certificates(instance):
        return False
    try:
        trusted = pinned or console_host_key(ctx, None, instance.instance_id, wait=False)
        issued = issue_certificate(
            ctx.settings,
            deps,
            key=operator_key(ctx),
            admin=True,
            context=ctx,
            only=frozenset({instance.instance_id}),
        )
        host, port = endpoint_for(ctx.settings, instance, instance.port or ctx.settings.port)
        deps.probe.keyctl(
            host, port, ctx.settings.admin_user, str(issued.identity), trusted, "list"
        )
    except BastionError as exc:
        log.info("%s took no admin certificate: %s", instance.instance_id, exc.message)
        return False
    return True


def _open_incident(instance: InstanceInfo) -> bool:
    return instance.tags.get(TAG_INCIDENT_STATE) == "open"


def takes_certificates(instance: InstanceInfo) -> bool:
    """Tell whether the instance claims to trust a CA (a claim: the login proves it)."""
    return instance.tags.get(TAG_CERTIFICATES) == "true"
