"""Use case `allow`: who may reach the gateway port, until when; add, list, revoke, prune.

The rules' grammar, expiry and the planners are pure (`domain.allowlist`); this observes the
gateway group, plans and applies. Every mutating command prunes expired rules first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.adapters.callerip import detect_caller_cidr
from bastion.domain.allowlist import (
    DEFAULT_FOR,
    DEFAULT_LABEL,
    check_label,
    expiry_after,
    parse_duration,
    plan_allow,
    plan_prune,
    plan_revoke,
    rule_view,
)
from bastion.domain.apply import apply_plan
from bastion.domain.cidr import is_world_open, normalize_cidr, refuse_world_open
from bastion.domain.errors import CallerIpError, NotFoundError, UsageError
from bastion.domain.model import LABEL_ME, Action, ObservedGateway, Plan, SecurityGroup
from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import open_context
from bastion.usecases.shared.inventory import observe
from bastion.usecases.shared.lease import hold_aws_lock, holds_aws_lock

log = logging.getLogger(__name__)


@dataclass
class AllowResult:
    """What an `allow` invocation planned and did, and the allow-list afterwards."""

    plan: Plan
    applied: list[Action]
    rules: list[dict[str, Any]]
    group_id: str | None


def allow(
    settings: Settings,
    deps: Deps,
    target: str,
    duration: str = DEFAULT_FOR,
    label: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    wide: bool = False,
) -> AllowResult:
    """Add (or renew) a rule letting `target` (a CIDR, or `me`) reach the gateway port; a
    range wider than /24 (IPv4) or /56 (IPv6) needs `wide`."""
    lifetime = parse_duration(duration)
    if target.strip().lower() == LABEL_ME:
        cidr = detect_caller_cidr(deps.fetch)
        label = label or LABEL_ME
    else:
        cidr = normalize_cidr(target)
        label = label or DEFAULT_LABEL
        if label == LABEL_ME:
            raise UsageError(
                "the label `me` is kept by `bastion up` for your detected IP; pick another "
                "--label for an explicit CIDR"
            )
    check_label(label)
    if is_world_open(cidr):
        raise UsageError(
            f"{cidr} would open the gateway to the whole Internet; `bastion allow` never does "
            "that (see `bastion up --allow-anywhere`)"
        )
    refuse_world_open([cidr], wide, "--wide", "")
    return _change(
        settings,
        deps,
        dry_run,
        lambda name, group, port, operator, now: plan_allow(
            name,
            group,
            port,
            cidr,
            label,
            operator,
            now,
            expiry_after(now, lifetime) if lifetime else None,
            force,
        ),
    )


def revoke(
    settings: Settings, deps: Deps, target: str, force: bool = False, dry_run: bool = False
) -> AllowResult:
    """Remove the rules labelled (or for the CIDR) `target`, never locking the caller out."""
    caller: str | None
    try:
        caller = detect_caller_cidr(deps.fetch)
    except CallerIpError as exc:
        log.info("caller IP unknown: %s", exc)
        caller = None
    return _change(
        settings,
        deps,
        dry_run,
        lambda name, group, port, operator, now: plan_revoke(
            name, group, port, target, operator, caller, now, force
        ),
    )


def prune(settings: Settings, deps: Deps, dry_run: bool = False) -> AllowResult:
    """Remove the expired rules (safe from cron: no gateway, or nothing expired, is a no-op)."""
    return _change(
        settings,
        deps,
        dry_run,
        lambda name, group, port, operator, now: plan_prune(name, group, now),
        missing_ok=True,
    )


def list_rules(settings: Settings, deps: Deps) -> AllowResult:
    """Return who may reach the gateway port: every ingress rule, with owner and lifetime."""
    ctx = open_context(settings, deps)
    observed = observe(ctx.aws, settings.name, None)
    group = _require_group(settings, observed, missing_ok=True)
    now = deps.clock.now()
    rules = [rule_view(r, now, ctx.operator) for r in (group.ingress if group else ())]
    return AllowResult(
        Plan("allow", settings.name, ()), [], rules, group.group_id if group else None
    )


PlanFor = Callable[[str, SecurityGroup, int, str, datetime], Plan]


def _change(
    settings: Settings, deps: Deps, dry_run: bool, plan_for: PlanFor, missing_ok: bool = False
) -> AllowResult:
    ctx = open_context(settings, deps, lock_for=None if dry_run else "allow", aws_lock=False)

    def planned() -> tuple[SecurityGroup | None, datetime, Plan]:
        observed = observe(ctx.aws, settings.name, None)
        group = _require_group(settings, observed, missing_ok)
        now = deps.clock.now()
        if group is None:
            return None, now, Plan("allow", settings.name, ())
        port = (observed.instance.port if observed.instance else None) or settings.port
        return group, now, plan_for(settings.name, group, port, ctx.operator, now)

    group, now, plan = planned()
    if not dry_run and plan.changes and not holds_aws_lock(ctx):
        # The AWS lock only to change something (a cron prune with nothing to do takes none);
        # the plan is made again under it, as another machine may have changed the rules.
        hold_aws_lock(ctx, deps, "allow")
        group, now, plan = planned()
    if group is None:
        return AllowResult(Plan("allow", settings.name, ()), [], [], None)
    if dry_run or not plan.actions:
        rules = [rule_view(r, now, ctx.operator) for r in group.ingress]
        return AllowResult(plan, [], rules, group.group_id)
    aws = ctx.aws

    def authorize(action: Action, results: dict[str, Any]) -> None:
        aws.groups.authorize(action.params["group_id"], action.params["permission"], egress=False)

    def revoke_rules(action: Action, results: dict[str, Any]) -> None:
        aws.groups.revoke(action.params["group_id"], action.params["rule_ids"], egress=False)

    def renew(action: Action, results: dict[str, Any]) -> None:
        params = action.params
        aws.groups.set_rule_description(params["group_id"], params["rule"], params["description"])

    handlers = {
        "prune_ingress": revoke_rules,
        "revoke_ingress": revoke_rules,
        "authorize_ingress": authorize,
        "renew_ingress": renew,
    }
    outcome = apply_plan(plan, dict(handlers), deps.reporter, before_each=deps.before_each)
    after = aws.groups.group(group.group_id)
    rules = [rule_view(r, now, ctx.operator) for r in after.ingress]
    return AllowResult(plan, outcome.done, rules, group.group_id)


def _require_group(
    settings: Settings, observed: ObservedGateway, missing_ok: bool
) -> SecurityGroup | None:
    if observed.group is None and not missing_ok:
        raise NotFoundError(
            f"gateway {settings.name!r} has no security group in this region; run "
            f"`bastion up --name {settings.name}` first"
        )
    return observed.group
