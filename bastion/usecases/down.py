"""Use case `down`: remove everything bastion made for a gateway, sg-app's reference first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.domain.apply import apply_plan, wait_until
from bastion.domain.identity import require_record
from bastion.domain.model import Action, LocalKeys, ObservedGateway, Plan
from bastion.domain.plan import plan_down
from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.clientconfig import forget_ssh_config
from bastion.usecases.shared.context import journal_for, open_context, referencing_app_group
from bastion.usecases.shared.identity import identify
from bastion.usecases.shared.inventory import observe, with_app_group


@dataclass
class DownResult:
    """What `down` planned and did."""

    plan: Plan
    applied: list[Action]


def down(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    instance: str | None = None,
    without_keys: bool = False,
) -> DownResult:
    """Remove everything bastion made for the gateway: sg-app's reference first.

    Only instances tied to this machine's record go (see domain.identity), or the one named
    by `instance`; a machine holding nothing of the gateway needs `without_keys`.
    """
    ctx = open_context(
        settings,
        deps,
        lock_for=None if dry_run else "down",
        chosen_instance=instance,
        without_keys=without_keys,
    )
    aws = ctx.aws
    ours = identify(ctx, deps, "down")
    observed = observe(aws, settings.name, None, only=ours)
    maker = _maker(observed)
    going_ahead = require_record(settings.name, ctx.files.record(), maker, "down", without_keys)
    if going_ahead:
        deps.reporter.warn(going_ahead)
    app_sg = settings.app_sg or referencing_app_group(aws, observed)
    if app_sg:  # the app group alone: the gateway was read just now
        observed = with_app_group(aws, observed, app_sg)
    local = ctx.files.read() if ctx.files.root.exists() else LocalKeys(None, None, None)
    plan = plan_down(observed, local)
    if dry_run or not plan.actions:
        return DownResult(plan, [])

    def revoke_app(action: Action, results: dict[str, Any]) -> None:
        aws.groups.revoke(action.params["app_group_id"], action.params["rule_ids"], egress=False)

    def terminate(action: Action, results: dict[str, Any]) -> None:
        aws.compute.terminate_instance(action.params["instance_id"])

    def wait_terminated(action: Action, results: dict[str, Any]) -> None:
        iid = action.params["instance_id"]
        wait_until(
            lambda: aws.compute.instance_state(iid) == "terminated",
            f"{iid} to terminate",
            deps.clock,
            deps.reporter,
            settings.wait_timeout,
        )

    def delete_group(action: Action, results: dict[str, Any]) -> None:
        aws.groups.delete_group(action.params["group_id"])

    def delete_key(action: Action, results: dict[str, Any]) -> None:
        aws.key_pairs.delete_key_pair(action.params["key_name"])

    def delete_local(action: Action, results: dict[str, Any]) -> None:
        forgotten = forget_ssh_config(ctx)
        if forgotten is not None:
            deps.reporter.step(f"removed the ssh config {forgotten}")
        ctx.files.remove()

    handlers: Mapping[str, Callable[[Action, dict[str, Any]], None]] = {
        "revoke_app_ssh": revoke_app,
        "terminate_instance": terminate,
        "wait_terminated": wait_terminated,
        "delete_group": delete_group,
        "delete_key_pair": delete_key,
        "delete_local": delete_local,
    }
    outcome = apply_plan(
        plan, dict(handlers), deps.reporter, journal_for(ctx.files), before_each=deps.before_each
    )
    return DownResult(plan, outcome.done)


def _maker(observed: ObservedGateway) -> dict[str, str] | None:
    """Return the tags of what `down` would remove first, to show who made the gateway."""
    for found in (observed.instance, observed.group, *observed.stale_groups):
        if found is not None:
            return found.tags
    return {} if observed.exists else None
