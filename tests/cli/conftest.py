"""Run the typer app in-process with injected dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.aws.conftest import (  # noqa: F401  (fixtures)
    FakeIp,
    FakeProbe,
    app_sg,
    aws,
    consoles,
    counter,
    deps,
    ec2_client,
    fake_ip,
    probe,
)


@pytest.fixture
def runner() -> Iterator[CliRunner]:
    yield CliRunner()


def invoke(runner: CliRunner, injected: Any, *args: str) -> Any:
    from bastion.cli import app

    return runner.invoke(app, list(args), obj=injected)
