"""The command line: one-line errors with documented exit codes, valid JSON, help."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, FakeIp
from tests.cli.conftest import invoke
from tests.faults import Fault


def _one_line_error(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_help_lists_every_command_with_one_line_help(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "--help")
    assert result.exit_code == 0
    for command in ("up", "status", "down"):
        assert f"  {command} " in result.stdout
    assert "Exit codes:" in result.stdout


def test_up_json_is_valid_json_with_plan_and_status(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"]["instance"]["state"] == "running"
    assert any(a["kind"] == "launch_instance" for a in data["plan"]["actions"])


def test_status_and_down_json_are_valid_json(runner: CliRunner, deps: Deps) -> None:
    assert invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json").exit_code == 0
    status = invoke(runner, deps, "status", "--json")
    assert json.loads(status.stdout)["exists"] is True
    plan = invoke(runner, deps, "down", "--dry-run", "--json")
    assert json.loads(plan.stdout)["dry_run"] is True
    done = invoke(runner, deps, "down", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["plan"]["command"] == "down"


def test_dry_run_prints_the_plan_and_changes_nothing(
    runner: CliRunner, deps: Deps, counter: CallCounter
) -> None:
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--dry-run")
    assert result.exit_code == 0
    assert "launch t3.micro gateway" in result.stdout
    assert "Dry run: nothing was changed." in result.stdout
    assert counter.mutating == {}


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["up", "--port", "80"], ExitStatus.USAGE, "port 80 is not allowed"),
        (["up", "--port", "70000"], ExitStatus.USAGE, "port 70000 is not allowed"),
        (["up", "--allow", "10.0.0.300"], ExitStatus.USAGE, "is not an IP address or CIDR"),
        (["up", "--allow", "10.0.0.1/24"], ExitStatus.USAGE, "host bits set"),
        (["up", "--allow", "0.0.0.0/0"], ExitStatus.USAGE, "--allow-anywhere"),
        (["up", "--allow", "::/0"], ExitStatus.USAGE, "--allow-anywhere"),
        (["up", "--name", "bad name;rm"], ExitStatus.USAGE, "gateway name"),
        (["up", "--image", "windows"], ExitStatus.USAGE, "image 'windows' is unknown"),
        (["up", "--reach", "nowhere"], ExitStatus.USAGE, "--reach"),
        (["--region", "xx-nowhere-9", "status"], ExitStatus.USAGE, "unknown AWS region"),
        (
            ["up", "--allow", "192.0.2.1", "--app-sg", "sg-0123456789abcdef0"],
            ExitStatus.NOT_FOUND,
            "sg-0123456789abcdef0",
        ),
        (
            ["up", "--allow", "192.0.2.1", "--app-sg", "no-such-group"],
            ExitStatus.NOT_FOUND,
            "no-such-group",
        ),
    ],
)
def test_bad_input_gets_one_line_error_and_exit_code(
    runner: CliRunner, deps: Deps, counter: CallCounter, args: list[str], status: int, needle: str
) -> None:
    result = invoke(runner, deps, *args)
    assert result.exit_code == status
    assert needle in _one_line_error(result)
    assert counter.mutating == {}


def test_missing_credentials_are_an_auth_error(
    runner: CliRunner, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    from bastion.adapters.aws.client import make_session

    deps.session_factory = make_session
    result = invoke(runner, deps, "status")
    assert result.exit_code == ExitStatus.AWS_AUTH
    assert "no AWS credentials found" in _one_line_error(result)


@pytest.mark.parametrize(
    ("code", "http", "status", "needle"),
    [
        ("UnauthorizedOperation", 403, ExitStatus.AWS_AUTH, "AWS refused ec2:RunInstances"),
        ("InstanceLimitExceeded", 400, ExitStatus.AWS, "terminate unused instances"),
    ],
)
def test_aws_refusing_the_launch_is_reported_in_one_line(
    runner: CliRunner, deps: Deps, code: str, http: int, status: int, needle: str
) -> None:
    fault = Fault("RunInstances", code, http)
    counter_attach = deps.on_ec2

    def attach(ec2: Any) -> None:
        assert counter_attach
        counter_attach(ec2)
        fault.attach(ec2)

    deps.on_ec2 = attach
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1")
    assert result.exit_code == status
    line = _one_line_error(result)
    assert needle in line
    # A refusal names the IAM action instead of AWS's code; other failures keep the code.
    assert code in line or status == ExitStatus.AWS_AUTH


def test_throttling_is_retried_until_it_passes(
    runner: CliRunner,
    deps: Deps,
    counter: CallCounter,
    ec2_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)
    faults = [
        Fault("CreateSecurityGroup", "RequestLimitExceeded", 503, times=2),
        Fault("RunInstances", "RequestLimitExceeded", 503, times=3),
    ]
    original = deps.on_ec2

    def attach(ec2: Any) -> None:
        assert original
        original(ec2)
        for fault in faults:
            fault.attach(ec2)

    deps.on_ec2 = attach
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json")
    assert result.exit_code == 0, result.stderr
    assert [f.seen for f in faults] == [2, 3]
    assert counter.calls["RunInstances"] == 1  # one API call; botocore retried it inside
    assert json.loads(result.stdout)["status"]["drift"] == []
    reservations = ec2_client.describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 1


@pytest.mark.parametrize(
    ("answers", "needle"),
    [
        ({}, "every echo service failed"),
        (
            {
                "https://checkip.amazonaws.com": "198.51.100.1",
                "https://api.ipify.org": "198.51.100.2",
                "https://icanhazip.com": "198.51.100.3",
            },
            "disagree",
        ),
    ],
)
def test_caller_ip_detection_failures_ask_for_allow(
    runner: CliRunner, deps: Deps, counter: CallCounter, answers: dict[str, str], needle: str
) -> None:
    def fetch(url: str, timeout: float) -> str:
        if url not in answers:
            raise OSError("network unreachable")
        return answers[url]

    deps.fetch = fetch
    result = invoke(runner, deps, "up")
    assert result.exit_code == ExitStatus.ERROR
    line = _one_line_error(result)
    assert needle in line and "--allow" in line
    assert counter.mutating == {}


def test_caller_ip_is_detected_when_allow_is_absent(
    runner: CliRunner, deps: Deps, fake_ip: FakeIp
) -> None:
    result = invoke(runner, deps, "up", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"]["caller"] == "203.0.113.7/32"


def test_version_prints_the_version_and_exits_0(runner: CliRunner, deps: Deps) -> None:
    from bastion import __version__

    result = invoke(runner, deps, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"bastion {__version__}"


@pytest.mark.parametrize(
    "command", ["up", "status", "down", "rotate", "ssh-config", "ssh", "burn", "allow", "audit"]
)
def test_help_examples_fit_80_columns_one_whole_example_per_line(
    runner: CliRunner, deps: Deps, command: str
) -> None:
    result = runner.invoke(
        __import__("bastion.cli", fromlist=["app"]).app,
        [command, "--help"],
        obj=deps,
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0
    tail = result.stdout.split("Example", 1)[1].splitlines()[1:]
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    for line in tail:
        words = line.split()
        # A wrapped example leaves a line that does not start with a command.
        assert not words or words[0] in ("bastion", "ssh"), result.stdout
        assert not line.rstrip().endswith("-"), result.stdout


def test_rotate_relaunch_takes_a_timeout(
    runner: CliRunner, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bastion.usecases.rotate as rotate_use_cases

    seen: list[float] = []

    def fake_relaunch(
        settings: Any, deps: Any, dry_run: bool, older: Any, instance: Any = None
    ) -> Any:
        seen.append(settings.wait_timeout)
        raise SystemExit(0)

    monkeypatch.setattr(rotate_use_cases, "relaunch_gateway", fake_relaunch)
    result = invoke(runner, deps, "rotate", "--relaunch", "--timeout", "900", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert seen == [900.0]
    bad = invoke(runner, deps, "rotate", "--relaunch", "--timeout", "nan")
    assert bad.exit_code == ExitStatus.USAGE and "--timeout" in bad.stderr
