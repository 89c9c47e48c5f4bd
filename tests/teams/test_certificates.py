"""Operators log in with their own keys and short-lived certificates from the gateway's KMS CA.

Real sshd (booted from the instance's user data), real `ssh`, moto with IAM enforced, and a
separate HOME and IAM user per operator: nothing is copied between them.
"""

from __future__ import annotations

from tests.teams.conftest import Team


def start_gateway(team: Team) -> None:
    """alice makes a certificate gateway; bob gets an allow rule of his own."""
    made = team.run("alice", "up", "--certificates", "--allow", "127.0.0.1/32")
    assert made.exit_code == 0, made.output
    bob_rule = team.run("bob", "allow", "127.0.0.2/32", "--label", "bob", "--for", "8h")
    assert bob_rule.exit_code == 0, bob_rule.output


def test_alice_and_bob_connect_with_certificates_from_their_own_keys(team: Team) -> None:
    start_gateway(team)
    for who in ("alice", "bob"):
        issued = team.run(who, "cert", "--key", str(team.operators[who].key) + ".pub")
        assert issued.exit_code == 0, issued.output
        assert team.operators[who].arn in issued.output
        through = team.ssh(who)
        assert through.stdout.startswith("SSH-2.0-"), (who, through.stderr)
    log = team.probe.gateway.log_text()
    for who in ("alice", "bob"):
        assert f"ID {team.operators[who].arn} (serial " in log


def test_carol_without_kms_sign_gets_exit_4_naming_the_permission(team: Team) -> None:
    start_gateway(team)
    rule = team.run("carol", "allow", "127.0.0.3/32", "--label", "carol", "--for", "8h")
    assert rule.exit_code == 0, rule.output
    refused = team.run("carol", "cert", "--key", str(team.operators["carol"].key) + ".pub")
    assert refused.exit_code == 4, refused.output
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "kms:Sign" in lines[0], refused.output
    assert not (team.operators["carol"].folder() / "login-cert.pub").exists()
