"""Use case `audit`: is the whole layout (sg-elb -> sg-app -> sg-rds, gateway -> sg-app) safe?

A snapshot of the region is read in a few paginated calls; every check is a pure function over
it returning findings. `--fix` repairs only what bastion owns (rules described `bastion:...`,
its own gateway groups and instances) and never another rule; `--dry-run` shows the repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bastion.adapters.callerip import is_world_open
from bastion.allow import expired_rules, prune_actions
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import Action, IngressRule, InstanceInfo, KeyPairInfo, Plan, SecurityGroup
from bastion.domain.settings import DEFAULT_PORT
from bastion.domain.tags import (
    TAG_GENERATION,
    TAG_INCIDENT,
    TAG_INCIDENT_STATE,
    TAG_KEY_FINGERPRINT,
    TAG_NAME,
    TAG_ROLE,
)

if TYPE_CHECKING:
    from bastion.adapters.aws.client import Ec2
    from bastion.domain.settings import Settings
    from bastion.gateway import Deps

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


@dataclass(frozen=True)
class Layout:
    """The seed's roles resolved to groups."""

    gateway_groups: tuple[SecurityGroup, ...]
    current_gateway_ids: frozenset[str]
    app: tuple[SecurityGroup, ...]
    db: SecurityGroup | None
    elb: SecurityGroup | None
    ports: tuple[int, ...]


def read_snapshot(ec2: Ec2, now: datetime) -> Snapshot:
    """Read groups, gateway instances, their volumes and login keys (five paginated reads)."""
    groups = ec2.groups.all_groups()
    gateways = ec2.compute.all_gateway_instances()
    volumes = [v for i in gateways for v in i.volume_ids]
    return Snapshot(
        now=now,
        groups=tuple(groups),
        gateways=tuple(gateways),
        volumes_encrypted=ec2.compute.volume_encryption(volumes),
        key_pairs=tuple(ec2.key_pairs.all_login_key_pairs()),
    )


# --- layout ----------------------------------------------------------------------------------


def _is_gateway_group(group: SecurityGroup) -> bool:
    return group.tags.get(TAG_ROLE) == "gateway-group"


def _live_gateways(snapshot: Snapshot) -> list[InstanceInfo]:
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
    gateway_groups = tuple(g for g in snapshot.groups if _is_gateway_group(g))
    gateway_ids = {g.group_id for g in gateway_groups}
    current: set[str] = set()
    served = set()
    for instance in _live_gateways(snapshot):
        current |= gateway_ids & set(instance.security_group_ids)
        served.add(instance.tags.get(TAG_NAME))
    # A gateway with no instance (stopped mid-`up`, say): its newest generation is current.
    newest: dict[str, SecurityGroup] = {}
    for g in gateway_groups:
        name = g.tags.get(TAG_NAME, "")
        if name not in served and (
            name not in newest or _generation(g) > _generation(newest[name])
        ):
            newest[name] = g
    current |= {g.group_id for g in newest.values()}
    explicit_app = _find(snapshot, options.app_sg, "--app-sg")
    inferred = [
        g
        for g in snapshot.groups
        if g.group_id not in gateway_ids
        and any(r.source_group in gateway_ids and r.admits_port(22) for r in g.ingress)
    ]
    app = ([explicit_app] if explicit_app else []) + [
        g for g in inferred if explicit_app is None or g.group_id != explicit_app.group_id
    ]
    db = _find(snapshot, options.db_sg, "--db-sg")
    elb = _find(snapshot, options.elb_sg, "--elb-sg")
    if (db or elb) and not app:
        raise UsageError(
            "no app group known to check --db-sg/--elb-sg against; pass --app-sg (id or name)"
        )
    ports = sorted({22, options.port, *(i.port for i in snapshot.gateways if i.port)})
    return Layout(gateway_groups, frozenset(current), tuple(app), db, elb, tuple(ports))


def _generation(group: SecurityGroup) -> int:
    try:
        return int(group.tags.get(TAG_GENERATION, "1"))
    except ValueError:
        return 1


def _source(rule: IngressRule) -> str:
    return rule.cidr or rule.source_group or "?"


