"""Command `bastion ssh-config`: print or --write the OpenSSH client config."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import AppSgOpt, JsonOpt, NameOpt, ReachOpt, examples
from bastion.cli.output import emit_json

EPILOG = examples(
    "bastion ssh-config",
    "bastion ssh-config --write --app-user ec2-user --app-identity ~/.ssh/app",
    "ssh app-1.default.bastion   (after --write)",
    "bastion ssh-config --json | jq .hosts",
)


def ssh_config_command(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    reach: ReachOpt = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Install it as ~/.ssh/config.d/bastion-NAME and Include that from ~/.ssh/config "
            "(one line at the top, once, with a backup); `bastion up` keeps it current.",
        ),
    ] = False,
    app_user: Annotated[
        str | None, typer.Option("--app-user", help="Login user on the app hosts, e.g. ec2-user.")
    ] = None,
    app_identity: Annotated[
        str | None, typer.Option("--app-identity", help="Private key file for the app hosts.")
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--hosts",
            help="Host pattern for app hosts by address (repeatable), instead of the VPC range, "
            "e.g. '10.0.*'; it needs a literal network prefix (or a domain like "
            "'*.ec2.internal').",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Print (or --write) an OpenSSH config: the pinned gateway, app hosts via ProxyJump."""

    def run() -> None:
        from pathlib import Path

        from bastion.adapters.sshconfig import host_blocks, refused_names
        from bastion.usecases.access import SshConfigOptions, ssh_config

        settings = settings_for(ctx, name=name, app_sg=app_sg, reach=reach)
        options = SshConfigOptions(
            app_user=app_user,
            app_identity=Path(app_identity) if app_identity else None,
            hosts=tuple(hosts or ()),
        )
        result = ssh_config(settings, deps_for(ctx, json_output), options, write=write)
        if json_output:
            gateway = result.config.gateway
            emit_json(
                {
                    "config": result.text,
                    "written": str(result.path) if result.path else None,
                    "changed": result.changed,
                    "include_added": bool(result.include and result.include.added),
                    "backup": str(result.include.backup)
                    if result.include and result.include.backup
                    else None,
                    "gateway": {
                        "alias": gateway.alias,
                        "host": gateway.host,
                        "port": gateway.port,
                        "user": gateway.user,
                    },
                    "hosts": [
                        {"aliases": list(b.aliases), "address": b.address}
                        for b in host_blocks(result.config)
                    ],
                    "patterns": list(result.config.patterns),
                    "refused_names": [
                        {"name": r.name, "instance_ids": list(r.instance_ids), "reason": r.reason}
                        for r in refused_names(result.config)
                    ],
                    "warnings": list(result.warnings),
                }
            )
            return
        if result.path is None:
            typer.echo(result.text, nl=False)
            return
        how = "written" if result.changed else "already current"
        typer.echo(f"{result.path}: {how}")
        if result.include and result.include.added:
            backup = f" (backup: {result.include.backup})" if result.include.backup else ""
            typer.echo(f"{result.include.path}: Include line added at the top{backup}")
        aliases = [b.aliases[0] for b in host_blocks(result.config)]
        typer.echo(f"Try: ssh {aliases[0] if aliases else result.config.gateway.alias}")

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("ssh-config", epilog=EPILOG)(ssh_config_command)
