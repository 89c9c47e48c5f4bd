"""Converge one gateway on its spec: the flow of `up`, which `burn` also runs to relaunch."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from bastion.domain.allowlist import without_expired
from bastion.domain.apply import apply_plan
from bastion.domain.errors import UsageError
from bastion.domain.launch_diff import launch_differences
from bastion.domain.model import Action, GatewaySpec, Image, ObservedGateway, Plan, Subnet
from bastion.domain.plan import Network, plan_up
from bastion.domain.settings import Settings, image_parameter
from bastion.usecases.ports import Deps
from bastion.usecases.shared.clientconfig import (
    permit_open_targets,
    refresh_written_config,
    stale_permit_open,
)
from bastion.usecases.shared.context import (
    Context,
    allowed_cidrs,
    journal_for,
    open_context,
)
from bastion.usecases.shared.identity import gateway_candidates, identify
from bastion.usecases.shared.inventory import observe, observe_with_app_group, with_app_group
from bastion.usecases.shared.launch import UpHandlers
from bastion.usecases.shared.lease import hold_aws_lock, holds_aws_lock
from bastion.usecases.shared.report import gateway_report


@dataclass
class UpResult:
    """What `up` planned and did, and the gateway afterwards."""

    plan: Plan
    applied: list[Action]
    status: dict[str, Any] | None
    ssh_config: str | None = None  # the written client config, when `up` refreshed it


def converge(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    generation_floor: int = 1,
    ctx: Context | None = None,
    asked: Collection[str] = (),
    chosen_instance: str | None = None,
    only: frozenset[str] | None = None,
) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing.

    `asked` names the settings the user gave explicitly (`instance_type`, `image`): where the
    running gateway differs in them, a warning says so and how to get them (a relaunch).
    `only` limits the instances it may take for the gateway (burn's relaunch: those it launched).
    """
    cidrs = allowed_cidrs(settings, deps)
    lock_for = None if dry_run else "up"
    ctx = ctx or open_context(
        settings, deps, lock_for=lock_for, aws_lock=False, chosen_instance=chosen_instance
    )
    stable: dict[Any, Any] = {}
    planned = _plan(settings, deps, ctx, cidrs, generation_floor, stable, asked, only)
    if not dry_run and planned.plan.changes and not holds_aws_lock(ctx):
        # The AWS lock only to apply (a gateway with nothing to change costs no lock calls);
        # the gateway may have changed before it was taken, so it is read and planned again.
        hold_aws_lock(ctx, deps, "up")
        planned = _plan(settings, deps, ctx, cidrs, generation_floor, stable, asked, only)
    for warning in planned.warnings:
        deps.reporter.warn(warning)
    plan = planned.plan
    if dry_run:
        return UpResult(plan, [], None)
    handlers = UpHandlers(ctx, deps, planned.spec, planned.observed, planned.network, planned.now)
    handlers.permit_open = planned.permit_open
    handlers.image = planned.image
    outcome = apply_plan(
        plan, handlers.table(), deps.reporter, journal_for(ctx.files), before_each=deps.before_each
    )
    refreshed = refresh_written_config(ctx, deps)
    # Nothing changed: what was read before is still what AWS holds (no second round of reads).
    instance = planned.observed.instance
    running = instance is not None and instance.state == "running"
    changed = any(a.mutating or (a.kind == "wait_running" and not running) for a in outcome.done)
    unchanged = None if changed else with_app_group(ctx.aws, planned.observed, settings.app_sg)
    ours = planned.only
    if unchanged is None and ours is not None:  # what it launched is recorded: the gateway now
        ours = ours | ctx.files.recorded_instances()
        unchanged = observe_with_app_group(ctx.aws, settings.name, settings.app_sg, only=ours)
    report = gateway_report(settings, deps, ctx=ctx, cidr_hint=cidrs, observed=unchanged)
    return UpResult(plan, outcome.done, report, refreshed)


@dataclass
class _Planned:
    plan: Plan
    spec: GatewaySpec
    observed: ObservedGateway
    network: Network
    now: str
    permit_open: tuple[str, ...]
    image: Image | None
    warnings: list[str]
    only: frozenset[str] | None = None  # the instances tied to this machine (None: any)


