"""What a real Debian 13 boot of the gateway's user data shows, and a stand-in could not (issue 11).

One world per machine-id variant, `bastion up` without its own verification (these tests look
inside the guest instead); the booted system is shared, except where a test needs a fresh one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.testing.boot import MACHINE_IDS, BootedGateway, running_gateway
from tests.boot.conftest import BootWorld, boot_world

pytestmark = [pytest.mark.boot, pytest.mark.xdist_group("boot")]


@pytest.fixture(scope="module", params=MACHINE_IDS)
def world(
    request: pytest.FixtureRequest, boot_image: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BootWorld]:
    with boot_world(tmp_path_factory, request.param, verify=False) as started:
        started.up = started.bastion("up", "--app-sg", "app")
        assert started.up.returncode == 0, started.up.stderr
        started.gateway().wait_for_cloud_init()
        yield started


def test_sshd_listens_on_the_custom_port_and_not_on_22(world: BootWorld) -> None:
    gateway = world.gateway()

    listening = gateway.listening_ports()

    assert gateway.guest_port != 22
    assert gateway.guest_port in listening, listening
    assert 22 not in listening, f"port 22 is open in the guest ({world.machine_id} machine-id)"


def test_sshd_is_started_once_and_never_restarted_after_boot(world: BootWorld) -> None:
    gateway = world.gateway()
    assert gateway.wait_for_cloud_init()["status"] == "done"

    entries = gateway.run(
        ["journalctl", "-b", "--no-pager", "-o", "json", "SYSLOG_IDENTIFIER=sshd"], check=True
    ).stdout.splitlines()

    listeners = {
        json.loads(line).get("_PID")
        for line in entries
        if str(json.loads(line).get("MESSAGE", "")).startswith("Server listening on")
    }
    assert len(listeners) == 1, f"sshd listened from {len(listeners)} processes: restarted"


def test_failed_logins_from_one_address_do_not_lock_out_the_next_good_login(
    world: BootWorld,
) -> None:
    # A fresh boot of the same instance: the penalties must not leak into the other tests.
    found = running_gateway(world.ec2(), "default")
    assert found is not None
    stranger = world.tmp / "stranger_ed25519"
    if not stranger.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True
        )
    with BootedGateway(
        found.user_data,
        instance_id=found.instance_id,
        hostname=found.hostname,
        public_keys=found.public_keys,
        machine_id=world.machine_id,
        app_network=world.app_network,
        private_ip=world.spare_ip(),  # the watcher's system holds the instance's own address
    ) as fresh:
        fresh.wait_for_cloud_init()
        fresh.wait_for_port()
        # A fresh boot makes its own host key: pin that one, read from its console.
        from bastion.domain.console import host_keys_from_console

        fresh_key = host_keys_from_console(fresh.console_text()).key_of_type()
        assert fresh_key is not None, "the fresh boot printed no host key on its console"
        pinned = world.tmp / "fresh_known_hosts"
        pinned.write_text(f"bastion-default {fresh_key}\n")
        # Everyone behind one office NAT address shares these; here all come from 127.0.0.1.
        refused = [
            world.forward_banner(key=stranger, gateway=fresh, known_hosts=pinned) for _ in range(5)
        ]

        banner = world.forward_banner(gateway=fresh, known_hosts=pinned)

        assert banner.startswith("SSH-2.0-"), (
            f"the good login was refused after failed ones: {banner}; the failed ones: {refused}"
        )
        assert "Permission denied" in refused[0]


def test_cloud_init_writes_no_key_for_root_into_the_authorized_keys_dir(world: BootWorld) -> None:
    gateway = world.gateway()
    found = running_gateway(world.ec2(), "default")
    assert found is not None and found.public_keys, "the launch key pair reached no meta-data"

    # sshd reads root's keys from here (AuthorizedKeysFile .../%u); `rotate` never looks here.
    written = gateway.run(["cat", "/etc/ssh/bastion/authorized_keys/root"]).stdout

    keys = [line for line in written.splitlines() if line.strip() and not line.startswith("#")]
    assert keys == [], f"cloud-init wrote a key for root: {keys}"


def test_a_login_starts_no_systemd_user_manager(world: BootWorld) -> None:
    gateway = world.ready()
    assert world.forward_banner().startswith("SSH-2.0-")
    admin = world.ssh(command="list", key=world.folder / "admin_ed25519", user="bastion-admin")
    assert admin.returncode == 0, admin.stderr

    uids = [
        gateway.run(["id", "-u", user], check=True).stdout.strip()
        for user in ("bastion", "bastion-admin")
    ]
    started = gateway.journal("_PID=1")

    for uid in uids:
        assert f"user@{uid}.service" not in started, f"a login started user@{uid}.service"


def test_admin_requests_print_no_chdir_warning_and_sshd_loads_every_host_key_it_names(
    world: BootWorld,
) -> None:
    gateway = world.ready()

    admin = world.ssh(command="list", key=world.folder / "admin_ed25519", user="bastion-admin")

    assert admin.returncode == 0, admin.stderr
    assert "Could not chdir to home directory" not in admin.stderr, admin.stderr
    journal = gateway.journal()
    assert "Unable to load host key" not in journal, [
        line for line in journal.splitlines() if "Unable to load host key" in line
    ]


def test_sshd_offers_ml_kem_key_exchange(world: BootWorld) -> None:
    gateway = world.gateway()

    effective = gateway.run(["/usr/sbin/sshd", "-T"], check=True).stdout

    kex = next(line for line in effective.splitlines() if line.startswith("kexalgorithms "))
    assert "mlkem768x25519-sha256" in kex.split()[1].split(","), kex
