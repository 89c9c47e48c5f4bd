"""Command `bastion rotate`: new keys without a lockout (login, --host-key, --relaunch)."""

from __future__ import annotations

import re
from datetime import timedelta
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
    examples,
)
from bastion.cli.output import emit_json, plan_json, render_plan
from bastion.domain.errors import UsageError

EPILOG = examples(
    "bastion rotate --dry-run",
    "bastion rotate --if-older-than 30d   (for cron)",
    "bastion rotate --host-key",
    "bastion rotate --relaunch --app-sg sg-0abc1234 --timeout 900",
)


def rotate(
    ctx: typer.Context,
    name: NameOpt = None,
    reach: ReachOpt = None,
    host_key: Annotated[
        bool,
        typer.Option(
            "--host-key",
            help="Replace the gateway's host key in place (known_hosts trusts both meanwhile).",
        ),
    ] = False,
    relaunch: Annotated[
        bool,
        typer.Option(
            "--relaunch",
            help="Blue/green: launch a new generation with new keys, move sg-app to it, "
            "then destroy the old one.",
        ),
    ] = False,
    app_sg: AppSgOpt = None,
    instance: InstanceOpt = None,
    instance_type: Annotated[
        str | None,
        typer.Option("--instance-type", help="With --relaunch: the new generation's EC2 type."),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="With --relaunch: the new generation's image (as `up`)."),
    ] = None,
    if_older_than: Annotated[
        str | None,
        typer.Option(
            "--if-older-than",
            help="Rotate only when the key (or, with --relaunch, the instance) is older, e.g. 30d.",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Seconds to wait for the new instance and sshd (--relaunch), or for the "
            "gateway to answer [default: 600].",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Replace the gateway's keys without a lockout: each new key is proven before the old goes.

    By default the login key, in place; --host-key the host key, in place; --relaunch a whole
    new generation (new login, admin and host keys), blue/green. Rerun after any interruption.
    """

    def run() -> None:
        from bastion.domain.errors import UsageError
        from bastion.usecases.rotate import relaunch_gateway, rotate_host_key, rotate_login

        if host_key and relaunch:
            raise UsageError(
                "--host-key and --relaunch exclude each other; a relaunch makes new keys"
            )
        if (instance_type or image) and not relaunch:
            raise UsageError(
                "--instance-type and --image need --relaunch: only a new instance changes them"
            )
        settings = settings_for(
            ctx,
            name=name,
            reach=reach,
            app_sg=app_sg,
            wait_timeout=timeout,
            instance_type=instance_type,
            image=image,
        )
        older = parse_age(if_older_than) if if_older_than is not None else None
        use_case = relaunch_gateway if relaunch else rotate_host_key if host_key else rotate_login
        result = use_case(settings, deps_for(ctx, json_output), dry_run, older, instance=instance)
        if json_output:
            emit_json(
                {
                    "plan": plan_json(result.plan),
                    "dry_run": dry_run,
                    "skipped": result.skipped_reason,
                    "removed_unknown_login_keys": result.removed_unknown,
                    "ended_sessions": result.ended_sessions,
                }
            )
        elif result.skipped_reason:
            typer.echo(f"Nothing to do: {result.skipped_reason}.")
        else:
            render_plan(result.plan, dry_run)
            for fingerprint in result.removed_unknown:
                typer.echo(f"Removed login key {fingerprint}: bastion did not put it there.")
            for fingerprint, count in result.ended_sessions.items():
                if count:
                    typer.echo(f"Ended {count} open session(s) made with {fingerprint}.")

    guarded(run)


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d{1,5})([dhm])", text.strip())
    if not match:
        raise UsageError(f"--if-older-than {text!r} is not a duration; use e.g. 30d, 12h or 90m")
    unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(epilog=EPILOG)(rotate)
