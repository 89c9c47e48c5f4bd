"""bob changes a gateway alice made, from his own machine, with no file copied between them."""

from __future__ import annotations

import subprocess

from moto.core.authorization import disable_iam_authentication

from bastion.testing.boot import running_gateway_id
from tests.aws.test_identity import disguise
from tests.teams.conftest import Team
from tests.teams.test_certificates import start_gateway


def through_written_config(team: Team, who: str) -> subprocess.CompletedProcess[str]:
    """Forward to the app host with the real `ssh` and the config bastion wrote for `who`."""
    operator = team.operators[who]
    config = operator.home / ".ssh" / "config.d" / "bastion-default"
    return subprocess.run(
        [
            "ssh",
            "-F",
            str(config),
            "-o",
            "BatchMode=yes",
            "-b",
            operator.address,
            "-W",
            f"{team.app.host}:22",
            "bastion-default",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_bob_burns_alices_gateway_and_alices_next_ssh_works(team: Team) -> None:
    start_gateway(team)
    team.certify("alice")
    written = team.run("alice", "ssh-config", "--write")
    assert written.exit_code == 0, written.output
    assert through_written_config(team, "alice").stdout.startswith("SSH-2.0-")
    old_host_key = team.probe.gateway.host_public_key

    team.certify("bob")
    burnt = team.run("bob", "burn", "--reason", "bob saw odd logins", "--allow", "127.0.0.0/31")
    assert burnt.exit_code == 0, burnt.output
    assert team.probe.gateway.host_public_key != old_host_key  # a new instance, a new host key

    # The relaunch admits only the burner's --allow: alice asks for her own rule again, and
    # her next `bastion ssh-config` pins the new host key from the console, on her machine.
    rule = team.run("alice", "allow", "127.0.0.1/32", "--label", "alice", "--for", "8h")
    assert rule.exit_code == 0, rule.output
    again = team.run("alice", "ssh-config", "--write")
    assert again.exit_code == 0, again.output
    assert through_written_config(team, "alice").stdout.startswith("SSH-2.0-")


def test_bob_rotates_alices_gateway_from_his_own_machine(team: Team) -> None:
    start_gateway(team)
    team.certify("alice")
    assert team.run("alice", "ssh-config", "--write").exit_code == 0
    team.certify("bob")
    # No shared login key to rotate on bob's machine: the logins are the operators' own keys.
    plain = team.run("bob", "rotate")
    assert plain.exit_code == 8 and "--host-key" in plain.output, plain.output
    for how in (["--host-key"], ["--relaunch"]):
        rotated = team.run("bob", "rotate", *how, env={"BASTION_ALLOW": "127.0.0.0/31"})
        assert rotated.exit_code == 0, (how, rotated.output)
    # The relaunched generation admits only bob's rules: alice adds hers again.
    rule = team.run("alice", "allow", "127.0.0.1/32", "--label", "alice", "--for", "8h")
    assert rule.exit_code == 0, rule.output
    again = team.run("alice", "ssh-config", "--write")
    assert again.exit_code == 0, again.output
    assert through_written_config(team, "alice").stdout.startswith("SSH-2.0-")


def test_ssh_config_signs_a_certificate_on_demand_for_the_operators_own_key(team: Team) -> None:
    start_gateway(team)
    # bob never ran `bastion cert`: his ~/.ssh/id_ed25519 is certified when the config is made.
    written = team.run("bob", "ssh-config", "--write")
    assert written.exit_code == 0, written.output
    config = (team.operators["bob"].home / ".ssh" / "config.d" / "bastion-default").read_text()
    assert "login_identity" in config
    assert through_written_config(team, "bob").stdout.startswith("SSH-2.0-")


def test_a_key_mode_gateway_moves_to_certificates_blue_green_without_a_lockout(team: Team) -> None:
    made = team.run("alice", "up", "--allow", "127.0.0.1/32")
    assert made.exit_code == 0, made.output
    assert "TrustedUserCAKeys" not in team.probe.gateway.sshd_config_path.read_text()
    moved = team.run("alice", "up", "--certificates", "--allow", "127.0.0.1/32")
    assert moved.exit_code == 0, moved.output
    assert "rotate --relaunch" in moved.output  # the running gateway does not trust the CA yet
    relaunched = team.run("alice", "rotate", "--relaunch")
    assert relaunched.exit_code == 0, relaunched.output
    assert "TrustedUserCAKeys" in team.probe.gateway.sshd_config_path.read_text()
    team.certify("alice")
    assert team.ssh("alice").stdout.startswith("SSH-2.0-")


def _running(team: Team, instance_id: str) -> str:
    with disable_iam_authentication():  # EC2's own view, not an operator's
        found = team.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return str(found["Instances"][0]["State"]["Name"])


def test_a_decoy_tagged_as_a_certificate_gateway_is_not_burnt_by_another_operator(
    team: Team,
) -> None:
    # bob holds no folder of alice's: what ties the gateway for him is that it takes his admin
    # certificate from the gateway's CA. A production host tagged as the gateway does not.
    start_gateway(team)
    team.certify("bob")
    with disable_iam_authentication():  # the attacker's CreateTags, in EC2's own view
        gateway = running_gateway_id(team.ec2, "default")
        assert gateway is not None
        production = team.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
        decoy = production["Instances"][0]["InstanceId"]
        disguise(team.ec2, decoy, like=gateway, **{"bastion:certificates": "true"})

    burnt = team.run("bob", "burn", "--reason", "odd logins", "--allow", "127.0.0.0/31")

    assert burnt.exit_code == 8, burnt.output
    assert decoy in burnt.output and gateway in burnt.output
    assert _running(team, decoy) == "running" and _running(team, gateway) == "running"
