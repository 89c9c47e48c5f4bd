"""Operators log in with their own keys and short-lived certificates from the gateway's KMS CA.

Real sshd (booted from the instance's user data), real `ssh`, moto with IAM enforced, and a
separate HOME and IAM user per operator: nothing is copied between them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
from moto.core.authorization import disable_iam_authentication

from tests.teams.conftest import Team


def start_gateway(team: Team) -> None:
    """alice makes a certificate gateway; bob gets allow rules of his own.

    bob's `ssh` binds 127.0.0.2; bastion's own admin channel (paramiko) leaves from 127.0.0.1,
    so his second rule (an "office" /31) admits that too.
    """
    made = team.run("alice", "up", "--certificates", "--allow", "127.0.0.1/32")
    assert made.exit_code == 0, made.output
    for cidr, label in (("127.0.0.2/32", "bob"), ("127.0.0.0/31", "office")):
        bob_rule = team.run("bob", "allow", cidr, "--label", label, "--for", "8h")
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
    assert not (team.operators["carol"].folder() / "login_identity-cert.pub").exists()


def test_a_certificate_used_from_another_address_is_refused_by_sshd(team: Team) -> None:
    start_gateway(team)
    team.certify("alice")
    assert team.ssh("alice").stdout.startswith("SSH-2.0-")
    # The same key and certificate from bob's address (a stolen laptop elsewhere): refused.
    stolen = team.ssh("alice", source=team.operators["bob"].address)
    assert stolen.returncode != 0 and not stolen.stdout
    assert "Permission denied" in stolen.stderr, stolen.stderr
    assert "not from a permitted source address" in team.probe.gateway.log_text()


def test_an_expired_certificate_is_refused_by_sshd(team: Team) -> None:
    start_gateway(team)
    real_now = team.clock.current
    team.clock.current = real_now - timedelta(hours=3)  # issued 3 h ago, for 1 h
    issued = team.certify("alice")
    team.clock.current = real_now
    assert datetime.fromisoformat(str(issued["valid_before"])) < datetime.now(UTC)
    expired = team.ssh("alice")
    assert expired.returncode != 0 and "Permission denied" in expired.stderr, expired.stderr


def test_a_revoked_serial_is_refused_and_the_revocation_outlives_the_gateway(team: Team) -> None:
    start_gateway(team)
    issued = team.certify("alice")
    assert team.ssh("alice").stdout.startswith("SSH-2.0-")
    # bob revokes alice's certificate from his own machine (his own admin certificate).
    revoked = team.run(
        "bob", "revoke", str(issued["serial"]), "--key", str(team.operators["bob"].key) + ".pub"
    )
    assert revoked.exit_code == 0, revoked.output
    refused = team.ssh("alice")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr
    assert "revoked" in team.probe.gateway.log_text().lower()
    # A fresh certificate (another serial) for the same key still works.
    team.certify("alice")
    assert team.ssh("alice").stdout.startswith("SSH-2.0-")
    # Stored where the next launch reads it back.
    with disable_iam_authentication():
        stored = boto3.client("ssm", region_name="us-east-1").get_parameter(
            Name="/bastion/default/revoked-certificates"
        )
    assert f"serial: {issued['serial']}" in stored["Parameter"]["Value"]


def test_sessions_lists_alice_and_bob_by_their_arns(team: Team) -> None:
    start_gateway(team)
    for who in ("alice", "bob"):
        team.certify(who)
        assert team.ssh(who).stdout.startswith("SSH-2.0-")
    listed = team.run("bob", "sessions", "--json", "--key", str(team.operators["bob"].key) + ".pub")
    assert listed.exit_code == 0, listed.output
    found = json.loads(listed.stdout)
    logins = {(s["operator"], s["user"], s["address"]) for s in found}
    assert (team.operators["alice"].arn, "bastion", "127.0.0.1") in logins
    assert (team.operators["bob"].arn, "bastion", "127.0.0.2") in logins
    assert all(s["ended"] for s in found if s["user"] == "bastion")  # both tunnels closed


def test_revoking_an_operators_arn_or_key_refuses_their_new_certificates(team: Team) -> None:
    start_gateway(team)
    alice_key = str(team.operators["alice"].key) + ".pub"
    bob_key = str(team.operators["bob"].key) + ".pub"
    revoked = team.run("alice", "revoke", team.operators["bob"].arn, "--key", alice_key)
    assert revoked.exit_code == 0, revoked.output
    team.certify("bob")  # KMS still signs (IAM allows it), but the gateway refuses that key id
    assert "Permission denied" in team.ssh("bob").stderr
    by_key = team.run("alice", "revoke", bob_key, "--key", alice_key)
    assert by_key.exit_code == 0, by_key.output
    assert "Permission denied" in team.ssh("bob").stderr
    team.certify("alice")
    assert team.ssh("alice").stdout.startswith("SSH-2.0-")
