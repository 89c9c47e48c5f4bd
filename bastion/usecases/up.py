"""Use case `up`: create or converge the gateway (the flow is shared: `burn` relaunches with it)."""

from __future__ import annotations

from collections.abc import Collection

from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.converge import UpResult, converge


def up(
    settings: Settings, deps: Deps, dry_run: bool = False, asked: Collection[str] = ()
) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing.

    `asked`: the settings given explicitly; a running gateway that differs in them is reported.
    """
    return converge(settings, deps, dry_run=dry_run, asked=asked)


__all__ = ["UpResult", "up"]
