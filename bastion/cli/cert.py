"""Command `bastion cert`: a short-lived SSH certificate for your own key, from the KMS CA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import JsonOpt, NameOpt, examples
from bastion.cli.output import emit_json


def cert(
    ctx: typer.Context,
    name: NameOpt = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="Your public key (.pub; file or agent key) [default: ~/.ssh/id_ed25519.pub].",
        ),
    ] = None,
    lifetime: Annotated[
        str, typer.Option("--for", help="How long it lives (at most your allow rule's end).")
    ] = "1h",
    admin: Annotated[
        bool, typer.Option("--admin", help="For the admin channel (rotate, burn, revoke).")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Sign a certificate for your key: principal the gateway user, only your allowed addresses."""

    def run() -> None:
        from bastion.domain.allowlist import parse_duration
        from bastion.domain.errors import UsageError
        from bastion.usecases.certs.issue import issue_certificate

        duration = parse_duration(lifetime)
        if duration is None:
            raise UsageError("--for never is not allowed for a certificate; use e.g. 1h")
        settings = settings_for(ctx, name=name)
        issued = issue_certificate(
            settings, deps_for(ctx, json_output), key=key, lifetime=duration, admin=admin
        )
        if json_output:
            emit_json(issued.to_json())
            return
        typer.echo(
            f"{issued.path}: {issued.principal} certificate for {issued.key_id}, serial"
            f" {issued.serial}, from {', '.join(issued.source_addresses)}, valid until"
            f" {issued.valid_before:%Y-%m-%dT%H:%M:%SZ}"
        )

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        epilog=examples(
            "bastion cert --key ~/.ssh/id_ed25519.pub", "bastion cert --admin --for 15m"
        )
    )(cert)
