"""Isolation for every test: fake AWS credentials, a temporary HOME, no real config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point HOME, XDG dirs and AWS config at a temp dir and give fake credentials."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    # One cache per test run: EC2's cut service model is made once, then every client uses it.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    for var in (
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "BASTION_HOME",
        "BASTION_CONFIG",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in __import__("os").environ if v.startswith("BASTION_")]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture(autouse=True)
def release_gateway_locks() -> Iterator[None]:
    """Drop the gateway locks a test's commands took (a real process drops them on exit)."""
    yield
    from bastion.adapters.lock import release_all
    from bastion.usecases.shared.lease import forget_aws_locks

    release_all()
    forget_aws_locks()  # no call: moto is gone by now, and the leases run out by themselves


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep every test that starts a real sshd on one xdist worker (useradd, /run/sshd)."""
    for item in items:
        if {"ssh", "e2e"} & set(item.path.parts[-3:-1]):
            item.add_marker(pytest.mark.xdist_group("real-sshd"))
