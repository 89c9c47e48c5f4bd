"""The CLI shows the gateway's login keys: status (table and --json) and audit (exit 9)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bastion.wiring import Deps
from tests.aws.conftest import FakeProbe, make_settings
from tests.cli.conftest import invoke

THIEF_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH4mF0XvH0pSxN5y3XvX6b2m8u7WqXj6Jk0e3Yz9bQx thief"
)


def thief_on_the_gateway(probe: FakeProbe) -> None:
    login = (make_settings().gateway_dir("us-east-1") / "login_ed25519.pub").read_text().strip()
    probe.login_listing = (
        f"restrict,port-forwarding {login}\nrestrict,port-forwarding {THIEF_PUBLIC}\n"
    )


def test_status_names_the_unknown_login_key_in_the_table_and_the_json(
    runner: CliRunner, deps: Deps, probe: FakeProbe
) -> None:
    assert invoke(runner, deps, "up", "--allow", "203.0.113.7").exit_code == 0
    thief_on_the_gateway(probe)
    table = invoke(runner, deps, "status")
    assert table.exit_code == 0
    assert "UNKNOWN: not put there by bastion" in table.stdout
    assert "(bastion)" in table.stdout
    data = json.loads(invoke(runner, deps, "status", "--json").stdout)
    assert [k["known"] for k in data["login_keys"]["keys"]] == [True, False]
    assert len(data["login_keys"]["unknown"]) == 1


def test_status_of_an_unreachable_gateway_says_so_and_exits_0(
    runner: CliRunner, deps: Deps, probe: FakeProbe
) -> None:
    assert invoke(runner, deps, "up", "--allow", "203.0.113.7").exit_code == 0
    probe.reachable = False
    result = invoke(runner, deps, "status")
    assert result.exit_code == 0
    assert "not checked: the gateway's sshd at" in result.stdout


def test_audit_fails_with_exit_9_and_tells_to_rotate(
    runner: CliRunner, deps: Deps, probe: FakeProbe
) -> None:
    assert invoke(runner, deps, "up", "--allow", "203.0.113.7").exit_code == 0
    thief_on_the_gateway(probe)
    result = invoke(runner, deps, "audit", "--json")
    assert result.exit_code == 9
    data = json.loads(result.stdout)
    (finding,) = [f for f in data["findings"] if f["id"] == "login-key-unknown"]
    assert "bastion rotate --name default" in finding["fix"]
    (keys,) = data["login_keys"].values()
    assert keys["checked"] and len(keys["unknown"]) == 1