def _plan(
    settings: Settings,
    deps: Deps,
    ctx: Context,
    cidrs: tuple[str, ...],
    generation_floor: int,
    stable: dict[Any, Any],
    asked: Collection[str],
    only: frozenset[str] | None = None,
) -> _Planned:
    """Read the gateway and plan `up` (everything AWS can check is checked before a change).

    `stable` keeps what no other bastion changes (subnets, the image, routes) for a second pass.
    """
    warnings: list[str] = []
    aws = ctx.aws

    def once(key: Any, read: Callable[[], Any]) -> Any:
        if key not in stable:
            stable[key] = read()
        return stable[key]

    def subnet_of(subnet_id: str | None, vpc_id: str | None = None) -> Subnet:
        found: Subnet = once(
            ("subnet", subnet_id, vpc_id), lambda: aws.network.subnet(subnet_id, vpc_id)
        )
        return found

    # A given --subnet picks the VPC (and so which group named --app-sg is meant); without one
    # the gateway goes where the app group is, or else into the default VPC.
    given = subnet_of(settings.subnet) if settings.subnet else None
    # Only instances tied to this machine's record (see domain.identity): a lost pin is
    # recovered only from one of those; a machine without the keys is refused by the plan.
    local = ctx.files.read()
    found = aws.compute.find_instances(settings.name)
    if only is None and local.login_fingerprint is not None:
        only = identify(ctx, deps, "up", gateway_candidates(found))
    vpc_id = given.vpc_id if given else None
    observed = observe(aws, settings.name, settings.app_sg, vpc_id, only=only, instances=found)
    # Expired allow rules go first, and the planner never sees them (see domain.allowlist).
    observed, prune = without_expired(observed, deps.clock.now())
    instance = observed.instance
    if instance and instance.subnet_id and (given is None or instance.subnet_id != given.subnet_id):
        subnet = subnet_of(instance.subnet_id)
    elif given is not None:
        subnet = given
    else:
        subnet = subnet_of(None, observed.app_group.vpc_id if observed.app_group else None)
    if observed.app_group and observed.app_group.vpc_id != subnet.vpc_id:
        raise UsageError(
            f"--app-sg {observed.app_group.group_id} is in {observed.app_group.vpc_id}, but the "
            f"gateway is in {subnet.vpc_id}; pass a --subnet in the app's VPC"
        )
    spec = GatewaySpec(
        name=settings.name,
        port=settings.port,
        allowed_cidrs=cidrs,
        instance_type=settings.instance_type,
        image=settings.image,
        subnet_id=subnet.subnet_id,
        app_sg=settings.app_sg,
        login_user=settings.login_user,
        admin_user=settings.admin_user,
        operator=ctx.operator,
    )
    permit_open: tuple[str, ...] = ()
    if settings.restrict_forwarding:
        app_group_id = observed.app_group.group_id if observed.app_group else None
        permit_open = permit_open_targets(aws, app_group_id)
        stale = stale_permit_open(aws, instance, permit_open) if instance else None
        if stale:
            warnings.append(stale)
    now = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    network = Network(subnet.subnet_id, subnet.vpc_id, subnet.vpc_cidr, subnet.vpc_cidrs)
    plan = plan_up(spec, observed, local, network, now, generation_floor)
    differs = launch_differences(spec, instance, asked) if instance else None
    plan_warnings = plan.warnings + ((differs,) if differs else ())
    plan = Plan(plan.command, plan.name, prune.actions + plan.actions, plan_warnings)
    if not settings.verify:
        plan = Plan(
            plan.command,
            plan.name,
            tuple(a for a in plan.actions if a.kind != "verify"),
            plan.warnings,
        )
    # Everything AWS can check is checked before the first change, and in a dry run too.
    image = None
    if any(a.kind == "launch_instance" for a in plan.actions):
        parameter = image_parameter(settings.image)
        image = once(
            ("image", settings.image),
            lambda: aws.images.resolve_image(parameter, None if parameter else settings.image),
        )
        routed = once(
            ("routes", subnet.subnet_id),
            lambda: aws.network.routes_to_internet(subnet.subnet_id, subnet.vpc_id),
        )
        if settings.reach == "public" and not routed:
            warnings.append(
                f"subnet {subnet.subnet_id} has no route to an internet gateway, so the gateway's "
                "public IP will not answer; pass --subnet with a public subnet, or use "
                "--reach private over a VPN"
            )
    warnings.extend(plan.warnings)
    return _Planned(plan, spec, observed, network, now, permit_open, image, warnings, only)
