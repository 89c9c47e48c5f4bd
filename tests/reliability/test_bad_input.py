"""Malformed values for every command's options: one line, exit 2, no traceback, no change."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter
from tests.cli.conftest import invoke

HUGE = "9" * 400
BAD = [
    # up
    ["up", "--port", "0"],
    ["up", "--port", "-1"],
    ["up", "--port", "65536"],
    ["up", "--port", HUGE],
    ["up", "--allow", ""],
    ["up", "--allow", "10.0.0.0/33"],
    ["up", "--allow", "not-an-ip"],
    ["up", "--allow", "192.0.2.1; rm -rf /"],
    ["up", "--name", ""],
    ["up", "--name", "two words"],
    ["up", "--name", "a;b"],
    ["up", "--name", "x" * 300],
    ["up", "--image", ""],
    ["up", "--image", "ami-;drop"],
    ["up", "--reach", ""],
    ["up", "--reach", "127.0.0.1:99999"],
    ["up", "--instance-type", "t3.micro; reboot"],
    ["up", "--timeout", "-5"],
    ["up", "--timeout", "0"],
    ["up", "--timeout", "nan"],
    # status, down, ssh-config, ssh, rotate
    ["status", "--name", "bad name"],
    ["down", "--name", "a;b"],
    ["ssh-config", "--name", ""],
    ["ssh-config", "--reach", "host:port"],
    ["ssh-config", "--hosts", "a b"],
    ["ssh", "--name", "a;b"],
    ["rotate", "--if-older-than", "soon"],
    ["rotate", "--if-older-than", ""],
    ["rotate", "--name", "a b"],
    # burn
    ["burn", "--resume", "inc-nope"],
    ["burn", "--resume", ""],
    ["burn", "--name", "a;b"],
    ["burn", "--allow", "300.1.1.1"],
    # allow, audit
    ["allow", "not-a-cidr"],
    ["allow", "192.0.2.1", "--for", "forever-ish"],
    ["allow", "192.0.2.1", "--for", HUGE + "d"],
    ["allow", "--list", "--prune"],
    ["allow", "192.0.2.1", "--label", "a;b"],
    ["audit", "--max-key-age", "old"],
    ["audit", "--max-key-age", "xyz"],
    ["audit", "--port", "0"],
    # global
    ["--region", "", "status"],
    ["--region", "us east 1", "status"],
]


@pytest.mark.parametrize(
    "args", BAD, ids=lambda a: " ".join(a)[:60] if isinstance(a, list) else None
)
def test_malformed_input_is_one_line_exit_2_and_changes_nothing(
    runner: CliRunner, deps: Deps, counter: CallCounter, args: list[str]
) -> None:
    result = invoke(runner, deps, *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert result.exit_code == ExitStatus.USAGE, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(errors) == 1, output
    assert counter.mutating == {}
    assert "; " in errors[0], output  # WHAT; WHAT TO DO


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["up", "--port", "abc"], "'--port'"),
        (["up", "--timeout", "soon"], "'--timeout'"),
        (["audit", "--port", "x"], "'--port'"),
        (["up", "--dryrun"], "did you mean --dry-run?"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_parser_errors_are_one_bastion_error_line_with_the_suggestion_and_exit_2(
    runner: CliRunner, deps: Deps, counter: CallCounter, args: list[str], needle: str
) -> None:
    # typer/click refuse these before bastion runs; the boundary keeps them to one line.
    result = invoke(runner, deps, *args)
    assert result.exit_code == ExitStatus.USAGE
    assert "Traceback" not in result.stdout + result.stderr
    assert "Usage:" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bastion: error:") and needle in lines[0]
    assert "--help`" in lines[0]
    assert counter.mutating == {}
