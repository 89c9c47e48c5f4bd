"""`bastion burn` on the command line: plan, record, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter
from tests.cli.conftest import invoke


def test_burn_dry_run_json_lists_the_calls_and_changes_nothing(
    runner: CliRunner, deps: Deps, counter: CallCounter
) -> None:
    assert invoke(runner, deps, "up", "--allow", "192.0.2.1").exit_code == 0
    counter.reset()
    result = invoke(runner, deps, "burn", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dry_run"] is True
    assert data["steps"][0]["step"] == "contain_app_ssh"
    assert any(c.startswith("TerminateInstances") for s in data["steps"] for c in s["calls"])
    assert counter.mutating == {}


def test_burn_prints_each_phase_and_where_the_report_is(runner: CliRunner, deps: Deps) -> None:
    assert invoke(runner, deps, "up", "--allow", "192.0.2.1").exit_code == 0
    result = invoke(runner, deps, "burn", "--reason", "cli test", "--allow", "192.0.2.1")
    assert result.exit_code == 0, result.stderr
    assert "Contained in" in result.stdout
    report = Path(result.stdout.split("report: ")[1].split(" ")[0])
    assert json.loads(report.read_text())["reason"] == "cli test"
    status = json.loads(invoke(runner, deps, "status", "--json").stdout)
    assert status["incidents"][0]["state"] == "closed"


def test_burn_without_a_gateway_is_not_found(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "burn")
    assert result.exit_code == ExitStatus.NOT_FOUND
    assert result.stderr.count("\n") == 1 and "no live instance" in result.stderr


def test_burn_resume_with_a_malformed_id_is_a_usage_error(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "burn", "--resume", "../../etc")
    assert result.exit_code == ExitStatus.USAGE
    assert "is not an incident id" in result.stderr and "Traceback" not in result.stderr


def test_burn_without_an_elastic_ip_never_mentions_one(runner: CliRunner, deps: Deps) -> None:
    assert invoke(runner, deps, "up", "--allow", "192.0.2.1").exit_code == 0
    plan = invoke(runner, deps, "burn", "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    assert "Plan for incident" in plan.stdout and "Elastic IP" not in plan.stdout
    done = invoke(runner, deps, "burn", "--reason", "no eip", "--allow", "192.0.2.1")
    assert done.exit_code == 0, done.stderr
    assert "Done for incident" in done.stdout and "Elastic IP" not in done.stdout
