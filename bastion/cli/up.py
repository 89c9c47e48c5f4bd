"""Command `bastion up`: create or converge the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import AppSgOpt, DryRunOpt, InstanceOpt, JsonOpt, NameOpt, ReachOpt
from bastion.cli.output import emit_json, plan_json, render_plan, render_status


def up(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    port: Annotated[
        int | None, typer.Option("--port", help="sshd port on the gateway [default: 62222].")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", help="CIDR allowed to reach the port (repeatable); replaces IP detection."
        ),
    ] = None,
    allow_anywhere: Annotated[
        bool,
        typer.Option("--allow-anywhere", help="Permit 0.0.0.0/0 or ::/0 in --allow (dangerous)."),
    ] = False,
    allow_wide: Annotated[
        bool,
        typer.Option("--allow-wide", help="Permit an --allow wider than /24 (IPv4) or /56 (IPv6)."),
    ] = False,
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", help="EC2 type [default: t3.micro].")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image", help="al2023 (default), debian13, ubuntu24.04, ami-..., or ssm:/param."
        ),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option(
            "--subnet",
            help="Subnet id or Name tag [default: one in the app group's VPC, else a "
            "default subnet].",
        ),
    ] = None,
    reach: ReachOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for the instance and sshd.")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the SSH check after launch.")
    ] = False,
    restrict_forwarding: Annotated[
        bool,
        typer.Option(
            "--restrict-forwarding",
            help="At launch, let the login forward only to the running app hosts' IP:22 "
            "(PermitOpen); app hosts added later need a relaunch.",
        ),
    ] = False,
    instance: InstanceOpt = None,
    certificates: Annotated[
        bool,
        typer.Option(
            "--certificates",
            help="Operators log in with short-lived certificates from a KMS CA (`bastion cert`).",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Create or converge the gateway: key, group, sshd on a custom port, sg-app pointed at it."""

    def run() -> None:
        from bastion.usecases.up import up as run_up

        settings = settings_for(
            ctx,
            name=name,
            app_sg=app_sg,
            port=port,
            allow=tuple(allow or ()),
            allow_anywhere=allow_anywhere or None,
            allow_wide=allow_wide or None,
            instance_type=instance_type,
            image=image,
            subnet=subnet,
            reach=reach,
            wait_timeout=timeout,
            verify=False if no_verify else None,
            restrict_forwarding=restrict_forwarding or None,
            certificates=certificates or None,
        )
        asked = [
            what for what, given in (("instance_type", instance_type), ("image", image)) if given
        ]
        result = run_up(
            settings,
            deps_for(ctx, json_output),
            dry_run=dry_run,
            asked=asked,
            chosen_instance=instance,
        )
        if json_output:
            emit_json(
                {
                    "plan": plan_json(result.plan),
                    "dry_run": dry_run,
                    "status": result.status,
                    "ssh_config": result.ssh_config,
                }
            )
            return
        render_plan(result.plan, dry_run)
        if result.status:
            render_status(result.status)
        if result.ssh_config:
            typer.echo(f"SSH config kept current: {result.ssh_config}", err=True)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(epilog="Example: bastion up --app-sg sg-0abc1234 --port 62222")(up)
