"""What the daily login key can reach through a real Debian 13 boot of the gateway (issue 13).

The gateway is wired into a VPC stand-in (a network namespace with app-1's sshd on port 22 of
its private IP) that also carries stand-ins for the metadata service on 169.254.169.254 and
fd00:ec2::254, ports 80 and 22, routed through the gateway's `ens5` as on EC2; a listener on
the guest's own loopback port 22 stands in for a local service. Nothing here ever addresses the
real metadata service or another host: every address lives in a namespace the test made.

Port 22 targets pass `PermitOpen *:22`, so a refusal there is the owner rule's doing; the
rule's counters, and a control run with it unhooked, show that sshd's forwarding connect()
runs as the login user's uid on OpenSSH 10.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bastion.adapters.egress import CHAIN, LOGIN_UID
from bastion.testing.app_network import METADATA_V4, METADATA_V6
from bastion.testing.boot import BootedGateway
from tests.boot.conftest import APP_USER, BootWorld, boot_world

pytestmark = [pytest.mark.boot, pytest.mark.xdist_group("boot")]

METADATA_SSH = (f"{METADATA_V4}:22", f"[{METADATA_V6}]:22")
METADATA_HTTP = (f"{METADATA_V4}:80", f"[{METADATA_V6}]:80")
LOOPBACK_SSH = ("127.0.0.1:22", "[::1]:22")
PROHIBITED = "administratively prohibited"
CONNECT_FAILED = "connect failed"


@dataclass
class Stage:
    """The booted gateway, its world, and where the stand-in listeners log connections."""

    world: BootWorld
    gateway: BootedGateway
    metadata_log: Path
    loopback_log: Path
    app_other_log: Path


@pytest.fixture(scope="module")
def stage(boot_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    with boot_world(tmp_path_factory, "empty") as world:
        up = world.bastion("up", "--app-sg", "app")
        assert up.returncode == 0, up.stderr
        gateway = world.ready()
        assert gateway.wait_for_cloud_init()["errors"] == []
        network = world.app_network
        assert network is not None
        logs = [world.tmp / f"{name}.log" for name in ("metadata", "loopback", "app-other")]
        for log in logs:
            log.write_text("")
        network.listen([*METADATA_SSH, *METADATA_HTTP], logs[0])
        network.listen(list(LOOPBACK_SSH), logs[1], netns=gateway.netns_path)
        network.listen([f"{world.app_ip}:8080"], logs[2])
        yield Stage(world, gateway, *logs)


def forward(stage: Stage, target: str) -> str:
    """Return what `ssh -W target` through the gateway with the login key shows."""
    return stage.world.forward_banner(target=target)


def connect_in_guest(stage: Stage, target: str, uid: int | None = None) -> str:
    """Connect from inside the guest as root (or `uid`); return the first line or the error."""
    host, _, port = target.rpartition(":")
    script = (
        "import socket,sys\n"
        "try:\n"
        f"    s = socket.create_connection(({host.strip('[]')!r}, {port}), 5)\n"
        "    print(s.recv(200).decode().strip())\n"
        "except OSError as e:\n"
        "    print('error', e)\n"
    )
    as_user = ["setpriv", f"--reuid={uid}", "--regid=65534", "--clear-groups"] if uid else []
    return stage.gateway.run([*as_user, "python3", "-c", script], check=True).stdout.strip()


def rejected(stage: Stage) -> int:
    """Return how many packets the login user's chain has rejected (both families)."""
    total = 0
    for tool in ("iptables", "ip6tables"):
        listing = stage.gateway.run([tool, "-w", "-L", CHAIN, "-n", "-v", "-x"], check=True)
        for line in listing.stdout.splitlines():
            words = line.split()
            if len(words) > 2 and words[2] == "REJECT":
                total += int(words[0])
    return total


def test_the_owner_rule_is_in_place_for_the_login_users_uid_only(stage: Stage) -> None:
    uid = stage.gateway.run(["id", "-u", "bastion"], check=True).stdout.strip()
    for tool in ("iptables", "ip6tables"):
        output = stage.gateway.run([tool, "-w", "-S", "OUTPUT"], check=True).stdout

        jumps = [line for line in output.splitlines() if f"-j {CHAIN}" in line]

        assert uid == str(LOGIN_UID)
        assert jumps == [f"-A OUTPUT -m owner --uid-owner {LOGIN_UID} -j {CHAIN}"], output


def test_the_stand_ins_answer_root_on_the_gateway(stage: Stage) -> None:
    # The control: the listeners are there and root's egress is untouched, so a refusal for
    # the login user below is the owner rule's doing.
    for target in (*METADATA_SSH, *METADATA_HTTP, *LOOPBACK_SSH, f"{stage.world.app_ip}:22"):
        answer = connect_in_guest(stage, target)

        assert answer.startswith(("stand-in", "SSH-2.0-")), f"{target}: {answer}"


