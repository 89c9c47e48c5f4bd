"""Use case `up`: create or converge the gateway (the flow is shared: `burn` relaunches with it)."""

from __future__ import annotations

from collections.abc import Collection

from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.converge import UpResult, converge


def up(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    asked: Collection[str] = (),
    instance: str | None = None,
) -> UpResult:
    """Create or converge a gateway; a second run with nothing changed changes nothing.

    `asked`: the settings given explicitly; a running gateway that differs in them is reported.
    `instance` is the operator's explicit choice of an instance to recover the pin from when
    nothing ties it to this machine's record (see domain.identity).
    """
    return converge(settings, deps, dry_run=dry_run, asked=asked, chosen_instance=instance)


__all__ = ["UpResult", "up"]
