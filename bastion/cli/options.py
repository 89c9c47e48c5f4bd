"""Options several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

NameOpt = Annotated[
    str | None, typer.Option("--name", "-n", help="Gateway name [default: default].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout; no progress.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (every change) and make none.")
]
AppSgOpt = Annotated[
    str | None,
    typer.Option("--app-sg", help="App security group (id or name) to admit SSH from the gateway."),
]
ReachOpt = Annotated[
    str | None,
    typer.Option(
        "--reach",
        help="Where this machine reaches sshd: public (default), private (VPN), or HOST:PORT "
        "(an SSM port forward or the local demo).",
    ),
]

InstanceOpt = Annotated[
    str | None,
    typer.Option(
        "--instance",
        help="Act on this instance id even if nothing ties it to this machine's record "
        "(bastion refuses a gateway known only by its tags, which anyone may write).",
    ),
]
WithoutKeysOpt = Annotated[
    bool,
    typer.Option(
        "--without-keys",
        help="Go ahead although this machine holds none of the gateway's keys (shows who "
        "made it first).",
    ),
]


def examples(*lines: str) -> str:
    """Return a help epilog of examples, one per line, that click never rewraps mid-option."""
    # "\b" alone on a line tells click to keep the next paragraph's lines as they are.
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
