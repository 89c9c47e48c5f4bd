"""The gateway's status report: what exists, who may connect, key ages, incidents, drift."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bastion.adapters import keys
from bastion.adapters.callerip import detect_caller_cidr
from bastion.adapters.incidents import past_incidents
from bastion.domain.allowlist import is_expired, rule_view
from bastion.domain.cidr import normalize_cidr
from bastion.domain.errors import CallerIpError
from bastion.domain.model import ObservedGateway
from bastion.domain.settings import Settings
from bastion.domain.tags import (
    TAG_ADMIN_KEY_CREATED_AT,
    TAG_CREATED_AT,
    TAG_HOST_KEY_CREATED_AT,
    TAG_HOST_KEY_FINGERPRINT,
)
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context, open_context, tag_time
from bastion.usecases.shared.inventory import observe_with_app_group


def gateway_report(
    settings: Settings,
    deps: Deps,
    ctx: Context | None = None,
    cidr_hint: tuple[str, ...] | None = None,
    observed: ObservedGateway | None = None,
) -> dict[str, Any]:
    """Describe the gateway and its drift from what bastion expects."""
    ctx = ctx or open_context(settings, deps)
    observed = observed or observe_with_app_group(ctx.aws, settings.name, settings.app_sg)
    local = ctx.files.read()
    now = deps.clock.now()
    drift: list[str] = []
    caller: str | None
    try:
        if cidr_hint:
            caller = cidr_hint[0]
        elif settings.allow:
            caller = normalize_cidr(settings.allow[0])
        else:
            caller = detect_caller_cidr(deps.fetch)
    except CallerIpError:
        caller = None
    instance = observed.instance
    group = observed.group
    allowed = [
        {**rule_view(r, now, ctx.operator), "description": r.description}
        for r in (group.ingress if group else ())
    ]
    expired = [a["cidr"] for a in allowed if a["expired"]]
    if expired:
        drift.append(
            f"expired rule(s) still present ({', '.join(map(str, expired))}); they no longer "
            "count as access: run `bastion allow --prune`"
        )
    if not observed.exists:
        drift.append("gateway does not exist; run `bastion up`")
    elif instance is None:
        drift.append("no live instance; run `bastion up` to relaunch")
    elif instance.state != "running":
        drift.append(f"instance is {instance.state}; run `bastion up` to start it")
    port = instance.port if instance else settings.port
    caller_allowed: bool | None = None
    if caller is not None and group is not None:
        address = ipaddress.ip_network(caller).network_address
        caller_allowed = any(
            r.cidr
            and r.from_port <= (port or 0) <= r.to_port
            and address in ipaddress.ip_network(r.cidr)
            and not is_expired(r, now)
            for r in group.ingress
        )
        if not caller_allowed:
            drift.append(f"your IP {caller} is not allowed on {group.group_id}; run `bastion up`")
    key = observed.key_pair
    if key and local.login_fingerprint and key.fingerprint != local.login_fingerprint:
        drift.append("EC2 key pair and local login key differ; run `bastion rotate`")
    if ctx.files.next_login_key.exists():
        drift.append("a login-key rotation is half done; run `bastion rotate` to finish it")
    if ctx.files.next_host_key_pub.exists():
        drift.append(
            "a host-key rotation is half done; run `bastion rotate --host-key` to finish it"
        )
    if observed.standby or observed.retiring or ctx.files.relaunch_dir.exists():
        drift.append("a relaunch is half done; run `bastion rotate --relaunch` to finish it")
    if observed.exists and local.login_fingerprint is None:
        drift.append("the login key is not on this machine")
    if instance is not None and local.pinned_host_key is None:
        drift.append(
            f"the host-key pin ({ctx.files.host_key_pub.name}) is missing on this machine, so "
            f"ssh cannot check {instance.instance_id}; run `bastion up` to recover it from the "
            "instance's console output"
        )
    for name in local.missing:
        drift.append(f"{name} is missing on this machine; run `bastion up` to rewrite it")
    app = observed.app_group
    app_sources: list[dict[str, Any]] = []
    if app is not None:
        for r in app.ingress:
            if r.admits_port(22):
                current = group is not None and r.source_group == group.group_id
                app_sources.append(
                    {
                        "source": r.cidr or r.source_group,
                        "is_gateway": current,
                        "description": r.description,
                    }
                )
        if group and not any(s["is_gateway"] for s in app_sources):
            drift.append(f"{app.group_id} does not admit SSH from the gateway; run `bastion up`")
    for stale in observed.stale_groups:
        drift.append(f"leftover group {stale.group_id} ({stale.name}) from another generation")

    incidents = past_incidents(ctx.files.incidents)
    for incident in incidents:
        if incident["state"] != "closed":
            drift.append(f"incident {incident['id']} is not finished; run `bastion burn`")

    def age(when: datetime | None) -> float | None:
        return round((now - when).total_seconds() / 86400, 1) if when else None

    return {
        "name": settings.name,
        "region": ctx.aws.region,
        "exists": observed.exists,
        "instance": None
        if instance is None
        else {
            "id": instance.instance_id,
            "state": instance.state,
            "public_ip": instance.public_ip,
            "private_ip": instance.private_ip,
            "generation": instance.generation,
            "image_id": instance.image_id,
            "age_days": age(instance.launch_time),
        },
        "port": port,
        "security_group": group.group_id if group else None,
        "allowed": allowed,
        "caller": caller,
        "caller_allowed": caller_allowed,
        "key_pair": key.name if key else None,
        "login_key_fingerprint": local.login_fingerprint,
        "host_key_fingerprint": keys.fingerprint(local.pinned_host_key)
        if local.pinned_host_key
        else (instance.tags.get(TAG_HOST_KEY_FINGERPRINT) if instance else None),
        "host_key_pinned": local.pinned_host_key is not None,
        "host_key_recovered": last_pin_recovery(ctx.files.journal),
        "missing_local_files": list(local.missing),
        "key_created_at": instance.tags.get(TAG_CREATED_AT) if instance else None,
        "login_key_age_days": age(key.created_at) if key else None,
        "host_key_age_days": age(tag_time(instance, TAG_HOST_KEY_CREATED_AT)) if instance else None,
        "admin_key_age_days": age(tag_time(instance, TAG_ADMIN_KEY_CREATED_AT))
        if instance
        else None,
        "app_group": app.group_id if app else None,
        "app_ssh_sources": app_sources,
        "local_folder": str(ctx.files.root),
        "incidents": incidents,
        "drift": drift,
    }


def last_pin_recovery(journal: Path) -> dict[str, Any] | None:
    """Return the journal's last recovery of a lost host-key pin (when, from what), if any."""
    if not journal.exists():
        return None
    found = None
    for line in journal.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"pin_recovered"' in line:
            with contextlib.suppress(ValueError):
                found = json.loads(line)
    return found
