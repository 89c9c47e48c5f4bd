"""Command `bastion ssh`: exec the real ssh with the generated config."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import AppSgOpt, NameOpt, ReachOpt, examples


def ssh_command(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Argument(
            help="App host: its Name tag or instance id (mapped to NAME.GATEWAY.bastion), "
            "its alias, or its address; none: the gateway itself."
        ),
    ] = None,
    ssh_args: Annotated[
        list[str] | None, typer.Argument(help="After --: options and command for ssh.")
    ] = None,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    reach: ReachOpt = None,
) -> None:
    """Run the real ssh with the generated config: to HOST through ProxyJump, or the gateway."""

    def run() -> None:
        from bastion.usecases.access import exec_ssh
        from bastion.usecases.access import ssh_command as command_line

        target, extra = host, list(ssh_args or ())
        if target is not None and target.startswith("-"):  # `bastion ssh -- -v`
            extra.insert(0, target)
            target = None
        settings = settings_for(ctx, name=name, app_sg=app_sg, reach=reach)
        deps = deps_for(ctx, json_output=True)
        argv = command_line(settings, deps, target, extra)
        logging.getLogger(__name__).info("exec %s", " ".join(argv))
        exec_ssh(argv, deps)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        "ssh",
        epilog=examples(
            "bastion ssh   (the gateway's forwarding-only login; Ctrl-C ends it)",
            "bastion ssh app-1",
            "bastion ssh app-1 -- -L 8080:localhost:80 uptime",
        ),
    )(ssh_command)
