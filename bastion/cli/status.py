"""Command `bastion status`: what exists, who may connect, drift."""

from __future__ import annotations

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import AppSgOpt, JsonOpt, NameOpt
from bastion.cli.output import emit_json, render_status


def status(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the gateway: instance, addresses, port, who may connect, keys, sg-app, drift."""

    def run() -> None:
        from bastion.usecases.status import status as run_status

        settings = settings_for(ctx, name=name, app_sg=app_sg)
        data = run_status(settings, deps_for(ctx, json_output))
        if json_output:
            emit_json(data)
        else:
            render_status(data)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(epilog="Example: bastion status --json | jq .drift")(status)
