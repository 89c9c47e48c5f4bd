"""One gateway's context (AWS, local folder, operator, lock) and small steps the use cases share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.adapters.callerip import detect_caller_cidr
from bastion.adapters.localstate import GatewayFiles, append_private
from bastion.domain.apply import json_line
from bastion.domain.cidr import coverage, normalize_cidr, refuse_world_open
from bastion.domain.errors import SshError
from bastion.domain.model import InstanceInfo, ObservedGateway
from bastion.domain.settings import Settings
from bastion.usecases.ports import Cloud, Deps

log = logging.getLogger(__name__)


@dataclass
class Context:
    """One gateway's AWS connection, local files and operator identity."""

    settings: Settings
    aws: Cloud
    files: GatewayFiles
    known_operator: str | None = None
    # The operator's explicit choice (--instance) and consent (--without-keys): see identity.
    chosen_instance: str | None = None
    without_keys: bool = False

    @property
    def operator(self) -> str:
        """Return the caller's ARN, asked of STS the first time it is needed."""
        if self.known_operator is None:
            self.known_operator = self.aws.caller_arn()
        return self.known_operator


def open_context(
    settings: Settings,
    deps: Deps,
    lock_for: str | None = None,
    identify: bool = True,
    chosen_instance: str | None = None,
    without_keys: bool = False,
    aws_lock: bool = True,
) -> Context:
    """Connect, identify the caller and locate the gateway's local folder.

    `lock_for` names a command that will change the gateway: it then holds the gateway's lock
    (see adapters.lock) before any AWS call, so two bastions on this machine never interleave,
    and then its lock in AWS (see shared.lease), so two machines do not either. `aws_lock=False`
    leaves that one to the caller (`up` takes it only to apply, `burn` after containment).
    `identify=False` leaves the caller's identity (an STS call) until it is first needed.
    """
    aws = deps.aws(settings)
    folder = settings.gateway_dir(aws.region).expanduser()
    if lock_for is not None:
        from bastion.adapters.lock import hold_gateway_lock

        hold_gateway_lock(
            folder.with_name(f"{settings.name}.lock"),
            lock_for,
            deps.clock,
            deps.reporter,
            settings.lock_wait,
        )
    files = GatewayFiles(folder, settings.name)
    context = Context(settings, aws, files, None, chosen_instance, without_keys)
    if identify:
        context.operator  # noqa: B018  (missing credentials fail here, before anything else)
    if lock_for is not None and aws_lock:
        from bastion.usecases.shared.lease import hold_aws_lock

        hold_aws_lock(context, deps, lock_for)
    return context


def allowed_cidrs(settings: Settings, deps: Deps) -> tuple[str, ...]:
    """Return the CIDRs to open: --allow as given, or the detected caller IP."""
    if settings.allow:
        cidrs = tuple(dict.fromkeys(normalize_cidr(c) for c in settings.allow))
    else:
        cidrs = (detect_caller_cidr(deps.fetch),)
    if settings.allow_anywhere:
        if coverage(cidrs).world_open:
            deps.reporter.warn(
                f"the gateway port will be reachable from {', '.join(cidrs)} "
                "(--allow-anywhere); anyone can try to log in"
            )
        return cidrs
    refuse_world_open(cidrs, settings.allow_wide, "--allow-wide", "--allow-anywhere")
    return cidrs


def endpoint_for(settings: Settings, instance: InstanceInfo, port: int) -> tuple[str, int]:
    """Return where this operator reaches the gateway's sshd (see --reach)."""
    if settings.reach == "public":
        if not instance.public_ip:
            raise SshError(
                f"{instance.instance_id} has no public IP; use --reach private over a VPN, "
                "or --reach 127.0.0.1:PORT with an SSM port forward"
            )
        return instance.public_ip, port
    if settings.reach == "private":
        if not instance.private_ip:
            raise SshError(f"{instance.instance_id} has no private IP yet; rerun shortly")
        return instance.private_ip, port
    host, _, forwarded = settings.reach.rpartition(":")
    return host.strip("[]"), int(forwarded)


def journal_for(files: GatewayFiles) -> Callable[[dict[str, Any]], None]:
    def write(entry: dict[str, Any]) -> None:
        if files.root.exists():
            append_private(files.journal, json_line(entry))

    return write


def tag_time(instance: InstanceInfo, tag: str) -> datetime | None:
    """Return when a key was made: its tag (set by rotations), else the instance's launch."""

    stamp = instance.tags.get(tag)
    if stamp:
        try:
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            pass
    return instance.launch_time


def referencing_app_group(aws: Cloud, observed: ObservedGateway) -> str | None:
    """Find the group that admits SSH from this gateway, so `down` removes that reference."""
    groups = ([observed.group] if observed.group else []) + list(observed.stale_groups)
    if not groups:
        return None
    return aws.groups.group_referencing([g.group_id for g in groups])
