"""What the CLI shows: nothing silently ignored, drift for lost pins, short failures, wording."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.domain.errors import AwsError
from bastion.domain.model import Action
from bastion.wiring import Deps
from tests.cli.conftest import invoke

ALLOW = ("--allow", "192.0.2.1")


def _folder() -> Path:
    from bastion.adapters.config import load_settings

    return load_settings({}).gateway_dir("us-east-1").expanduser()


def _up(runner: CliRunner, deps: Deps, *args: str) -> Any:
    result = invoke(runner, deps, "up", *ALLOW, *args)
    assert result.exit_code == 0, result.stderr
    return result


def _status(runner: CliRunner, deps: Deps, *args: str) -> Any:
    result = invoke(runner, deps, "status", *args)
    assert result.exit_code == 0, result.stderr
    return result


def _ec2(ec2_client: Any, instance_id: str) -> dict[str, Any]:
    found = ec2_client.describe_instances(InstanceIds=[instance_id])
    return dict(found["Reservations"][0]["Instances"][0])


# --- up --instance-type / --image on a running gateway ---------------------------------------


def test_up_with_another_instance_type_on_a_running_gateway_says_what_differs_and_how(
    runner: CliRunner, deps: Deps
) -> None:
    _up(runner, deps)
    again = _up(runner, deps, "--instance-type", "t3.small")
    assert "runs type t3.micro, not the t3.small asked for" in again.stderr
    assert "`bastion rotate --relaunch --instance-type t3.small`" in again.stderr


def test_up_with_another_image_on_a_running_gateway_says_what_differs_in_json_too(
    runner: CliRunner, deps: Deps
) -> None:
    _up(runner, deps)
    again = invoke(runner, deps, "up", *ALLOW, "--image", "ami-0123456789abcdef0", "--json")
    assert again.exit_code == 0, again.stderr
    warnings = json.loads(again.stdout)["plan"]["warnings"]
    (differs,) = [w for w in warnings if "asked for" in w]
    assert "runs image al2023" in differs
    assert "rotate --relaunch --image ami-0123456789abcdef0" in differs


def test_up_without_the_options_does_not_warn_about_the_running_type(
    runner: CliRunner, deps: Deps
) -> None:
    _up(runner, deps, "--instance-type", "t3.small")
    again = _up(runner, deps)  # the default t3.micro was not asked for: nothing to say
    assert "asked for" not in again.stderr


def test_rotate_relaunch_with_an_instance_type_launches_the_new_generation_with_it(
    runner: CliRunner, deps: Deps, ec2_client: Any
) -> None:
    first = json.loads(invoke(runner, deps, "up", *ALLOW, "--json").stdout)
    old = first["status"]["instance"]["id"]
    result = invoke(runner, deps, "rotate", "--relaunch", "--instance-type", "t3.small", *())
    assert result.exit_code == 0, result.stderr
    status = json.loads(_status(runner, deps, "--json").stdout)
    new = status["instance"]["id"]
    assert new != old
    assert _ec2(ec2_client, new)["InstanceType"] == "t3.small"
    assert _ec2(ec2_client, old)["State"]["Name"] in ("shutting-down", "terminated")


def test_rotate_instance_type_without_relaunch_is_a_usage_error(
    runner: CliRunner, deps: Deps
) -> None:
    result = invoke(runner, deps, "rotate", "--instance-type", "t3.small")
    assert result.exit_code == 2
    assert "need --relaunch" in result.stderr


# --- a lost host-key pin, a missing public-key copy --------------------------------------------


def test_a_deleted_host_key_pin_is_drift_and_up_says_when_and_from_what_it_recovered_it(
    runner: CliRunner, deps: Deps
) -> None:
    created = json.loads(invoke(runner, deps, "up", *ALLOW, "--json").stdout)
    instance_id = created["status"]["instance"]["id"]
    (_folder() / "host_ed25519.pub").unlink()

    report = json.loads(_status(runner, deps, "--json").stdout)
    assert report["host_key_pinned"] is False
    assert any("host-key pin (host_ed25519.pub) is missing" in d for d in report["drift"])
    table = _status(runner, deps).stdout
    assert "NOT pinned on this machine" in table
    assert "(pinned)" not in table

    again = _up(runner, deps)
    assert f"recover the missing host-key pin of {instance_id}" in again.stdout
    note = re.search(r"recovered it at (\S+) from the console output of (i-\w+)", again.stderr)
    assert note and note.group(2) == instance_id, again.stderr

    after = json.loads(_status(runner, deps, "--json").stdout)
    assert after["host_key_pinned"] is True
    assert not any("host-key pin" in d for d in after["drift"])
    assert after["host_key_recovered"]["instance_id"] == instance_id
    assert "recovered" in _status(runner, deps).stdout


@pytest.mark.parametrize(
    ("missing", "source"),
    [
        ("login_ed25519.pub", "login_ed25519"),
        ("admin_ed25519.pub", "admin_ed25519"),
        ("known_hosts", "host_ed25519.pub"),
    ],
)
def test_a_missing_copy_is_drift_and_up_rewrites_it_and_says_so(
    runner: CliRunner, deps: Deps, missing: str, source: str
) -> None:
    _up(runner, deps)
    path = _folder() / missing
    kept = path.read_text()
    path.unlink()  # as a full disk leaves it: the private key written, the copy not

    report = json.loads(_status(runner, deps, "--json").stdout)
    assert (
        f"{missing} is missing on this machine; run `bastion up` to rewrite it" in report["drift"]
    )
    again = _up(runner, deps)
    assert f"{missing} from {source}" in again.stderr
    assert path.read_text().split()[:2] == kept.split()[:2]
    assert not any(
        missing in d for d in json.loads(_status(runner, deps, "--json").stdout)["drift"]
    )


# --- a failure after changes: one short line ---------------------------------------------------


def test_a_failure_after_changes_is_one_short_line_and_the_steps_are_in_the_journal_and_v(
    runner: CliRunner, deps: Deps
) -> None:
    def fail_at_launch(action: Action) -> None:
        if action.kind == "launch_instance":
            raise AwsError("launching the gateway: InsufficientInstanceCapacity: none left")

    deps.before_each = fail_at_launch
    result = invoke(runner, deps, "-v", "up", *ALLOW)
    assert result.exit_code == 7
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("bastion: error:")]
    assert "InsufficientInstanceCapacity" in line and "rerun `bastion up`" in line
    assert "step(s) were done before it" in line
    assert len(line) < 250, line
    assert "import the login public key" not in line
    journal = (_folder() / "journal.jsonl").read_text()
    assert "import the login public key" in journal
    done = [x for x in result.stderr.splitlines() if "done before the failure" in x]
    assert any("import the login public key" in x for x in done), result.stderr


# --- wording -----------------------------------------------------------------------------------


def test_allow_anywhere_warns_once_without_shouting_twice(runner: CliRunner, deps: Deps) -> None:
    result = invoke(runner, deps, "up", "--allow", "0.0.0.0/0", "--allow-anywhere", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "bastion: warning: the gateway port will be reachable from 0.0.0.0/0" in result.stderr
    assert "WARNING" not in result.stderr


def test_the_audit_fix_plan_names_the_layout_not_a_gateway_called_star(
    runner: CliRunner, deps: Deps
) -> None:
    result = invoke(runner, deps, "audit", "--fix", "--dry-run")
    assert "gateway '*'" not in result.stdout + result.stderr
    assert "for the layout" in result.stdout or "nothing to change for the layout" in result.stdout


# --- tables at 80 columns ----------------------------------------------------------------------


def test_status_at_80_columns_never_cuts_an_id_or_a_fingerprint(
    runner: CliRunner, deps: Deps
) -> None:
    created = json.loads(invoke(runner, deps, "up", *ALLOW, "--json").stdout)
    status = created["status"]
    out = invoke(runner, deps, "status").stdout  # not a terminal: rich's 80 columns
    lines = out.splitlines()
    for whole in (
        status["instance"]["id"],
        status["security_group"],
        status["host_key_fingerprint"],
        status["login_key_fingerprint"],
    ):
        assert any(whole in line for line in lines), (whole, out)
    assert "…" not in out


def test_the_allow_list_at_80_columns_keeps_ids_owners_and_dates_whole(
    runner: CliRunner, deps: Deps
) -> None:
    _up(runner, deps)
    added = invoke(runner, deps, "allow", "198.51.100.0/24", "--label", "office", "--for", "8h")
    assert added.exit_code == 0, added.stderr
    listed = invoke(runner, deps, "allow", "--list", "--json")
    rules = json.loads(listed.stdout)["rules"]
    table = invoke(runner, deps, "allow", "--list").stdout
    lines = table.splitlines()
    for rule in rules:
        for value in (rule["cidr"], rule["expires_at"], rule["owner"]):
            if value:
                assert any(str(value) in line for line in lines), (value, table)
    assert "…" not in table
    assert all(len(line) <= 80 for line in lines if "│" in line)
