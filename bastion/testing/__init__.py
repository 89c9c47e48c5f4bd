"""Test doubles shipped with bastion: a local stand-in for a launched gateway."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.testing.local_gateway import (
        LocalGateway,
        LocalGatewayError,
        free_port,
        sshd_binary,
    )

__all__ = ["LocalGateway", "LocalGatewayError", "free_port", "sshd_binary"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m bastion.testing.local_gateway` runs the module only once.
    if name in __all__:
        return getattr(importlib.import_module("bastion.testing.local_gateway"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
