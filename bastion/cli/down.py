"""Command `bastion down`: remove everything bastion made for the gateway."""

from __future__ import annotations

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import AppSgOpt, DryRunOpt, InstanceOpt, JsonOpt, NameOpt, WithoutKeysOpt
from bastion.cli.output import emit_json, plan_json, render_plan


def down(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    instance: InstanceOpt = None,
    without_keys: WithoutKeysOpt = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove everything bastion made for the gateway (sg-app's reference first)."""

    def run() -> None:
        from bastion.usecases.down import down as run_down

        settings = settings_for(ctx, name=name, app_sg=app_sg)
        result = run_down(
            settings,
            deps_for(ctx, json_output),
            dry_run=dry_run,
            instance=instance,
            without_keys=without_keys,
        )
        if json_output:
            emit_json({"plan": plan_json(result.plan), "dry_run": dry_run})
        else:
            render_plan(result.plan, dry_run)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(epilog="Example: bastion down --dry-run")(down)
