"""`bastion allow` and `bastion audit` on the command line: JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter
from tests.cli.conftest import invoke


@pytest.fixture
def gateway(runner: CliRunner, deps: Deps, app_sg: str) -> str:
    result = invoke(runner, deps, "up", "--app-sg", app_sg, "--json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["status"]["security_group"])


def _error(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_shows_both_commands_with_examples(runner: CliRunner, deps: Deps) -> None:
    top = invoke(runner, deps, "--help")
    assert "  allow " in top.stdout and "  audit " in top.stdout
    assert "9 `bastion audit` found a failure" in top.stdout
    assert "allow --prune" in invoke(runner, deps, "allow", "--help").stdout
    assert "bastion audit --json" in invoke(runner, deps, "audit", "--help").stdout


def test_allow_adds_lists_and_revokes(runner: CliRunner, deps: Deps, gateway: str) -> None:
    added = invoke(
        runner, deps, "allow", "198.51.100.0/24", "--label", "office", "--for", "8h", "--json"
    )
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["plan"]["actions"][0]["kind"] == "authorize_ingress"

    listed = invoke(runner, deps, "allow", "--list", "--json")
    office = [r for r in json.loads(listed.stdout)["rules"] if r["label"] == "office"]
    assert office[0]["expires_at"] == "2026-01-01T08:00Z"

    table = invoke(runner, deps, "allow", "--list")
    assert "office" in table.stdout and "8h" in table.stdout

    revoked = invoke(runner, deps, "allow", "--revoke", "office")
    assert revoked.exit_code == 0, revoked.stderr
    assert "office" not in invoke(runner, deps, "allow", "--list").stdout


def test_allow_needs_exactly_one_thing_to_do(runner: CliRunner, deps: Deps) -> None:
    for args in ([], ["me", "--prune"], ["--list", "--revoke", "x"]):
        result = invoke(runner, deps, "allow", *args)
        assert result.exit_code == ExitStatus.USAGE
        assert "exactly one of" in _error(result)


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["allow", "0.0.0.0/0", "--label", "all"], ExitStatus.USAGE, "whole Internet"),
        (["allow", "192.0.2.0/24", "--for", "soon"], ExitStatus.USAGE, "--for 'soon'"),
        (["allow", "192.0.2.0/24", "--label", "Bad Label"], ExitStatus.USAGE, "label"),
        (["allow", "192.0.2.0/24", "--label", "me"], ExitStatus.USAGE, "kept by `bastion up`"),
        (["allow", "--revoke", "me"], ExitStatus.CONFLICT, "pass --force"),
        (["allow", "--revoke", "nothing"], ExitStatus.NOT_FOUND, "allow --list"),
    ],
)
def test_allow_errors_are_one_line_with_their_exit_code(
    runner: CliRunner, deps: Deps, gateway: str, args: list[str], status: int, needle: str
) -> None:
    result = invoke(runner, deps, *args)
    assert result.exit_code == status, result.stderr
    assert needle in _error(result)


def test_prune_from_cron_with_nothing_to_do_exits_zero(
    runner: CliRunner, deps: Deps, counter: CallCounter
) -> None:
    result = invoke(runner, deps, "allow", "--prune")
    assert result.exit_code == 0, result.stderr
    assert counter.mutating == {}


def test_audit_exits_zero_on_the_good_layout(runner: CliRunner, deps: Deps, gateway: str) -> None:
    result = invoke(runner, deps, "audit", "--app-sg", "sg-app", "--elb-sg", "sg-elb", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["failures"] == 0
    assert "every check passed" in invoke(runner, deps, "audit").stdout


def test_audit_exits_nine_with_the_findings_on_stdout(
    runner: CliRunner, deps: Deps, gateway: str, ec2_client: Any, app_sg: str
) -> None:
    ec2_client.authorize_security_group_ingress(
        GroupId=app_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    result = invoke(runner, deps, "audit", "--json")
    assert result.exit_code == ExitStatus.AUDIT_FAILED == 9
    data = json.loads(result.stdout)
    assert {f["id"] for f in data["findings"]} == {"world-open-ssh", "app-ssh-source"}
    assert "world-open-ssh" in _error(result)

    table = invoke(runner, deps, "audit")
    assert table.exit_code == 9 and "world-open-ssh" in table.stdout


def test_audit_fix_dry_run_changes_nothing(
    runner: CliRunner, deps: Deps, gateway: str, counter: CallCounter, ec2_client: Any
) -> None:
    instance = ec2_client.describe_instances(
        Filters=[{"Name": "tag:bastion:role", "Values": ["gateway"]}]
    )["Reservations"][0]["Instances"][0]["InstanceId"]
    ec2_client.modify_instance_metadata_options(InstanceId=instance, HttpTokens="optional")
    counter.reset()
    result = invoke(runner, deps, "audit", "--fix", "--dry-run")
    assert result.exit_code == 9
    assert f"require IMDSv2 on {instance}" in result.stdout
    assert "Dry run: nothing was changed." in result.stdout
    assert counter.mutating == {}

    fixed = invoke(runner, deps, "audit", "--fix")
    assert fixed.exit_code == 0, fixed.stderr


def test_a_bad_max_key_age_is_named_as_max_key_age_not_for(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "audit", "--max-key-age", "xyz")
    assert result.exit_code == ExitStatus.USAGE
    assert result.stderr.startswith("bastion: error: --max-key-age 'xyz' is not a duration;")
    assert "--for" not in result.stderr


@pytest.mark.parametrize(
    ("cidr", "needle"),
    [("10.0.0.0/8", "10.0.0.0/8 is wider than /24"), ("2600::/48", "2600::/48 is wider than /56")],
)
def test_allow_refuses_a_wide_range_without_wide_in_one_line(
    runner: CliRunner, deps: Deps, gateway: str, counter: CallCounter, cidr: str, needle: str
) -> None:
    counter.reset()
    result = invoke(runner, deps, "allow", cidr, "--label", "corp")
    assert result.exit_code == ExitStatus.USAGE, result.stderr
    assert needle in _error(result) and "--wide" in _error(result)
    assert counter.mutating == {}


def test_allow_refuses_the_half_that_completes_the_internet_even_with_wide(
    runner: CliRunner, deps: Deps, gateway: str, counter: CallCounter
) -> None:
    first = invoke(runner, deps, "allow", "128.0.0.0/1", "--label", "hi", "--wide")
    assert first.exit_code == 0, first.stderr
    counter.reset()
    result = invoke(runner, deps, "allow", "0.0.0.0/1", "--label", "lo", "--wide")
    assert result.exit_code == ExitStatus.USAGE, result.stderr
    assert "would open tcp/62222 to the whole Internet" in _error(result)
    assert counter.mutating == {}


def test_allow_with_wide_adds_the_range(runner: CliRunner, deps: Deps, gateway: str) -> None:
    result = invoke(runner, deps, "allow", "10.0.0.0/8", "--label", "corp", "--wide", "--json")
    assert result.exit_code == 0, result.stderr
    assert "10.0.0.0/8" in {r["cidr"] for r in json.loads(result.stdout)["rules"]}


@pytest.mark.parametrize(
    ("allow", "needle"),
    [
        (["0.0.0.0/1", "128.0.0.0/1"], "together would open the gateway to the whole Internet"),
        (["2000::/4", "3000::/4"], "whole Internet"),
        (["10.0.0.0/8"], "pass --allow-wide"),
    ],
)
def test_up_refuses_allow_sets_covering_the_internet_or_too_wide(
    runner: CliRunner, deps: Deps, app_sg: str, counter: CallCounter, allow: list[str], needle: str
) -> None:
    flags = [arg for cidr in allow for arg in ("--allow", cidr)]
    result = invoke(runner, deps, "up", "--app-sg", app_sg, *flags)
    assert result.exit_code == ExitStatus.USAGE, result.stderr
    assert needle in _error(result)
    assert counter.mutating == {}


def test_up_with_allow_wide_opens_the_range(runner: CliRunner, deps: Deps, app_sg: str) -> None:
    result = invoke(
        runner, deps, "up", "--app-sg", app_sg, "--allow", "10.0.0.0/8", "--allow-wide", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert [a["cidr"] for a in json.loads(result.stdout)["status"]["allowed"]] == ["10.0.0.0/8"]


def test_audit_exits_nine_on_two_halves_of_the_internet(
    runner: CliRunner, deps: Deps, gateway: str, ec2_client: Any
) -> None:
    ec2_client.authorize_security_group_ingress(
        GroupId=gateway,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 62222,
                "ToPort": 62222,
                "IpRanges": [{"CidrIp": "0.0.0.0/1"}, {"CidrIp": "128.0.0.0/1"}],
            }
        ],
    )
    result = invoke(runner, deps, "audit", "--json")
    assert result.exit_code == ExitStatus.AUDIT_FAILED == 9, (result.stderr, result.exception)
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["id"] == "world-open-ssh" and "100% of public IPv4" in finding["message"]
