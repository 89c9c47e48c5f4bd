"""Use case `audit`: is the whole layout (sg-elb -> sg-app -> sg-rds, gateway -> sg-app) safe?

A snapshot of the region is read in a few paginated calls; every check is a pure function over
it (`domain.audit_checks`). `--fix` repairs only what bastion owns (rules described
`bastion:...`, its own gateway groups and instances) and never another rule; `--dry-run` shows
the repairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bastion.adapters.localstate import GatewayFiles
from bastion.domain.apply import apply_plan
from bastion.domain.audit import FAIL, AuditOptions, Finding, Snapshot
from bastion.domain.audit_checks import fix_plan, run_checks
from bastion.domain.login_keys import LoginKeysReport
from bastion.domain.model import Action, InstanceInfo, KeyPairInfo, Plan
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_INCIDENT, TAG_NAME
from bastion.usecases.ports import Cloud, Deps
from bastion.usecases.shared.login_keys import read_login_keys

log = logging.getLogger(__name__)

LoginKeysReader = Callable[
    [Cloud, list[InstanceInfo], list[KeyPairInfo]], dict[str, LoginKeysReport]
]


def read_snapshot(aws: Cloud, now: datetime, login_keys: LoginKeysReader | None = None) -> Snapshot:
    """Read groups, gateway instances, their volumes, login key pairs, the serial console
    switch (five paginated reads) and each gateway's user data (one read a gateway); with
    `login_keys`, also each gateway's authorized login keys over its admin channel."""
    groups = aws.groups.all_groups()
    gateways = aws.compute.all_gateway_instances()
    volumes = [v for i in gateways for v in i.volume_ids]
    key_pairs = aws.key_pairs.all_login_key_pairs()
    return Snapshot(
        now=now,
        groups=tuple(groups),
        gateways=tuple(gateways),
        volumes_encrypted=aws.compute.volume_encryption(volumes),
        key_pairs=tuple(key_pairs),
        login_keys=login_keys(aws, gateways, key_pairs) if login_keys else {},
        user_data={i.instance_id: aws.audit_reads.raw_user_data(i.instance_id) for i in gateways},
        serial_console_access=aws.audit_reads.serial_console_access(),
    )


def gateway_login_keys(settings: Settings, deps: Deps) -> LoginKeysReader:
    """Return the reader of each running gateway's login keys, with this machine's keys."""

    def read(
        aws: Cloud, gateways: list[InstanceInfo], key_pairs: list[KeyPairInfo]
    ) -> dict[str, LoginKeysReport]:
        found: dict[str, LoginKeysReport] = {}
        for instance in gateways:
            if instance.state != "running" or TAG_INCIDENT in instance.tags:
                continue
            own = replace(settings, name=instance.tags.get(TAG_NAME, "default"))
            files = GatewayFiles(own.gateway_dir(aws.region).expanduser(), own.name)
            found[instance.instance_id] = read_login_keys(own, deps, files, instance, key_pairs)
        return found

    return read


@dataclass
class AuditResult:
    """The findings (after any repair), the repair plan and what it did."""

    findings: list[Finding]
    plan: Plan
    applied: list[Action]
    fixed: list[Finding]
    # Each running gateway's authorized login keys (or why not read), by instance id.
    login_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    # EC2 serial console access for the account (None: the endpoint would not say).
    serial_console_access: bool | None = None

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
    aws = deps.aws(settings)
    login_keys = gateway_login_keys(settings, deps)
    snapshot = read_snapshot(aws, deps.clock.now(), login_keys)
    findings = run_checks(snapshot, options)
    keys_seen = {iid: report.to_dict() for iid, report in snapshot.login_keys.items()}
    plan = fix_plan(findings)
    if not fix or dry_run or not plan.actions:
        return AuditResult(findings, plan, [], [], keys_seen, snapshot.serial_console_access)

    def revoke(action: Action, results: dict[str, Any]) -> None:
        aws.groups.revoke(action.params["group_id"], action.params["rule_ids"], egress=False)

    def require_imdsv2(action: Action, results: dict[str, Any]) -> None:
        aws.compute.require_imdsv2(action.params["instance_id"])

    def delete_group(action: Action, results: dict[str, Any]) -> None:
        aws.groups.delete_group(action.params["group_id"])

    handlers = {
        "revoke_rule": revoke,
        "prune_ingress": revoke,
        "require_imdsv2": require_imdsv2,
        "delete_group": delete_group,
    }
    outcome = apply_plan(plan, dict(handlers), deps.reporter, before_each=deps.before_each)
    fixed = [f for f in findings if f.action is not None and f.action in outcome.done]
    # --fix never changes login keys (that is `bastion rotate`): the first reading stands.
    after = run_checks(
        replace(read_snapshot(aws, deps.clock.now()), login_keys=snapshot.login_keys), options
    )
    return AuditResult(after, plan, outcome.done, fixed, keys_seen, snapshot.serial_console_access)
