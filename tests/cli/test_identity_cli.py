"""Identity before action on the command line: exit 8, one line, both instances, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.adapters.aws.client import Ec2
from bastion.domain.errors import ExitStatus
from bastion.domain.fingerprints import fingerprint
from bastion.wiring import Deps
from tests.aws.test_identity import account_state, disguise
from tests.cli.conftest import invoke
from tests.consoles import FakeConsoles


def _gateway(runner: CliRunner, deps: Deps) -> str:
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json")
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["status"]["instance"]["id"])


def _instance(ec2_client: Any) -> str:
    made = ec2_client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    return str(made["Instances"][0]["InstanceId"])


def _one_line_conflict(result: Any) -> str:
    assert result.exit_code == ExitStatus.CONFLICT, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return str(result.stderr)


def test_burn_of_a_tagged_decoy_exits_8_naming_both_and_changes_nothing(
    runner: CliRunner, deps: Deps, ec2_client: Any
) -> None:
    gateway = _gateway(runner, deps)
    decoy = _instance(ec2_client)
    disguise(ec2_client, decoy, like=gateway)
    before = account_state(ec2_client)

    error = _one_line_conflict(invoke(runner, deps, "burn", "--reason", "decoy"))

    assert decoy in error and f"--instance {gateway}" in error
    assert account_state(ec2_client) == before


def test_up_does_not_recover_a_pin_from_a_spoofed_instance(
    runner: CliRunner, deps: Deps, ec2_client: Any, consoles: FakeConsoles
) -> None:
    gateway = _gateway(runner, deps)
    ec2_client.terminate_instances(InstanceIds=[gateway])
    folder = Path.home() / ".local/share/bastion/us-east-1/default"
    (folder / "host_ed25519.pub").unlink()
    evil = _instance(ec2_client)
    disguise(ec2_client, evil, like=gateway)
    ec2_client.create_tags(
        Resources=[evil],
        Tags=[{"Key": "bastion:host-key-fingerprint", "Value": fingerprint(consoles.key_of(evil))}],
    )
    before = account_state(ec2_client)

    error = _one_line_conflict(invoke(runner, deps, "up", "--allow", "192.0.2.1"))

    assert evil in error and gateway in error
    assert account_state(ec2_client) == before


def test_down_from_a_machine_without_keys_exits_8_until_told(
    runner: CliRunner,
    deps: Deps,
    ec2_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = _gateway(runner, deps)
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(Ec2, "caller_arn", lambda self: "arn:aws:iam::123456789012:user/bob")
    before = account_state(ec2_client)

    error = _one_line_conflict(invoke(runner, deps, "down"))

    assert "made by" in error and "--without-keys" in error
    assert account_state(ec2_client) == before
    done = invoke(runner, deps, "down", "--without-keys")
    assert done.exit_code == 0, done.stderr
    assert "made by" in done.stderr
    assert account_state(ec2_client)["instances"][gateway]["state"] == "terminated"


def test_burn_does_not_adopt_a_tag_only_incident_on_a_decoy(
    runner: CliRunner, deps: Deps, ec2_client: Any
) -> None:
    gateway = _gateway(runner, deps)
    decoy = _instance(ec2_client)
    incident = {"bastion:incident": "inc-20261201T000000Z-dead", "bastion:incident-state": "open"}
    disguise(ec2_client, decoy, like=gateway, **incident)
    before = account_state(ec2_client)

    error = _one_line_conflict(invoke(runner, deps, "burn"))

    assert decoy in error and "--instance" in error
    assert account_state(ec2_client) == before
