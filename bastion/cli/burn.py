"""Command `bastion burn`: the incident command."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import (
    AppSgOpt,
    DryRunOpt,
    InstanceOpt,
    JsonOpt,
    NameOpt,
    ReachOpt,
    WithoutKeysOpt,
    examples,
)
from bastion.cli.output import emit_json


def burn(
    ctx: typer.Context,
    name: NameOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the incident record.")] = "",
    no_relaunch: Annotated[
        bool, typer.Option("--no-relaunch", help="Contain, preserve and destroy; launch nothing.")
    ] = False,
    keep_instance: Annotated[
        bool,
        typer.Option(
            "--keep-instance", help="Leave the instance stopped and isolated for forensics."
        ),
    ] = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Carry on an interrupted incident by id.")
    ] = None,
    reach: ReachOpt = None,
    app_sg: AppSgOpt = None,
    instance: InstanceOpt = None,
    without_keys: WithoutKeysOpt = False,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="CIDR allowed to reach the new gateway (repeatable)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait for each state change and for sshd."),
    ] = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Incident: contain the gateway first, keep evidence, destroy it, relaunch with new keys."""

    def run() -> None:
        import re

        from bastion.domain.errors import UsageError
        from bastion.domain.incident import describe_steps
        from bastion.usecases.burn import burn as run_burn

        if resume is not None and not re.fullmatch(r"inc-\d{8}T\d{6}Z-[0-9a-f]{4}", resume):
            raise UsageError(
                f"--resume {resume!r} is not an incident id; they look like "
                "inc-20260101T031500Z-ab12 (see the incidents folder)"
            )
        settings = settings_for(
            ctx,
            name=name,
            reach=reach,
            app_sg=app_sg,
            allow=tuple(allow or ()),
            wait_timeout=timeout,
        )
        result = run_burn(
            settings,
            deps_for(ctx, json_output),
            reason=reason,
            relaunch=not no_relaunch,
            keep_instance=keep_instance,
            resume=resume,
            dry_run=dry_run,
            instance_id=instance,
            without_keys=without_keys,
        )
        incident = result.incident
        if json_output:
            emit_json(
                {
                    "incident": incident.__dict__,
                    "record": str(result.record_path),
                    "steps": describe_steps(result.steps, result.calls),
                    "dry_run": dry_run,
                }
            )
            return
        head = "Plan" if dry_run else "Done"
        typer.echo(f"{head} for incident {incident.incident_id} on gateway {incident.name!r}:")
        for item in describe_steps(result.steps, result.calls):
            typer.echo(f"  + {item['summary']}")
            for call in item.get("calls", []):
                typer.echo(f"      {call}")
        if dry_run:
            typer.echo("Dry run: nothing was changed.")
            return
        relaunched = incident.relaunch
        if relaunched:
            typer.echo(
                f"New gateway {relaunched.get('instance_id')} (generation "
                f"{relaunched.get('generation')}), "
                f"host key {relaunched.get('host_key_fingerprint')}"
            )
        typer.echo(
            f"Contained in {incident.timings.get('time_to_contain_s')} s; "
            f"report: {result.record_path} (and report.md beside it)"
        )

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        epilog=examples(
            "bastion burn --reason 'odd logins at 03:12'",
            "bastion burn --dry-run",
            "bastion burn --resume inc-20260101T031500Z-ab12",
        )
    )(burn)
