"""Command `bastion sessions`: who connected with a certificate, from where, from when to when."""

from __future__ import annotations

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import JsonOpt, NameOpt, ReachOpt
from bastion.cli.output import emit_json
from bastion.cli.revoke import KeyOpt


def sessions(
    ctx: typer.Context,
    name: NameOpt = None,
    reach: ReachOpt = None,
    key: KeyOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List certificate logins from sshd's log: operator ARN, address, serial, start and end."""

    def run() -> None:
        from dataclasses import asdict

        from rich.console import Console
        from rich.table import Table

        from bastion.usecases.certs.sessions import sessions as run_sessions

        settings = settings_for(ctx, name=name, reach=reach)
        found = run_sessions(settings, deps_for(ctx, json_output), key=key)
        if json_output:
            emit_json([asdict(s) for s in found])
            return
        table = Table(title=f"certificate logins on gateway {settings.name!r}")
        for column in ("operator", "user", "source", "serial", "start", "end"):
            table.add_column(column)
        for s in found:
            table.add_row(
                s.operator,
                s.user,
                f"{s.address} port {s.port}",
                str(s.serial),
                s.started or "(not in the log)",
                s.ended or "open",
            )
        Console(soft_wrap=True, highlight=False).print(table)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(epilog="Example: bastion sessions --json | jq '.[].operator'")(sessions)
