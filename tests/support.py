"""Helpers shared by test packages."""

from __future__ import annotations

import os
import socket

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, or fail it when running in CI."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this must not be skipped in CI)")
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
