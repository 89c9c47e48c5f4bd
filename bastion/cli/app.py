"""The `bastion` application: global options, logging, and the commands in their --help order."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from bastion.cli import (
    allow,
    audit,
    burn,
    cert,
    down,
    revoke,
    rotate,
    sessions,
    ssh,
    ssh_config,
    status,
    up,
)
from bastion.cli.context import OneLineUsageErrors, state_of
from bastion.domain.errors import EXIT_CODE_HELP

app = typer.Typer(
    cls=OneLineUsageErrors,
    name="bastion",
    help=(
        "Run the whole life of an SSH gateway (bastion) on AWS EC2: a custom SSH port open "
        "only to you, pinned host keys, app hosts reachable only through it.\n\n"
        "Examples:\n\n"
        "  bastion up --app-sg sg-app      create or converge the gateway\n\n"
        "  bastion status                  what exists, who may connect, drift\n\n"
        "  bastion ssh-config --write      then `ssh app-1` goes through the gateway\n\n"
        "  bastion rotate --if-older-than 30d   new login key when due\n\n"
        "  bastion burn --reason '...'     incident: contain, keep evidence, relaunch\n\n"
        "  bastion audit                   check the whole layout (for CI)\n\n"
        "  bastion down                    remove everything bastion made\n\n" + EXIT_CODE_HELP
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def main_options(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v info logs, -vv debug logs.")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=lambda shown: _print_version(shown),
            help="Print bastion's version and exit.",
        ),
    ] = False,
) -> None:
    """Options for every command."""
    state = state_of(ctx)
    state.profile, state.region, state.verbosity = profile, region, verbose
    _configure_logging(verbose)


def _print_version(shown: bool) -> None:
    if shown:
        from bastion import __version__

        typer.echo(f"bastion {__version__}")
        raise typer.Exit(0)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    from bastion.cli.redact import RedactSecrets

    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())  # botocore's debug lines carry user data
    # Third-party chatter only at -vv and above.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
    # paramiko logs its transport thread's failures with tracebacks (e.g. no banner yet while
    # sshd boots); bastion reports them itself as one line, so paramiko speaks only at -vvv.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbosity >= 3 else logging.CRITICAL)


app.callback()(main_options)
for command in (
    up,
    status,
    down,
    rotate,
    ssh_config,
    ssh,
    burn,
    allow,
    audit,
    cert,
    revoke,
    sessions,
):
    command.register(app)


def main() -> None:
    """Entry point of the `bastion` script."""
    app()