def test_the_login_users_own_sockets_reach_only_ssh_in_the_vpc(stage: Stage) -> None:
    app = connect_in_guest(stage, f"{stage.world.app_ip}:22", uid=LOGIN_UID)
    assert app.startswith("SSH-2.0-"), app
    for target in (*METADATA_SSH, *METADATA_HTTP, *LOOPBACK_SSH, f"{stage.world.app_ip}:8080"):
        answer = connect_in_guest(stage, target, uid=LOGIN_UID)

        assert answer.startswith("error"), f"{target}: {answer}"


@pytest.mark.parametrize("target", [*METADATA_SSH, *LOOPBACK_SSH])
def test_ssh_targets_that_permit_open_allows_are_refused_by_the_owner_rule(
    stage: Stage, target: str
) -> None:
    logs = (stage.metadata_log, stage.loopback_log)
    before_logs = [log.read_text() for log in logs]
    before = rejected(stage)

    shown = forward(stage, target)

    assert not shown.startswith(("SSH-2.0-", "stand-in")), shown
    assert CONNECT_FAILED in shown and PROHIBITED not in shown, shown
    assert rejected(stage) > before, "the login user's chain rejected nothing"
    assert [log.read_text() for log in logs] == before_logs, "a stand-in saw a connection"


@pytest.mark.parametrize(
    "target", [*METADATA_HTTP, "own sshd on loopback", "own sshd on its address", "app:8080"]
)
def test_other_ports_are_refused_by_permit_open(stage: Stage, target: str) -> None:
    port = stage.gateway.guest_port
    target = {
        "own sshd on loopback": f"127.0.0.1:{port}",
        "own sshd on its address": f"{stage.gateway.private_ip}:{port}",
        "app:8080": f"{stage.world.app_ip}:8080",
    }.get(target, target)
    logs = (stage.metadata_log, stage.app_other_log)
    before = [log.read_text() for log in logs]

    shown = forward(stage, target)

    assert PROHIBITED in shown, shown
    assert [log.read_text() for log in logs] == before, "a stand-in saw a connection"


def test_the_gateways_own_address_on_port_22_is_refused(stage: Stage) -> None:
    # Inside the VPC CIDR, yet local: it routes through the loopback, which the rule refuses.
    shown = forward(stage, f"{stage.gateway.private_ip}:22")

    assert CONNECT_FAILED in shown, shown


def test_a_real_proxyjump_still_runs_a_command_on_the_app_host(stage: Stage) -> None:
    world = stage.world
    config = world.tmp / "forwarding_jump_config"
    config.write_text(
        f"Host gateway\n    HostName 127.0.0.1\n    Port {world.sshd_port}\n    User bastion\n"
        f"    IdentityFile {world.folder / 'login_ed25519'}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {world.folder / 'known_hosts'}\n"
        "    HostKeyAlias bastion-default\n    StrictHostKeyChecking yes\n    BatchMode yes\n"
    )

    jumped = subprocess.run(
        ["ssh", "-F", str(config), "-J", "gateway", "-i", str(world.app_key),
         "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={world.app_known_hosts}",
         "-o", "StrictHostKeyChecking=yes", f"{APP_USER}@{world.app_ip}", "echo $(id -un) via -J"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert jumped.stdout.strip() == f"{APP_USER} via -J", jumped.stderr


def test_the_forward_is_refused_because_of_the_owner_rule_and_passes_without_it(
    stage: Stage,
) -> None:
    # The control that proves the uid: unhook the chain, and the same forward reaches the
    # metadata stand-in on port 22; hook it again, and it is refused.
    jump = ["OUTPUT", "-m", "owner", "--uid-owner", str(LOGIN_UID), "-j", CHAIN]
    stage.gateway.run(["iptables", "-w", "-D", *jump], check=True)
    try:
        unhooked = forward(stage, METADATA_SSH[0])
    finally:
        stage.gateway.run(["iptables", "-w", "-I", jump[0], "1", *jump[1:]], check=True)

    assert unhooked.startswith("stand-in"), unhooked
    assert CONNECT_FAILED in forward(stage, METADATA_SSH[0])


def test_rerunning_the_boot_commands_changes_no_rule(stage: Stage) -> None:
    bootcmd = yaml.safe_load(stage.world.user_data())["bootcmd"]
    rules = [c for c in bootcmd if "tables" in c]
    listing = ["sh", "-c", "iptables -w -S; ip6tables -w -S"]
    before = stage.gateway.run(listing, check=True).stdout

    for command in rules:
        stage.gateway.run(["sh", "-c", command], check=True)

    assert stage.gateway.run(listing, check=True).stdout == before
