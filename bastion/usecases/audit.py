"""Use case `audit`: is the whole layout (sg-elb -> sg-app -> sg-rds, gateway -> sg-app) safe?

A snapshot of the region is read in a few paginated calls; every check is a pure function over
it (`domain.audit_checks`). `--fix` repairs only what bastion owns (rules described
`bastion:...`, its own gateway groups and instances) and never another rule; `--dry-run` shows
the repairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.domain.apply import apply_plan
from bastion.domain.audit import FAIL, AuditOptions, Finding, Snapshot
from bastion.domain.audit_checks import fix_plan, run_checks
from bastion.domain.model import Action, Plan
from bastion.domain.settings import Settings
from bastion.usecases.ports import Cloud, Deps

log = logging.getLogger(__name__)


def read_snapshot(aws: Cloud, now: datetime) -> Snapshot:
    """Read groups, gateway instances, their volumes and login keys (five paginated reads)."""
    groups = aws.groups.all_groups()
    gateways = aws.compute.all_gateway_instances()
    volumes = [v for i in gateways for v in i.volume_ids]
    return Snapshot(
        now=now,
        groups=tuple(groups),
        gateways=tuple(gateways),
        volumes_encrypted=aws.compute.volume_encryption(volumes),
        key_pairs=tuple(aws.key_pairs.all_login_key_pairs()),
    )


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
    aws = deps.aws(settings)
    findings = run_checks(read_snapshot(aws, deps.clock.now()), options)
    plan = fix_plan(findings)
    if not fix or dry_run or not plan.actions:
        return AuditResult(findings, plan, [], [])

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
    after = run_checks(read_snapshot(aws, deps.clock.now()), options)
    return AuditResult(after, plan, outcome.done, fixed)
