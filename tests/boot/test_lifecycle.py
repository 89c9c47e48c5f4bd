"""The installed bastion runs the whole lifecycle on a real Debian 13 boot of its user data.

One world per machine-id variant (empty, as the official EC2 image ships; uninitialized, a first
boot): moto_server for EC2, a watcher that boots each running gateway from its own user data,
the real OpenSSH client. The tests run in order and share the booted systems; the last one
burns the gateway and reaches the relaunched system.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bastion.testing.boot import MACHINE_IDS
from tests.boot.conftest import APP_USER, BootWorld, boot_world

pytestmark = [pytest.mark.boot, pytest.mark.xdist_group("boot")]


@pytest.fixture(scope="module", params=MACHINE_IDS)
def world(
    request: pytest.FixtureRequest, boot_image: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BootWorld]:
    with boot_world(tmp_path_factory, request.param) as started:
        started.up = started.bastion("up", "--app-sg", "app", "--json")
        yield started


def _console_tail(world: BootWorld) -> str:
    current = world.watcher.current if world.watcher else None
    return "\n".join(current.console_text().splitlines()[-40:]) if current else "(no boot)"


def test_up_verifies_the_booted_gateway_with_its_pinned_host_key(world: BootWorld) -> None:
    up = world.up
    assert up is not None
    assert up.returncode == 0, f"{up.stderr}\n--- console:\n{_console_tail(world)}"
    result = json.loads(up.stdout)
    assert any(a["kind"] == "verify" for a in result["plan"]["actions"])
    assert result["status"]["drift"] == []
    gateway = world.gateway()
    # The guest booted exactly the user data bastion launched, from the NoCloud seed.
    seeded = gateway.run(["cat", "/var/lib/cloud/seed/nocloud/user-data"], check=True).stdout
    assert seeded == world.user_data()
    served = gateway.run(["ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True)
    assert served.stdout.split()[1] == result["status"]["host_key_fingerprint"]


def test_up_refuses_the_booted_gateway_once_the_pin_is_another_key(world: BootWorld) -> None:
    from bastion.adapters.keys import generate_key

    pinned = world.folder / "host_ed25519.pub"
    saved = pinned.read_text()
    pinned.write_text(generate_key("impostor").public_line + "\n")
    try:
        result = world.bastion("up", "--app-sg", "app")
    finally:
        pinned.write_text(saved)
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    assert world.bastion("up", "--app-sg", "app").returncode == 0


def test_cloud_init_is_done_with_no_error_and_no_recoverable_error(world: BootWorld) -> None:
    status = world.gateway().wait_for_cloud_init()
    assert status["status"] == "done", status
    assert status["errors"] == [], status["errors"]
    assert status["recoverable_errors"] == {}, status["recoverable_errors"]
    assert status["datasource"] == "nocloud"


def test_the_pinned_key_is_the_key_on_the_real_console_and_the_key_sshd_serves(
    world: BootWorld,
) -> None:
    from bastion.domain.console import host_keys_from_console

    gateway = world.gateway()
    gateway.wait_for_cloud_init()
    console = gateway.console_text()
    begin, end = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
    assert begin in console and end in console, console[-2000:]
    # The parser, on what the real cloud-init 25.1 printed: one Ed25519 key and nothing else.
    printed = host_keys_from_console(console)
    assert printed.blocks == 1 and set(printed.keys) == {"ssh-ed25519"}, printed
    on_console = printed.key_of_type("ssh-ed25519")
    pinned = " ".join((world.folder / "host_ed25519.pub").read_text().split()[:2])
    served = gateway.run(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True).stdout
    scanned = gateway.run(
        ["ssh-keyscan", "-t", "ed25519", "-p", str(gateway.guest_port), "127.0.0.1"]
    ).stdout
    assert pinned == on_console == " ".join(served.split()[:2])
    assert on_console is not None and on_console in scanned, scanned
    # No key sshd does not serve is left on the system (a first boot's ssh-keygen -A made some).
    keys = gateway.run(["ls", "/etc/ssh"], check=True).stdout.split()
    assert sorted(k for k in keys if k.startswith("ssh_host_")) == [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]
    # and the user data it booted holds no private key
    seeded = gateway.run(["cat", "/var/lib/cloud/seed/nocloud/user-data"], check=True).stdout
    assert "PRIVATE KEY" not in seeded


def test_the_login_user_forwards_through_a_real_proxyjump_and_gets_no_shell(
    world: BootWorld,
) -> None:
    world.ready()
    assert world.forward_banner().startswith("SSH-2.0-OpenSSH_")
    config = world.tmp / "jump_config"
    config.write_text(
        "\n".join(
            [
                "Host gateway",
                "    HostName 127.0.0.1",
                f"    Port {world.sshd_port}",
                "    User bastion",
                f"    IdentityFile {world.folder / 'login_ed25519'}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {world.folder / 'known_hosts'}",
                "    HostKeyAlias bastion-default",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "",
            ]
        )
    )
    # The final hop is app-1's sshd on port 22 of its private IP, in the VPC stand-in.
    jumped = subprocess.run(
        [
            "ssh",
            "-F",
            str(config),
            "-J",
            "gateway",
            "-i",
            str(world.app_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={world.app_known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{APP_USER}@{world.app_ip}",
            "echo reached through the booted gateway",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert jumped.stdout.strip() == "reached through the booted gateway", jumped.stderr
    shell = world.ssh(command="id")
    assert shell.returncode != 0 and "uid=" not in shell.stdout
    interactive = world.ssh("-tt")
    assert interactive.returncode != 0 and "$" not in interactive.stdout


def test_the_admin_channel_manages_keys_and_refuses_anything_else(world: BootWorld) -> None:
    world.ready()
    admin = world.folder / "admin_ed25519"
    listed = world.ssh(command="list", key=admin, user="bastion-admin")
    assert listed.returncode == 0, listed.stderr
    login_blob = (world.folder / "login_ed25519.pub").read_text().split()[1]
    assert login_blob in listed.stdout
    refused = world.ssh(command="cat /etc/shadow", key=admin, user="bastion-admin")
    assert refused.returncode == 2 and "unknown request" in refused.stderr, refused.stderr
    assert "root:" not in refused.stdout
    forward = world.forward_banner(key=admin)
    assert not forward.startswith("SSH-2.0-")  # the admin key opens no forward


def test_status_shows_no_drift(world: BootWorld) -> None:
    status = world.status()
    assert status["drift"] == []
    assert status["caller_allowed"] is True


@contextmanager
def open_forward(world: BootWorld, key: Path) -> Iterator[subprocess.Popen[str]]:
    """Hold a `-W` forward (what ProxyJump opens) through the gateway open with `key`."""
    world.ready()
    process = subprocess.Popen(
        # To app-1's sshd: the login key may forward to tcp/22 inside the VPC and nowhere else.
        [*world.ssh_base(key=key), "-W", f"{world.app_ip}:22", "bastion@127.0.0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready and process.stdout.readline().startswith("SSH-2.0-"), "no forward opened"
        yield process
    finally:
        process.kill()
        process.wait()


def closed_within(process: subprocess.Popen[str], seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_thiefs_login_key_is_flagged_then_removed_by_rotate_and_its_open_forward_cut(
    world: BootWorld,
) -> None:
    from bastion.adapters.keys import generate_key, save_key

    world.ready()
    thief = generate_key("thief")
    thief_path = world.tmp / "thief_ed25519"
    save_key(thief_path, thief)
    admin = world.folder / "admin_ed25519"
    body = " ".join(thief.public_line.split()[:2])
    added = world.ssh(command=f"add-login {body} thief", key=admin, user="bastion-admin")
    assert added.returncode == 0, added.stderr
    keys = world.status()["login_keys"]
    assert keys["checked"] is True and keys["unknown"] == [thief.fingerprint], keys
    audited = world.bastion("audit", "--json")
    assert audited.returncode == 9, audited.stderr
    assert "login-key-unknown" in {f["id"] for f in json.loads(audited.stdout)["findings"]}

    with open_forward(world, thief_path) as thiefs:
        # On Debian 13 the journal holds the accepted key, logged by the per-connection
        # sshd-session (OpenSSH 10): what keyctl reads to find the connection.
        journal = world.gateway().run(
            "journalctl -q -o cat _COMM=sshd-session | grep 'Accepted publickey for bastion '"
        )
        assert thief.fingerprint in journal.stdout, journal.stdout[-2000:]
        rotated = world.bastion("rotate", "--json")
        assert rotated.returncode == 0, rotated.stderr
        result = json.loads(rotated.stdout)
        assert result["removed_unknown_login_keys"] == [thief.fingerprint]
        assert result["ended_sessions"][thief.fingerprint] == 1
        assert closed_within(thiefs, 10), "the thief's open forward survived the rotation"
    stale = world.forward_banner(key=thief_path)
    assert "Permission denied" in stale, stale
    assert world.forward_banner().startswith("SSH-2.0-")  # the operator's new key works
    after = world.status()
    assert after["login_keys"]["unknown"] == [] and after["drift"] == []


def test_rotate_replaces_the_login_key_and_the_booted_sshd_refuses_the_old_one(
    world: BootWorld,
) -> None:
    old = world.tmp / "old_login_ed25519"
    shutil.copy(world.folder / "login_ed25519", old)

    rotated = world.bastion("rotate")

    assert rotated.returncode == 0, rotated.stderr
    assert world.forward_banner().startswith("SSH-2.0-")
    stale = world.forward_banner(key=old)
    assert not stale.startswith("SSH-2.0-") and "Permission denied" in stale, stale
    assert world.status()["drift"] == []


def test_rotate_host_key_serves_the_new_key_and_the_old_pin_is_refused(world: BootWorld) -> None:
    old_known_hosts = world.tmp / "old_known_hosts"
    shutil.copy(world.folder / "known_hosts", old_known_hosts)
    gateway = world.gateway()

    rotated = world.bastion("rotate", "--host-key")

    assert rotated.returncode == 0, rotated.stderr
    assert world.forward_banner().startswith("SSH-2.0-")
    stale = world.forward_banner(known_hosts=old_known_hosts)
    assert "Host key verification failed" in stale, stale
    served = gateway.run(["ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub"], check=True)
    assert served.stdout.split()[1] == world.status()["host_key_fingerprint"]
    assert world.bastion("up", "--app-sg", "app").returncode == 0  # verifies the new pin


def test_burn_relaunches_onto_a_second_boot_that_the_rewritten_config_reaches(
    world: BootWorld,
) -> None:
    written = world.bastion(
        "ssh-config",
        "--app-sg",
        "app",
        "--write",
        "--app-user",
        APP_USER,
        "--app-identity",
        str(world.app_key),
    )
    assert written.returncode == 0, written.stderr
    first = world.gateway()

    burnt = world.bastion("burn", "--app-sg", "app", "--reason", "boot tier", "--json")

    assert burnt.returncode == 0, burnt.stderr
    second = world.ready(other_than=first.instance_id)
    assert second.instance_id != first.instance_id and not first.running
    assert second.wait_for_cloud_init()["errors"] == []
    reached = subprocess.run(
        [
            "ssh",
            "-F",
            str(world.user_home / ".ssh" / "config"),
            "-o",
            "BatchMode=yes",
            # app-1's address and port are the written config's own (its private IP, port 22),
            # and no known_hosts of the test's: app-1's key was pinned from its console, and
            # burn kept that pin. The alias is app-1 in gateway default's namespace.
            "app-1.default.bastion",
            'echo "$(id -un) on app-1"',
        ],
        stdin=subprocess.DEVNULL,
        env={**world.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert reached.stdout.strip() == f"{APP_USER} on app-1", reached.stderr
    assert world.status()["drift"] == []
