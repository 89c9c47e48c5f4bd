"""The audit's checks: each a pure function of one snapshot and its layout, returning findings.

`fix_plan` orders the repairs bastion may make; only rules and groups bastion owns get one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bastion.domain.allowlist import expired_rules, prune_actions
from bastion.domain.audit import (
    DB_PORTS,
    FAIL,
    WARN,
    WEB_PORTS,
    AuditOptions,
    Finding,
    Layout,
    Snapshot,
    live_gateways,
    manual_fix,
    ports_of,
    resolve_layout,
    revoke_own,
    source_of,
)
from bastion.domain.cidr import is_world_open
from bastion.domain.model import Action, IngressRule, InstanceInfo, Plan, SecurityGroup
from bastion.domain.tags import TAG_INCIDENT, TAG_INCIDENT_STATE, TAG_KEY_FINGERPRINT, TAG_NAME


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
            action = revoke_own(group, rule)
            findings.append(
                Finding(
                    "world-open-ssh",
                    FAIL,
                    group.group_id,
                    f"{group.name} admits tcp/{','.join(map(str, open_ports))} from {rule.cidr} "
                    f"(rule {rule.rule_id}): anyone on the Internet can try to log in",
                    action.summary if action else manual_fix(group, rule),
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
            action = revoke_own(app, rule)
            findings.append(
                Finding(
                    "app-ssh-source",
                    FAIL,
                    app.group_id,
                    f"{app.name} admits SSH from {what} (rule {rule.rule_id}); only the current "
                    "gateway should",
                    action.summary if action else manual_fix(app, rule),
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
    action = revoke_own(group, rule)
    return Finding(
        check,
        FAIL,
        group.group_id,
        f"{group.name} admits {ports_of(rule)} from {source_of(rule)} (rule {rule.rule_id}); it "
        f"should admit {should}",
        action.summary if action else manual_fix(group, rule),
        action,
    )


def check_gateway_hosts(
    snapshot: Snapshot, layout: Layout, max_key_age: timedelta
) -> list[Finding]:
    """Each gateway: IMDSv2 required, encrypted volumes, no instance profile, a young login key."""
    findings = []
    for instance in live_gateways(snapshot):
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


def check_login_keys(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """Each gateway trusts only login keys bastion put there (keys are read over the admin
    channel where this machine holds the gateway's admin key)."""
    findings = []
    for instance in live_gateways(snapshot):
        report = snapshot.login_keys.get(instance.instance_id)
        if report is None:
            continue
        iid, name = instance.instance_id, instance.tags.get(TAG_NAME, "default")
        if report.unknown:
            findings.append(
                Finding(
                    "login-key-unknown",
                    FAIL,
                    iid,
                    f"gateway {name!r} trusts login key(s) bastion did not put there "
                    f"({', '.join(report.unknown)}); whoever holds its admin key can add them, "
                    "and each opens tunnels into the network",
                    f"run `bastion rotate --name {name}` (it removes them and ends their "
                    f"sessions); if nobody on your team added them, `bastion burn --name {name}`",
                )
            )
        elif not report.checked and report.expected:
            findings.append(
                Finding(
                    "login-keys-unchecked",
                    WARN,
                    iid,
                    f"gateway {name!r}'s login keys could not be read: {report.reason}",
                    "run the audit where the gateway's sshd is reachable (`bastion up` admits "
                    "your IP)",
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
        check_login_keys,
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
