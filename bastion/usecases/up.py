"""Use case `up`: create or converge the gateway (the flow is shared: `burn` relaunches with it)."""

from __future__ import annotations

from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.converge import UpResult, converge


def up(settings: Settings, deps: Deps, dry_run: bool = False) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing."""
    return converge(settings, deps, dry_run=dry_run)


__all__ = ["UpResult", "up"]
