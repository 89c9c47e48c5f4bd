"""`bastion rotate` against a real sshd booted from the gateway's user data (moto for EC2).

The safety property under test: at every instant, a key the operator holds opens the gateway.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bastion.adapters.aws.client import make_session
from bastion.adapters.config import load_settings
from bastion.adapters.keys import load_key
from bastion.adapters.probe import OpenSshProbe
from bastion.adapters.ssh import Endpoint, verify_login
from bastion.domain.clock import FakeClock
from bastion.domain.errors import AwsAuthError, SshError
from bastion.domain.model import Action
from bastion.domain.settings import Settings
from bastion.testing.local_gateway import LocalGateway
from bastion.testing.stand_in import running_gateway
from bastion.usecases.rotate import parse_authorized_fingerprints, rotate_login
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.consoles import FakeConsoles
from tests.faults import Fault
from tests.support import free_port


@dataclass
class BootingProbe(OpenSshProbe):
    """The real probe, plus EC2's part: boot a local sshd from the running instance's user data.

    The instance boots when its console is first read (as `up` pins before it connects): the
    sshd makes its own host key, which is what the console shows.
    """

    ec2: Any
    port: int
    booted: dict[str, LocalGateway] = field(default_factory=dict)

    def boot(self, instance_id: str) -> str | None:
        found = running_gateway(self.ec2, "default")
        if not found or found[0] != instance_id:
            return None  # not the running gateway: nothing to boot
        for old in self.booted.values():
            old.stop()
        gateway = LocalGateway(found[1], port=self.port, install_keyctl=True).start()
        self.booted = {instance_id: gateway}
        return gateway.host_public_key

    @property
    def gateway(self) -> LocalGateway:
        return next(iter(self.booted.values()))

    def stop(self) -> None:
        for gateway in self.booted.values():
            gateway.stop()


class Crash(Exception):
    """A simulated kill of the process between two steps."""


@dataclass
class World:
    deps: Deps
    probe: BootingProbe
    settings: Settings
    ec2: Any

    @property
    def folder(self) -> Path:
        return self.settings.gateway_dir("us-east-1")

    def can_log_in_with(self, key: Path) -> bool:
        pinned = (self.folder / "host_ed25519.pub").read_text().strip()
        try:
            verify_login(Endpoint("127.0.0.1", self.probe.port), "bastion", key, pinned)
        except SshError:
            return False
        return True

    def operator_can_log_in(self) -> bool:
        held = [self.folder / "login_ed25519", self.folder / "login_ed25519.next"]
        return any(path.exists() and self.can_log_in_with(path) for path in held)

    def gateway_fingerprints(self) -> list[str]:
        keys_file = self.probe.gateway.authorized_keys_dir / "bastion"
        return parse_authorized_fingerprints(keys_file.read_text())

    def key_pairs(self) -> list[str]:
        return sorted(k["KeyName"] for k in self.ec2.describe_key_pairs()["KeyPairs"])


@pytest.fixture
def world(sshd: str) -> Iterator[World]:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        port = free_port()
        probe = BootingProbe(ec2, port)
        consoles = FakeConsoles(boot=probe.boot)
        deps = Deps(
            session_factory=make_session,
            clock=FakeClock(),
            probe=probe,
            fetch=lambda url, timeout: "203.0.113.7",
            on_ec2=consoles.attach,
        )
        settings = load_settings(
            {"reach": f"127.0.0.1:{port}", "allow": ("203.0.113.7/32",)}, env={}
        )
        try:
            up(settings, deps)
            yield World(deps, probe, settings, ec2)
        finally:
            probe.stop()


def test_rotate_replaces_the_login_key_everywhere(world: World, tmp_path: Path) -> None:
    old_copy = tmp_path / "old_login"
    shutil.copy(world.folder / "login_ed25519", old_copy)
    old_fp = load_key(world.folder / "login_ed25519").fingerprint
    old_pairs = world.key_pairs()

    result = rotate_login(world.settings, world.deps)

    new = load_key(world.folder / "login_ed25519")
    assert new.fingerprint != old_fp
    assert not world.can_log_in_with(old_copy)  # the real sshd refuses the old key
    assert world.can_log_in_with(world.folder / "login_ed25519")
    assert world.gateway_fingerprints() == [new.fingerprint]
    assert world.key_pairs() != old_pairs and len(world.key_pairs()) == 1
    assert not (world.folder / "login_ed25519.next").exists()
    for name in ("login_ed25519", "admin_ed25519"):
        assert stat.S_IMODE((world.folder / name).stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in repr(result)
    tags = {
        t["Key"]: t["Value"]
        for r in world.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        for t in i["Tags"]
    }
    assert tags["bastion:key-fingerprint"] == new.fingerprint


def _rotation_steps(world: World) -> int:
    plan = rotate_login(world.settings, world.deps, dry_run=True).plan
    return len(plan.actions)


def test_dry_run_lists_the_steps_and_changes_nothing(world: World) -> None:
    before = world.gateway_fingerprints()
    plan = rotate_login(world.settings, world.deps, dry_run=True).plan
    assert [a.kind for a in plan.actions] == [
        "make_next_login_key",
        "gateway_add_login",
        "verify_next_login",
        "gateway_remove_login",
        "verify_old_refused",
        "import_next_key_pair",
        "retag_instance",
        "delete_key_pair",
        "promote_local_key",
    ]
    assert world.gateway_fingerprints() == before
    assert not (world.folder / "login_ed25519.next").exists()


@pytest.mark.parametrize("crash_before", range(1, 10))
def test_a_crash_before_any_step_never_locks_out_and_a_rerun_finishes(
    world: World, crash_before: int
) -> None:
    seen: list[Action] = []

    def kill(action: Action) -> None:
        seen.append(action)
        if len(seen) == crash_before:
            raise Crash(action.kind)

    world.deps.before_each = kill
    with pytest.raises(Crash):
        rotate_login(world.settings, world.deps)
    world.deps.before_each = None

    assert world.operator_can_log_in()
    half_done = (world.folder / "login_ed25519.next").exists()
    drift = status(world.settings, world.deps)["drift"]
    assert half_done == any("rotation is half done" in d for d in drift)

    rotate_login(world.settings, world.deps)

    final = load_key(world.folder / "login_ed25519").fingerprint
    assert world.gateway_fingerprints() == [final]
    assert len(world.key_pairs()) == 1
    assert not (world.folder / "login_ed25519.next").exists()
    assert world.can_log_in_with(world.folder / "login_ed25519")


def test_a_connection_dropped_before_the_proof_leaves_the_old_key_working(world: World) -> None:
    old_fp = load_key(world.folder / "login_ed25519").fingerprint

    def drop(action: Action) -> None:
        if action.kind == "verify_next_login":
            raise SshError("connection to the gateway reset by peer")

    world.deps.before_each = drop
    with pytest.raises(SshError, match="reset by peer"):
        rotate_login(world.settings, world.deps)
    world.deps.before_each = None

    new_fp = load_key(world.folder / "login_ed25519.next").fingerprint
    assert sorted(world.gateway_fingerprints()) == sorted([old_fp, new_fp])
    assert world.can_log_in_with(world.folder / "login_ed25519")  # the old key, meanwhile

    rotate_login(world.settings, world.deps)

    assert load_key(world.folder / "login_ed25519").fingerprint == new_fp
    assert world.gateway_fingerprints() == [new_fp]
    assert not (world.folder / "login_ed25519.next").exists()


def test_a_new_key_the_server_refuses_is_rolled_back(world: World) -> None:
    old_fp = load_key(world.folder / "login_ed25519").fingerprint
    pairs = world.key_pairs()

    def sabotage(action: Action) -> None:
        # Swap the new private key for another one just before the proof: the server refuses it.
        if action.kind == "verify_next_login":
            from bastion.adapters.keys import generate_key, save_key

            save_key(world.folder / "login_ed25519.next", generate_key("impostor"))

    world.deps.before_each = sabotage
    with pytest.raises(SshError, match="rolled back"):
        rotate_login(world.settings, world.deps)

    assert world.gateway_fingerprints() == [old_fp]
    assert world.can_log_in_with(world.folder / "login_ed25519")
    assert not (world.folder / "login_ed25519.next").exists()
    assert world.key_pairs() == pairs


@pytest.mark.parametrize("operation", ["ImportKeyPair", "CreateTags", "DeleteKeyPair"])
def test_an_aws_failure_after_the_gateway_switched_keeps_things_consistent(
    world: World, operation: str
) -> None:
    """Each of rotate's mutating EC2 calls fails in turn: no lockout, and a rerun finishes."""
    fault = Fault(operation, "UnauthorizedOperation", 403)
    consoles = world.deps.on_ec2

    def attach(ec2: Any) -> None:
        if consoles:
            consoles(ec2)
        fault.attach(ec2)

    world.deps.on_ec2 = attach
    with pytest.raises(AwsAuthError):
        rotate_login(world.settings, world.deps)
    world.deps.on_ec2 = consoles

    new_fp = load_key(world.folder / "login_ed25519.next").fingerprint
    assert world.gateway_fingerprints() == [new_fp]  # the gateway already moved on
    assert world.can_log_in_with(world.folder / "login_ed25519.next")
    assert world.operator_can_log_in()

    rotate_login(world.settings, world.deps)

    assert load_key(world.folder / "login_ed25519").fingerprint == new_fp
    assert len(world.key_pairs()) == 1


def test_rotation_is_skipped_while_the_key_is_young(world: World) -> None:
    from datetime import timedelta

    result = rotate_login(world.settings, world.deps, if_older_than=timedelta(days=30))
    assert result.skipped_reason and result.applied == []
