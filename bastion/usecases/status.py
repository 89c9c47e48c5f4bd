"""Use case `status`: describe the gateway and its drift from what bastion expects (reads only)."""

from __future__ import annotations

from typing import Any

from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.report import gateway_report


def status(settings: Settings, deps: Deps) -> dict[str, Any]:
    """Describe the gateway: instance, addresses, who may connect, keys, sg-app, drift."""
    return gateway_report(settings, deps)
