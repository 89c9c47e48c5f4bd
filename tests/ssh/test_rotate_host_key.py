"""`bastion rotate --host-key` against a real sshd booted from the gateway's user data.

The safety property under test: at every instant, the operator's known_hosts trusts the host key
that sshd presents, so a login (with StrictHostKeyChecking yes) works after any crash.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import test_rotate
from test_rotate import Crash, World

from bastion.adapters.keys import (
    fingerprint,
    generate_key,
    load_key,
    public_key_body,
    write_public_text,
)
from bastion.adapters.ssh import Endpoint, verify_login
from bastion.domain.errors import HostKeyMismatchError, SshError
from bastion.domain.model import Action
from bastion.testing.app_host import LocalAppHost
from bastion.usecases.rotate import rotate_host_key
from bastion.usecases.status import status

world = test_rotate.world  # the moto + real-sshd world of the login-key tests

STEPS = [
    "make_next_host_key",
    "trust_both_host_keys",
    "gateway_add_host_key",
    "gateway_activate_host_key",
    "verify_next_host_key",
    "pin_next_host_key",
    "gateway_remove_host_key",
    "verify_old_host_key_gone",
    "trust_only_next_host_key",
    "retag_host_key",
    "finish_host_key_rotation",
]


def trusted(world: World) -> list[str]:
    """Return the host keys the gateway's known_hosts trusts (type base64)."""
    text = (world.folder / "known_hosts").read_text()
    return [" ".join(line.split()[1:3]) for line in text.splitlines() if line.strip()]


def pinned(world: World) -> str:
    return public_key_body((world.folder / "host_ed25519.pub").read_text())


def server_host_keys(world: World) -> list[str]:
    """Return the host keys sshd holds, first the one it presents (read from its key files)."""
    active = world.probe.gateway.host_key_path
    staged = active.with_name(active.name + ".next")
    return [public_key_body(load_key(p).public_line) for p in (active, staged) if p.exists()]


def login_trusting(world: World, host_key: str) -> bool:
    try:
        verify_login(
            Endpoint("127.0.0.1", world.probe.port),
            "bastion",
            world.folder / "login_ed25519",
            host_key,
        )
    except SshError:
        return False
    return True


def operator_can_log_in(world: World) -> bool:
    """Log in as OpenSSH would with the generated known_hosts: any key it trusts will do."""
    return any(login_trusting(world, key) for key in trusted(world))


def real_ssh(
    world: World, ssh_client: str, known_hosts: Path, target: str
) -> subprocess.CompletedProcess[bytes]:
    """Run the real OpenSSH client through the gateway (ProxyJump's -W) with strict checking."""
    port = str(world.probe.port)
    return subprocess.run(
        [
            ssh_client,
            "-F",
            "/dev/null",
            "-i",
            str(world.folder / "login_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "HostKeyAlias=bastion-default",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            port,
            "-W",
            target,
            "bastion@127.0.0.1",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )


def instance_tags(world: World) -> dict[str, str]:
    return {
        t["Key"]: t["Value"]
        for r in world.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        for t in i["Tags"]
    }


def test_rotate_host_key_replaces_the_host_key_everywhere(
    world: World, ssh_client: str, tmp_path: Path, behind: LocalAppHost
) -> None:
    target = f"{behind.host}:{behind.port}"
    old = pinned(world)
    old_known_hosts = tmp_path / "old_known_hosts"
    old_known_hosts.write_text((world.folder / "known_hosts").read_text())

    result = rotate_host_key(world.settings, world.deps)

    new = pinned(world)
    assert new != old
    assert server_host_keys(world) == [new]
    assert trusted(world) == [new]
    accepted = real_ssh(world, ssh_client, world.folder / "known_hosts", target)
    assert accepted.stdout.startswith(b"SSH-2.0-"), accepted.stderr
    refused = real_ssh(world, ssh_client, old_known_hosts, target)
    assert refused.returncode == 255 and not refused.stdout
    assert b"Host key verification failed" in refused.stderr
    with pytest.raises(HostKeyMismatchError):
        verify_login(
            Endpoint("127.0.0.1", world.probe.port),
            "bastion",
            world.folder / "login_ed25519",
            old,
        )
    assert instance_tags(world)["bastion:host-key-fingerprint"] == fingerprint(new)
    assert not (world.folder / "host_ed25519.next.pub").exists()
    data = status(world.settings, world.deps)
    assert data["host_key_fingerprint"] == fingerprint(new)
    assert data["host_key_age_days"] == 0.0
    assert not [d for d in data["drift"] if "half done" in d]
    # The new private host key never touched the operator's disk, nor the result.
    assert "PRIVATE KEY" not in repr(result)
    holding = [
        p.name for p in world.folder.rglob("*") if p.is_file() and "PRIVATE" in p.read_text()
    ]
    assert sorted(holding) == ["admin_ed25519", "login_ed25519"]


def test_dry_run_lists_the_host_key_steps_and_changes_nothing(world: World) -> None:
    before = server_host_keys(world)
    plan = rotate_host_key(world.settings, world.deps, dry_run=True).plan
    assert [a.kind for a in plan.actions] == STEPS
    assert server_host_keys(world) == before
    assert not (world.folder / "host_ed25519.next.pub").exists()


@pytest.mark.parametrize("crash_before", range(1, len(STEPS) + 1))
def test_a_crash_before_any_host_key_step_never_locks_out_and_a_rerun_finishes(
    world: World, crash_before: int
) -> None:
    seen: list[Action] = []

    def kill(action: Action) -> None:
        seen.append(action)
        if len(seen) == crash_before:
            raise Crash(action.kind)

    world.deps.before_each = kill
    with pytest.raises(Crash):
        rotate_host_key(world.settings, world.deps)
    world.deps.before_each = None

    assert operator_can_log_in(world)
    assert server_host_keys(world)[0] in trusted(world)  # what sshd presents is trusted
    half_done = (world.folder / "host_ed25519.next.pub").exists()
    drift = status(world.settings, world.deps)["drift"]
    assert half_done == any("host-key rotation is half done" in d for d in drift)

    rotate_host_key(world.settings, world.deps)

    final = pinned(world)
    assert server_host_keys(world) == [final]
    assert trusted(world) == [final]
    assert login_trusting(world, final)
    assert instance_tags(world)["bastion:host-key-fingerprint"] == fingerprint(final)
    assert not (world.folder / "host_ed25519.next.pub").exists()


def test_a_new_host_key_that_fails_verification_is_rolled_back(world: World) -> None:
    old = pinned(world)
    tags = instance_tags(world)

    def sabotage(action: Action) -> None:
        # Make the proof expect a key the server does not present: verification fails.
        if action.kind == "verify_next_host_key":
            write_public_text(
                world.folder / "host_ed25519.next.pub", generate_key("impostor").public_line
            )

    world.deps.before_each = sabotage
    with pytest.raises(SshError, match="rolled back") as caught:
        rotate_host_key(world.settings, world.deps)
    world.deps.before_each = None

    assert caught.value.exit_status == 5
    assert server_host_keys(world) == [old]
    assert pinned(world) == old and trusted(world) == [old]
    assert login_trusting(world, old)
    assert instance_tags(world) == tags
    assert not (world.folder / "host_ed25519.next.pub").exists()


def test_host_key_rotation_is_skipped_while_the_key_is_young(world: World) -> None:
    from datetime import timedelta

    before = server_host_keys(world)
    result = rotate_host_key(world.settings, world.deps, if_older_than=timedelta(days=30))
    assert result.skipped_reason and result.applied == []
    assert server_host_keys(world) == before
