"""A blue/green `rotate --relaunch` through the stand-in: both generations served while both run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_lifecycle import BIN, World, _seed_app_group
from tests.support import require

pytestmark = pytest.mark.e2e


@pytest.fixture
def stand_in_world(tmp_path: Path) -> Iterator[World]:
    """The lifecycle tests' world: moto_server, the stand-in gateway, an app host."""
    require(shutil.which("ssh") is not None, "the OpenSSH client is missing")
    require(Path("/usr/sbin/sshd").exists(), "/usr/sbin/sshd is missing; install openssh-server")
    require(os.geteuid() == 0, "the sshd stand-in needs root (it switches to the gateway users)")
    require((BIN / "moto_server").exists(), "moto_server is missing; pip install 'moto[server]'")
    world = World(tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def _forward(world: World, key: Path, known_hosts: Path) -> subprocess.Popen[bytes]:
    """Open `ssh -W` through the gateway to the app host and keep it open."""
    return subprocess.Popen(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "HostKeyAlias=bastion-default",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(world.sshd_port),
            "-W",
            world.behind,
            "bastion@127.0.0.1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_rotate_relaunch_runs_blue_green_through_the_stand_in(stand_in_world: World) -> None:
    world = stand_in_world
    _seed_app_group(world.ec2())
    first = world.bastion("up", "--app-sg", "app", "--json")
    assert first.returncode == 0, first.stderr
    old_id = json.loads(first.stdout)["status"]["instance"]["id"]
    folder = world.home / "us-east-1" / "default"
    old_key, old_known = world.tmp / "old_login", world.tmp / "old_known_hosts"
    shutil.copy(folder / "login_ed25519", old_key)
    shutil.copy(folder / "known_hosts", old_known)
    # A session through the old generation, open while the new one launches beside it.
    session = _forward(world, old_key, old_known)
    assert session.stdout is not None
    assert session.stdout.read(8) == b"SSH-2.0-", session.stderr

    relaunched = world.bastion("rotate", "--relaunch", "--app-sg", "app")

    assert relaunched.returncode == 0, relaunched.stderr + (world.tmp / "stand-in.log").read_text()
    status = json.loads(world.bastion("status", "--app-sg", "app", "--json").stdout)
    assert status["instance"]["id"] != old_id and status["instance"]["generation"] == 2
    assert status["drift"] == []
    log = (world.tmp / "stand-in.log").read_text()
    new_id = status["instance"]["id"]
    # Both generations served at once: the new one booted while the old one still ran, and the
    # old one's sshd (and the session through it) lasted until it was terminated.
    assert log.index(f"{new_id} boots as sshd") < log.index(f"{old_id} is no longer running"), log
    deadline = time.monotonic() + 30
    while True:
        fresh = world.ssh("-W", world.behind, "bastion@127.0.0.1")
        if fresh.stdout.startswith(b"SSH-2.0-") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert fresh.stdout.startswith(b"SSH-2.0-"), fresh.stderr
    stale = world.ssh("-W", world.behind, "bastion@127.0.0.1", key=old_key)
    assert not stale.stdout.startswith(b"SSH-2.0-")  # the old login key went with the old one
    session.kill()
    session.wait(timeout=10)