def _ports(rule: IngressRule) -> str:
    if rule.protocol == "-1":
        return "all traffic"
    if rule.from_port == rule.to_port:
        return f"{rule.protocol}/{rule.from_port}"
    return f"{rule.protocol}/{rule.from_port}-{rule.to_port}"


def _revoke_own(group: SecurityGroup, rule: IngressRule) -> Action | None:
    """Offer a revoke only for a rule bastion made; anything else is the owner's call."""
    if rule.label is None:
        return None
    return Action(
        "revoke_rule",
        f"revoke {_ports(rule)} from {_source(rule)} ({rule.rule_id}) on {group.group_id}",
        {"group_id": group.group_id, "rule_ids": [rule.rule_id]},
    )


def _manual(group: SecurityGroup, rule: IngressRule) -> str:
    return (
        f"revoke rule {rule.rule_id} ({_ports(rule)} from {_source(rule)}) on {group.group_id} "
        "(not made by bastion: --fix leaves it to you)"
    )


# --- checks: each a pure function of the snapshot and layout ---------------------------------


def check_world_open(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """SSH (22) or a gateway port reachable from 0.0.0.0/0 or ::/0, in any group."""
    findings = []
    for group in snapshot.groups:
        for rule in group.ingress:
            if not (rule.cidr and is_world_open(rule.cidr)):
                continue
            open_ports = [p for p in layout.ports if rule.admits_port(p)]
            if not open_ports:
                continue
            action = _revoke_own(group, rule)
            findings.append(
                Finding(
                    "world-open-ssh",
                    FAIL,
                    group.group_id,
                    f"{group.name} admits tcp/{','.join(map(str, open_ports))} from {rule.cidr} "
                    f"(rule {rule.rule_id}): anyone on the Internet can try to log in",
                    action.summary if action else _manual(group, rule),
                    action,
                )
            )
    return findings


def check_app_ssh(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The app group admits SSH only from the current gateway group."""
    findings = []
    gateway_ids = {g.group_id for g in layout.gateway_groups}
    for app in layout.app:
        ssh = [r for r in app.ingress if r.admits_port(22)]
        for rule in ssh:
            if rule.source_group in layout.current_gateway_ids:
                continue
            if rule.source_group in gateway_ids:
                what = f"an old gateway generation ({rule.source_group})"
            elif rule.source_group:
                what = f"group {rule.source_group}, which is not the gateway"
            elif rule.cidr and rule.cidr.endswith(("/32", "/128")):
                what = f"the address {rule.cidr}"
            else:
                what = f"the network {rule.cidr}"
            action = _revoke_own(app, rule)
            findings.append(
                Finding(
                    "app-ssh-source",
                    FAIL,
                    app.group_id,
                    f"{app.name} admits SSH from {what} (rule {rule.rule_id}); only the current "
                    "gateway should",
                    action.summary if action else _manual(app, rule),
                    action,
                )
            )
        if layout.current_gateway_ids and not any(
            r.source_group in layout.current_gateway_ids for r in ssh
        ):
            findings.append(
                Finding(
                    "app-ssh-missing",
                    WARN,
                    app.group_id,
                    f"{app.name} does not admit SSH from the current gateway group",
                    f"run `bastion up --app-sg {app.group_id}`",
                )
            )
    return findings


def check_db(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The database group admits 3306/5432 only from the app group."""
    if layout.db is None:
        return []
    app_ids = {g.group_id for g in layout.app}
    return [
        _finding_source(
            "db-source",
            layout.db,
            rule,
            f"{'/'.join(map(str, DB_PORTS))} only from the app group",
        )
        for rule in layout.db.ingress
        if any(rule.admits_port(p) for p in DB_PORTS) and rule.source_group not in app_ids
    ]


def check_app_web(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The app group admits 80/443 only from the load balancer group (when --elb-sg is given)."""
    if layout.elb is None:
        return []
    findings = []
    for app in layout.app:
        findings += [
            _finding_source("app-web-source", app, rule, "80/443 only from the load balancer")
            for rule in app.ingress
            if any(rule.admits_port(p) for p in WEB_PORTS)
            and rule.source_group != layout.elb.group_id
        ]
    return findings


def _finding_source(check: str, group: SecurityGroup, rule: IngressRule, should: str) -> Finding:
    action = _revoke_own(group, rule)
    return Finding(
        check,
        FAIL,
        group.group_id,
        f"{group.name} admits {_ports(rule)} from {_source(rule)} (rule {rule.rule_id}); it "
        f"should admit {should}",
        action.summary if action else _manual(group, rule),
        action,
    )


def check_gateway_hosts(
    snapshot: Snapshot, layout: Layout, max_key_age: timedelta
) -> list[Finding]:
    """Each gateway: IMDSv2 required, encrypted volumes, no instance profile, a young login key."""
    findings = []
    for instance in _live_gateways(snapshot):
        iid, name = instance.instance_id, instance.tags.get(TAG_NAME, "default")
        if instance.metadata_http_tokens != "required":
            findings.append(
                Finding(
                    "imdsv2-not-required",
                    FAIL,
                    iid,
                    f"gateway {name!r} answers IMDSv1 requests (HttpTokens "
                    f"{instance.metadata_http_tokens or 'unknown'}); SSRF can read its metadata",
                    "require IMDSv2 (HttpTokens required)",
                    Action(
                        "require_imdsv2",
                        f"require IMDSv2 on {iid}",
                        {"instance_id": iid},
                    ),
                )
            )
        plain = [v for v in instance.volume_ids if not snapshot.volumes_encrypted.get(v, True)]
        if plain:
            findings.append(
                Finding(
                    "volume-unencrypted",
                    FAIL,
                    iid,
                    f"gateway {name!r} has unencrypted volume(s) {', '.join(plain)}",
                    f"relaunch it: terminate {iid}, then `bastion up --name {name}` launches an "
                    "encrypted one",
                )
            )
        if instance.instance_profile_arn:
            findings.append(
                Finding(
                    "instance-profile",
                    FAIL,
                    iid,
                    f"gateway {name!r} carries instance profile {instance.instance_profile_arn}; "
                    "whoever gets onto the gateway gets its AWS permissions",
                    f"detach it (`aws ec2 disassociate-iam-instance-profile` for {iid}); the "
                    "gateway needs no AWS permissions",
                )
            )
        created = _key_created(snapshot, instance)
        if created is not None and snapshot.now - created > max_key_age:
            days = (snapshot.now - created).days
            findings.append(
                Finding(
                    "login-key-old",
                    FAIL,
                    iid,
                    f"gateway {name!r}'s login key is {days} days old (limit "
                    f"{max_key_age.days} days)",
                    f"run `bastion rotate --name {name}`",
                )
            )
    return findings


def _key_created(snapshot: Snapshot, instance: InstanceInfo) -> datetime | None:
    fingerprint = instance.tags.get(TAG_KEY_FINGERPRINT)
    for key in snapshot.key_pairs:
        if fingerprint and key.fingerprint == fingerprint and key.created_at:
            return key.created_at
    return instance.launch_time


def check_expired_allow(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """Allow rules past their expiry that are still on a gateway group."""
    findings = []
    for group in layout.gateway_groups:
        expired = expired_rules(group, snapshot.now)
        if not expired:
            continue
        _, actions = prune_actions(group, snapshot.now)
        findings.append(
            Finding(
                "allow-expired",
                FAIL,
                group.group_id,
                f"{len(expired)} expired allow rule(s) still open the gateway port: "
                + ", ".join(f"{r.cidr} ({r.label})" for r in expired),
                f"run `bastion allow --prune --name {group.tags.get(TAG_NAME, 'default')}`",
                actions[0],
            )
        )
    return findings


def check_incidents(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """An incident that `bastion burn` opened and has not finished."""
    return [
        Finding(
            "incident-open",
            FAIL,
            i.instance_id,
            f"incident {i.tags.get(TAG_INCIDENT, '?')} on gateway "
            f"{i.tags.get(TAG_NAME, 'default')!r} is still open",
            f"finish it: `bastion burn --name {i.tags.get(TAG_NAME, 'default')} --resume "
            f"{i.tags.get(TAG_INCIDENT, 'ID')}`",
        )
        for i in snapshot.gateways
        if i.tags.get(TAG_INCIDENT_STATE) == "open"
    ]


def check_stale_groups(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """Gateway groups of an old generation that no instance uses any more."""
    in_use = {g for i in snapshot.gateways for g in i.security_group_ids}
    findings = []
    for group in layout.gateway_groups:
        if group.group_id in layout.current_gateway_ids or group.group_id in in_use:
            continue
        referenced = [
            (other, r)
            for other in snapshot.groups
            for r in (*other.ingress, *other.egress)
            if r.source_group == group.group_id and other.group_id != group.group_id
        ]
        foreign = [(o, r) for o, r in referenced if r.label is None]
        action = (
            None
            if foreign
            else Action(
                "delete_group",
                f"delete leftover gateway group {group.group_id} ({group.name})",
                {"group_id": group.group_id},
            )
        )
        findings.append(
            Finding(
                "stale-gateway-group",
                WARN,
                group.group_id,
                f"{group.name} is left over from an old gateway generation",
                action.summary
                if action
                else "remove the rules that reference it "
                f"({', '.join(r.rule_id for _, r in foreign)}) and delete it",
                action,
            )
        )
    return findings


Check = Callable[[Snapshot, Layout], list[Finding]]


def run_checks(snapshot: Snapshot, options: AuditOptions) -> list[Finding]:
    """Run every check over one snapshot."""
    layout = resolve_layout(snapshot, options)
    checks: list[Check] = [
        check_world_open,
        check_app_ssh,
        check_db,
        check_app_web,
        lambda s, lay: check_gateway_hosts(s, lay, options.max_key_age),
        check_expired_allow,
        check_incidents,
        check_stale_groups,
    ]
    return [finding for check in checks for finding in check(snapshot, layout)]


_FIX_ORDER = {"revoke_rule": 0, "prune_ingress": 0, "require_imdsv2": 1, "delete_group": 2}


def fix_plan(findings: Sequence[Finding]) -> Plan:
    """Order the repairs bastion may make: rules first, then instances, groups last."""
    actions: list[Action] = []
    for finding in findings:
        if finding.action is not None and finding.action not in actions:
            actions.append(finding.action)
    actions.sort(key=lambda a: _FIX_ORDER[a.kind])
    return Plan("audit", "*", tuple(actions))


@dataclass
class AuditResult:
    """The findings (after any repair), the repair plan and what it did."""

    findings: list[Finding]
    plan: Plan
    applied: list[Action]
    fixed: list[Finding]

    @property
    def failures(self) -> list[Finding]:
        """Return the findings that fail the audit."""
        return [f for f in self.findings if f.severity == FAIL]


def audit(
    settings: Settings,
    deps: Deps,
    options: AuditOptions,
    fix: bool = False,
    dry_run: bool = False,
) -> AuditResult:
    """Check the region's layout; with `fix`, repair what bastion owns and check again."""
    from bastion.domain.apply import apply_plan

    ec2 = deps.ec2(settings)
    findings = run_checks(read_snapshot(ec2, deps.clock.now()), options)
    plan = fix_plan(findings)
    if not fix or dry_run or not plan.actions:
        return AuditResult(findings, plan, [], [])

    def revoke(action: Action, results: dict[str, Any]) -> None:
        ec2.groups.revoke(action.params["group_id"], action.params["rule_ids"], egress=False)

    def require_imdsv2(action: Action, results: dict[str, Any]) -> None:
        ec2.compute.require_imdsv2(action.params["instance_id"])

    def delete_group(action: Action, results: dict[str, Any]) -> None:
        ec2.groups.delete_group(action.params["group_id"])

    handlers = {
        "revoke_rule": revoke,
        "prune_ingress": revoke,
        "require_imdsv2": require_imdsv2,
        "delete_group": delete_group,
    }
    outcome = apply_plan(plan, dict(handlers), deps.reporter, before_each=deps.before_each)
    fixed = [f for f in findings if f.action is not None and f.action in outcome.done]
    after = run_checks(read_snapshot(ec2, deps.clock.now()), options)
    return AuditResult(after, plan, outcome.done, fixed)
