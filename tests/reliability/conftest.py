"""Fixtures shared with the moto tests, and botocore's retry back-off made instant."""

from __future__ import annotations

import pytest

from tests.aws.conftest import (  # noqa: F401  (fixtures)
    app_sg,
    aws,
    consoles,
    counter,
    deps,
    ec2_client,
    fake_ip,
    probe,
)
from tests.cli.conftest import runner  # noqa: F401  (fixture)


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record botocore's retry back-off instead of sleeping (endpoint.py calls time.sleep)."""
    slept: list[float] = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", slept.append)
    return slept
