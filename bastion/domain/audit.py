"""The audit's data: what a region holds (Snapshot), the roles of its groups (Layout), findings.

A snapshot of the region is read in a few paginated calls; every check is a pure function over
it returning findings. `--fix` repairs only what bastion owns (rules described `bastion:...`,
its own gateway groups and instances) and never another rule; `--dry-run` shows the repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.login_keys import LoginKeysReport
from bastion.domain.model import Action, IngressRule, InstanceInfo, KeyPairInfo, SecurityGroup
from bastion.domain.settings import DEFAULT_PORT
from bastion.domain.tags import (
    TAG_GENERATION,
    TAG_INCIDENT,
    TAG_NAME,
    TAG_ROLE,
)

log = logging.getLogger(__name__)

FAIL = "fail"


WARN = "warn"


DB_PORTS = (3306, 5432)


WEB_PORTS = (80, 443)


DEFAULT_MAX_KEY_AGE = timedelta(days=90)


@dataclass(frozen=True)
class Finding:
    """One thing the audit found: what, where, why it matters, and how to repair it."""

    check: str
    severity: str
    resource: str
    message: str
    fix: str
    action: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as JSON-ready data."""
        return {
            "id": self.check,
            "severity": self.severity,
            "resource": self.resource,
            "message": self.message,
            "fix": self.fix,
            "auto_fix": self.action.summary if self.action else None,
        }


@dataclass(frozen=True)
class AuditOptions:
    """Which groups play which role, and the thresholds."""

    app_sg: str | None = None
    db_sg: str | None = None
    elb_sg: str | None = None
    max_key_age: timedelta = DEFAULT_MAX_KEY_AGE
    port: int = DEFAULT_PORT


@dataclass(frozen=True)
class Snapshot:
    """What the region holds, read once; every check works on this alone."""

    now: datetime
    groups: tuple[SecurityGroup, ...]
    gateways: tuple[InstanceInfo, ...]
    volumes_encrypted: Mapping[str, bool] = field(default_factory=dict)
    key_pairs: tuple[KeyPairInfo, ...] = ()
    # Each running gateway's login keys, read over the admin channel, by instance id.
    login_keys: Mapping[str, LoginKeysReport] = field(default_factory=dict)
    # Each gateway's user data as EC2 holds it (base64 decoded, maybe gzip'd), by instance id.
    user_data: Mapping[str, bytes] = field(default_factory=dict)
    # EC2 serial console access for the account (None: the region would not say).
    serial_console_access: bool | None = None


@dataclass(frozen=True)
class Layout:
    """The seed's roles resolved to groups."""

    gateway_groups: tuple[SecurityGroup, ...]
    current_gateway_ids: frozenset[str]
    app: tuple[SecurityGroup, ...]
    # --db-sg, and groups the layout shows are the database's (see `infer_db_groups`).
    dbs: tuple[SecurityGroup, ...]
    elb: SecurityGroup | None
    ports: tuple[int, ...]


# --- layout ----------------------------------------------------------------------------------


def is_gateway_group(group: SecurityGroup) -> bool:
    """Tell whether a group is one of bastion's gateway groups."""
    return group.tags.get(TAG_ROLE) == "gateway-group"


def live_gateways(snapshot: Snapshot) -> list[InstanceInfo]:
    """Gateways in service: an instance kept for an incident is evidence, not a gateway."""
    return [i for i in snapshot.gateways if TAG_INCIDENT not in i.tags]


def _find(snapshot: Snapshot, id_or_name: str | None, flag: str) -> SecurityGroup | None:
    if id_or_name is None:
        return None
    found = [g for g in snapshot.groups if id_or_name in (g.group_id, g.name)]
    if not found:
        raise NotFoundError(f"{flag} {id_or_name!r}: no such security group in this region")
    if len(found) > 1:
        raise UsageError(
            f"{flag} {id_or_name!r}: {len(found)} groups have that name; pass the group id"
        )
    return found[0]


