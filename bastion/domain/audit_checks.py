"""The audit's checks: each a pure function of one snapshot and its layout, returning findings.

`fix_plan` orders the repairs bastion may make; only rules and groups bastion owns get one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bastion.domain.allowlist import expired_rules, prune_actions
from bastion.domain.audit import (
    FAIL,
    WARN,
    AuditOptions,
    Finding,
    Layout,
    Snapshot,
    live_gateways,
    resolve_layout,
)
from bastion.domain.audit_network import (
    check_app_ports,
    check_app_ssh,
    check_app_web,
    check_db,
    check_wide_sources,
    check_world_open,
)
from bastion.domain.audit_userdata import check_user_data_secrets
from bastion.domain.model import Action, InstanceInfo, Plan
from bastion.domain.tags import TAG_INCIDENT, TAG_INCIDENT_STATE, TAG_KEY_FINGERPRINT, TAG_NAME


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


def check_serial_console(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """EC2 serial console access is off for the account (it is a way in around sshd)."""
    if not snapshot.serial_console_access:
        return []
    return [
        Finding(
            "serial-console-enabled",
            FAIL,
            "account",
            "EC2 serial console access is enabled for this account and region: whoever may call "
            "ec2-instance-connect:SendSerialConsoleSSHPublicKey reaches a gateway's console "
            "without its security group or sshd",
            "turn it off: `aws ec2 disable-serial-console-access` (bastion never needs it)",
        )
    ]


Check = Callable[[Snapshot, Layout], list[Finding]]


def run_checks(snapshot: Snapshot, options: AuditOptions) -> list[Finding]:
    """Run every check over one snapshot."""
    layout = resolve_layout(snapshot, options)
    checks: list[Check] = [
        check_world_open,
        check_wide_sources,
        check_app_ssh,
        check_app_ports,
        check_db,
        check_app_web,
        check_user_data_secrets,
        check_serial_console,
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
