"""`rotate --relaunch` (blue/green): a new generation beside the old, sg-app moved, the old gone."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import timedelta
from typing import Any

from bastion.adapters import keys
from bastion.adapters.localstate import GatewayFiles
from bastion.domain.apply import apply_plan, wait_until
from bastion.domain.errors import NotFoundError
from bastion.domain.model import (
    Action,
    GatewaySpec,
    InstanceInfo,
    LocalKeys,
    ObservedGateway,
    Plan,
    Ref,
    SecurityGroup,
)
from bastion.domain.plan import Network, plan_up
from bastion.domain.rotate_plan import plan_relaunch_switch
from bastion.domain.settings import Settings
from bastion.domain.tags import (
    TAG_CERTIFICATES,
    TAG_GENERATION,
    TAG_KEY_FINGERPRINT,
    TAG_RETIRING,
    TAG_STANDBY,
)
from bastion.usecases.ports import Deps
from bastion.usecases.rotate.channel import RotateResult, not_due, stamp
from bastion.usecases.shared.clientconfig import permit_open_targets, refresh_written_config
from bastion.usecases.shared.context import (
    Context,
    allowed_cidrs,
    journal_for,
    open_context,
    referencing_app_group,
)
from bastion.usecases.shared.identity import identify
from bastion.usecases.shared.inventory import observe
from bastion.usecases.shared.launch import UpHandlers

# What `promote_local_keys` moves from the relaunch folder into the gateway folder.
RELAUNCH_FILES = (
    "login_ed25519.pub",
    "login_ed25519",
    "admin_ed25519.pub",
    "admin_ed25519",
    "host_ed25519.pub",
    "known_hosts",
)


def _generation(group: SecurityGroup) -> int:
    return int(group.tags.get(TAG_GENERATION, "1"))


def relaunch_gateway(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
    generation_floor: int = 0,
    instance: str | None = None,
) -> RotateResult:
    """Replace the gateway with a new generation (new keys), blue/green; resumable by rerun.

    Generation N+1 is launched as a standby beside N and verified as `up` verifies; sg-app
    admits SSH from the new group before the old group's rule is revoked; N is marked retiring,
    N+1 promoted, the local keys swapped, and then N, its group and key pair are destroyed.
    """
    ctx = open_context(
        settings, deps, lock_for=None if dry_run else "rotate --relaunch", chosen_instance=instance
    )
    aws = ctx.aws
    ours = identify(ctx, deps, "rotate --relaunch")
    observed = observe(aws, settings.name, None, only=ours)
    current = observed.instance
    if current is None:
        raise NotFoundError(
            f"gateway {settings.name!r} has no live instance to replace; run `bastion up`"
        )
    staging = GatewayFiles(ctx.files.relaunch_dir, settings.name)
    staged_login = staging.read().login_fingerprint if staging.root.exists() else None
    # Promoted: the new generation is the gateway; the old one is retiring, or already gone
    # (then only the relaunch folder, whose keys are the current instance's, says so).
    promoted = bool(observed.retiring) or (
        observed.standby is None
        and staging.root.exists()
        and staged_login in (None, current.tags.get(TAG_KEY_FINGERPRINT))
    )
    new_instance: InstanceInfo | None
    if promoted:
        new_instance, old_instances = current, list(observed.retiring)
    else:
        new_instance, old_instances = observed.standby, [current]
    old = old_instances[0] if old_instances else current
    in_progress = promoted or new_instance is not None or staging.root.exists()
    if not in_progress:
        skip = not_due(old.launch_time, deps.clock.now(), if_older_than, "the gateway")
        if skip:
            return RotateResult(Plan("rotate", settings.name, ()), [], skip)
    subnet = aws.network.subnet(old.subnet_id or settings.subnet)
    app_sg = settings.app_sg or referencing_app_group(aws, observed)
    if app_sg:
        observed = observe(aws, settings.name, app_sg, subnet.vpc_id, only=ours)
    app_group = observed.app_group

    old_generation = max((i.generation for i in old_instances), default=0)
    groups = ([observed.group] if observed.group else []) + list(observed.stale_groups)
    new_generation = (
        new_instance.generation
        if new_instance
        else max(
            [_generation(g) for g in groups if _generation(g) > old_generation]
            + [old_generation + 1, generation_floor]
        )
    )
    new_group = next((g for g in groups if _generation(g) == new_generation), None)
    old_groups = [g for g in groups if g is not new_group and _generation(g) < new_generation]
    staged_local = staging.read() if staging.root.exists() else LocalKeys(None, None, None)
    new_login = (
        new_instance.tags.get(TAG_KEY_FINGERPRINT)
        if new_instance
        else staged_local.login_fingerprint
    )
    key_pairs = [k for k in (observed.key_pair, *observed.other_key_pairs) if k]
    new_key_pair = next((k for k in key_pairs if new_login and k.fingerprint == new_login), None)
    old_key_pairs = [k for k in key_pairs if k is not new_key_pair]

    port = old.port or settings.port
    spec = GatewaySpec(
        name=settings.name,
        port=port,
        allowed_cidrs=allowed_cidrs(settings, deps),
        instance_type=settings.instance_type,
        image=settings.image,
        subnet_id=subnet.subnet_id,
        app_sg=app_group.group_id if app_group else None,
        login_user=settings.login_user,
        admin_user=settings.admin_user,
        operator=ctx.operator,
    )
    now = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    network = Network(subnet.subnet_id, subnet.vpc_id, subnet.vpc_cidr, subnet.vpc_cidrs)
    # A gateway that took (or was asked to take) certificates: the next generation trusts the CA.
    took = current is not None and current.tags.get(TAG_CERTIFICATES) in ("true", "wanted")
    next_settings = dataclasses.replace(settings, certificates=True) if took else settings
    next_ctx = Context(next_settings, aws, staging, ctx.operator)
    launch_actions: tuple[Action, ...] = ()
    observed_next = ObservedGateway(
        settings.name,
        key_pair=new_key_pair,
        group=new_group,
        instance=new_instance,
        app_group=app_group,
    )
    if not promoted:
        launch_actions = plan_up(
            spec, observed_next, staged_local, network, now, new_generation
        ).actions
    new_group_ref: str | Ref = new_group.group_id if new_group else Ref("new gateway group")
    new_authorized = bool(
        any(a.kind == "authorize_app_ssh" for a in launch_actions)
        or (
            app_group is not None
            and new_group is not None
            and any(r.source_group == new_group.group_id for r in app_group.ingress)
        )
    )
    switch = plan_relaunch_switch(
        settings.name,
        app_group,
        new_group_ref,
        new_authorized,
        old_groups,
        [i.instance_id for i in old_instances],
        [i.instance_id for i in old_instances if TAG_RETIRING in i.tags],
        promoted,
        old_key_pairs,
        local_swap=staging.root.exists() or not promoted,
    )
    finish = [Action("remove_relaunch_folder", "remove the relaunch folder")]
    plan = Plan(
        "rotate",
        settings.name,
        tuple(launch_actions) + tuple(switch) + (tuple(finish) if switch or in_progress else ()),
    )
    if dry_run:
        return RotateResult(plan, [])

    up_handlers = UpHandlers(next_ctx, deps, spec, observed_next, network, now)
    up_handlers.extra_tags = {TAG_STANDBY: "next"}
    if settings.restrict_forwarding:
        up_handlers.permit_open = permit_open_targets(
            aws, app_group.group_id if app_group else None
        )
    switcher = RelaunchSwitch(ctx, deps, staging, up_handlers)
    table = {**up_handlers.table(), **switcher.table()}
    outcome = apply_plan(
        plan, table, deps.reporter, journal_for(ctx.files), before_each=deps.before_each
    )
    refresh_written_config(ctx, deps)
    return RotateResult(plan, outcome.done)


class RelaunchSwitch:
    """The side effects of moving from the old generation to the verified new one."""

    def __init__(
        self, ctx: Context, deps: Deps, staging: GatewayFiles, launched: UpHandlers
    ) -> None:
        self.ctx, self.deps, self.staging, self.launched = ctx, deps, staging, launched

    def table(self) -> dict[str, Any]:
        """Map action kinds to handlers."""
        return {
            "revoke_old_app_ssh": self.revoke_old_app_ssh,
            "retire_old_instance": self.retire,
            "promote_new_instance": self.promote,
            "promote_local_keys": self.promote_local_keys,
            "terminate_old_instance": self.terminate,
            "wait_old_terminated": self.wait_terminated,
            "delete_old_group": self.delete_group,
            "delete_old_key_pair": self.delete_key_pair,
            "remove_relaunch_folder": self.remove_folder,
        }

    def revoke_old_app_ssh(self, action: Action, results: dict[str, Any]) -> None:
        """Revoke sg-app's SSH rule for the old group (the new one is already admitted)."""
        self.ctx.aws.groups.revoke(action.params["app_group_id"], action.params["rule_ids"], False)

    def retire(self, action: Action, results: dict[str, Any]) -> None:
        """Mark the old instance as retiring; it stays the gateway until the new is promoted."""
        self.ctx.aws.compute.tag(action.params["instance_id"], {TAG_RETIRING: stamp(self.deps)})

    def promote(self, action: Action, results: dict[str, Any]) -> None:
        """Make the new instance the gateway (observe now sees it, and the old as retiring)."""
        instance = self.launched.instance
        assert instance is not None
        self.ctx.aws.compute.untag(instance.instance_id, [TAG_STANDBY])

    def promote_local_keys(self, action: Action, results: dict[str, Any]) -> None:
        """Move the new generation's keys and pins over the old ones (each file atomically)."""
        root = self.ctx.files.root
        keys.ensure_private_dir(root)
        for name in RELAUNCH_FILES:
            source = self.staging.root / name
            if source.exists():
                os.replace(source, root / name)
        self.ctx.files.record_instances(self.staging.recorded_instances())
        # A login or host-key rotation of the old generation is moot now.
        self.ctx.files.discard_next_login_key()
        self.ctx.files.next_host_key_pub.unlink(missing_ok=True)

    def terminate(self, action: Action, results: dict[str, Any]) -> None:
        """Terminate the old instance."""
        if self.ctx.aws.compute.instance_state(action.params["instance_id"]) != "terminated":
            self.ctx.aws.compute.terminate_instance(action.params["instance_id"])

    def wait_terminated(self, action: Action, results: dict[str, Any]) -> None:
        """Wait (through the injected clock) until the old instance is gone."""
        iid = action.params["instance_id"]
        aws = self.ctx.aws
        wait_until(
            lambda: aws.compute.instance_state(iid) == "terminated",
            f"{iid} to terminate",
            self.deps.clock,
            self.deps.reporter,
            self.ctx.settings.wait_timeout,
        )

    def delete_group(self, action: Action, results: dict[str, Any]) -> None:
        """Delete the old generation's group."""
        self.ctx.aws.groups.delete_group(action.params["group_id"])

    def delete_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Delete the old login key pair."""
        self.ctx.aws.key_pairs.delete_key_pair(action.params["key_name"])

    def remove_folder(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the (now empty) relaunch folder."""
        if self.staging.root.exists():
            shutil.rmtree(self.staging.root)
