"""Command `bastion revoke`: refuse a certificate serial, an operator's ARN or a key, at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import JsonOpt, NameOpt, ReachOpt, examples
from bastion.cli.output import emit_json

KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key", help="Your public key for the admin certificate [~/.ssh/id_ed25519.pub]."
    ),
]


def revoke(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A certificate serial, an operator's ARN, or a public key (.pub).")
    ],
    name: NameOpt = None,
    reach: ReachOpt = None,
    key: KeyOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Revoke on the gateway now (a KRL over the admin channel) and at every later launch."""

    def run() -> None:
        from bastion.usecases.certs.revoke import revoke as run_revoke

        settings = settings_for(ctx, name=name, reach=reach)
        result = run_revoke(settings, deps_for(ctx, json_output), target, key=key)
        if json_output:
            emit_json(result.to_json())
            return
        typer.echo(f"revoked {target}; the gateway answered: {result.gateway_answer}")

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        epilog=examples(
            "bastion revoke 4242                              # one certificate",
            "bastion revoke arn:aws:iam::123456789012:user/bob  # every certificate of bob's",
            "bastion revoke ~/stolen_laptop_key.pub           # a key, certified or not",
        )
    )(revoke)