def resolve_layout(snapshot: Snapshot, options: AuditOptions) -> Layout:
    """Name the roles: gateway groups (current and stale), app, db and load balancer groups."""
    gateway_groups = tuple(g for g in snapshot.groups if is_gateway_group(g))
    gateway_ids = {g.group_id for g in gateway_groups}
    current: set[str] = set()
    served = set()
    for instance in live_gateways(snapshot):
        current |= gateway_ids & set(instance.security_group_ids)
        served.add(instance.tags.get(TAG_NAME))
    # A gateway with no instance (stopped mid-`up`, say): its newest generation is current.
    newest: dict[str, SecurityGroup] = {}
    for g in gateway_groups:
        name = g.tags.get(TAG_NAME, "")
        if name not in served and (
            name not in newest or generation_of(g) > generation_of(newest[name])
        ):
            newest[name] = g
    current |= {g.group_id for g in newest.values()}
    explicit_app = _find(snapshot, options.app_sg, "--app-sg")
    db = _find(snapshot, options.db_sg, "--db-sg")
    elb = _find(snapshot, options.elb_sg, "--elb-sg")
    # A group admitting SSH from the gateway is an app group, unless named as another role.
    named = {g.group_id for g in (db, elb) if g}
    inferred = [
        g
        for g in snapshot.groups
        if g.group_id not in gateway_ids | named
        and any(r.source_group in gateway_ids and r.admits_port(22) for r in g.ingress)
    ]
    app = ([explicit_app] if explicit_app else []) + [
        g for g in inferred if explicit_app is None or g.group_id != explicit_app.group_id
    ]
    if (db or elb) and not app:
        raise UsageError(
            "no app group known to check --db-sg/--elb-sg against; pass --app-sg (id or name)"
        )
    ports = sorted({22, options.port, *(i.port for i in snapshot.gateways if i.port)})
    dbs = ([db] if db else []) + [
        g
        for g in infer_db_groups(snapshot, app, gateway_ids)
        if db is None or g.group_id != db.group_id
    ]
    return Layout(gateway_groups, frozenset(current), tuple(app), tuple(dbs), elb, tuple(ports))


def infer_db_groups(
    snapshot: Snapshot, app: Sequence[SecurityGroup], gateway_ids: set[str]
) -> list[SecurityGroup]:
    """Groups the layout shows are the database's: sg-app egresses to them on 3306/5432, or
    they admit 3306/5432 from sg-app."""
    app_ids = {g.group_id for g in app}
    egress_to = {
        r.source_group
        for g in app
        for r in g.egress
        if r.source_group and any(r.admits_port(p) for p in DB_PORTS)
    }
    return [
        g
        for g in snapshot.groups
        if g.group_id not in app_ids | gateway_ids
        and (
            g.group_id in egress_to
            or any(
                r.source_group in app_ids and any(r.admits_port(p) for p in DB_PORTS)
                for r in g.ingress
            )
        )
    ]


def generation_of(group: SecurityGroup) -> int:
    """Return the gateway generation a group belongs to (1 when untagged)."""
    try:
        return int(group.tags.get(TAG_GENERATION, "1"))
    except ValueError:
        return 1


def source_of(rule: IngressRule) -> str:
    """Return what a rule admits: its CIDR or source group."""
    return rule.cidr or rule.source_group or "?"


def ports_of(rule: IngressRule) -> str:
    """Describe a rule's protocol and ports, e.g. `tcp/22-23`."""
    if rule.protocol == "-1":
        return "all traffic"
    if rule.from_port == rule.to_port:
        return f"{rule.protocol}/{rule.from_port}"
    return f"{rule.protocol}/{rule.from_port}-{rule.to_port}"


def revoke_own(group: SecurityGroup, rule: IngressRule) -> Action | None:
    """Offer a revoke only for a rule bastion made; anything else is the owner's call."""
    if rule.label is None:
        return None
    return Action(
        "revoke_rule",
        f"revoke {ports_of(rule)} from {source_of(rule)} ({rule.rule_id}) on {group.group_id}",
        {"group_id": group.group_id, "rule_ids": [rule.rule_id]},
    )


def manual_fix(group: SecurityGroup, rule: IngressRule) -> str:
    """Say how to remove a rule bastion did not make (never done by --fix)."""
    return (
        f"revoke rule {rule.rule_id} ({ports_of(rule)} from {source_of(rule)}) on {group.group_id} "
        "(not made by bastion: --fix leaves it to you)"
    )
