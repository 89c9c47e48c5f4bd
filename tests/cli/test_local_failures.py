"""A broken environment (endpoint, region, local disk) is one line that says what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.adapters.aws.client import make_session
from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter
from tests.cli.conftest import invoke


def _one_error_line(result: Any) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error")]
    assert len(lines) == 1, output
    assert lines[0].startswith("bastion: error: ") and "; " in lines[0], output
    assert "Error:" not in lines[0] and "OSError" not in lines[0], output
    return lines[0]


def test_an_endpoint_url_that_is_not_a_url_is_a_usage_error(
    runner: CliRunner, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "notaurl")
    result = invoke(runner, deps, "status")
    assert result.exit_code == ExitStatus.USAGE
    assert "AWS_ENDPOINT_URL" in _one_error_line(result)


def test_a_bastion_home_below_a_regular_file_is_one_line(
    runner: CliRunner,
    deps: Deps,
    counter: CallCounter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "file" / "bastion"))
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1")
    assert result.exit_code == ExitStatus.ERROR
    assert "is a file, not a folder" in _one_error_line(result)
    assert counter.mutating == {}


def test_a_read_only_home_is_one_line(
    runner: CliRunner, deps: Deps, counter: CallCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root a chmod-ed folder stays writable, so the read-only file system is simulated.
    def read_only(path: Any, *_: Any, **__: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1")
    assert result.exit_code == ExitStatus.ERROR
    line = _one_error_line(result)
    assert "Read-only file system" in line and "BASTION_HOME" in line
    assert counter.mutating == {}


def test_a_full_disk_is_one_line_naming_the_file(
    runner: CliRunner, deps: Deps, counter: CallCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1")
    assert result.exit_code == ExitStatus.ERROR
    line = _one_error_line(result)
    assert "no space left" in line and "login_ed25519" in line
    assert counter.mutating == {}


def test_aws_region_alone_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert make_session(None, None).region_name == "eu-west-1"


def test_aws_region_wins_over_aws_default_region_and_loses_to_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert make_session(None, None).region_name == "eu-west-1"
    assert make_session(None, "ap-south-1").region_name == "ap-south-1"
