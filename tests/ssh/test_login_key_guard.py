"""The admin channel guards the login keys, against a real sshd booted from the user data.

A thief with the admin key adds a login key of their own and opens a tunnel with it: `status`
and `audit` name the key as not bastion's, `rotate` removes it (keeping the operator's new key)
and the thief's open tunnel is cut; so is an open tunnel made with the old key, while a tunnel
made with the new key survives a later `remove-login`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_rotate
from conftest import make_key_pair
from test_rotate import World

from bastion.adapters.keys import fingerprint, load_key
from bastion.adapters.ssh import Endpoint, run_keyctl
from bastion.domain.audit import AuditOptions
from bastion.usecases.audit import audit
from bastion.usecases.rotate import rotate_login
from bastion.usecases.status import status
from tests.support import free_port

pytestmark = pytest.mark.xdist_group("sshd")
world = test_rotate.world  # the fixture: moto, `bastion up` and a real sshd from its user data


def admin(world: World, request: str) -> str:
    """Send a request over the admin channel with the gateway's admin key (a thief's copy)."""
    folder = world.folder
    pinned = (folder / "host_ed25519.pub").read_text().strip()
    endpoint = Endpoint("127.0.0.1", world.probe.port)
    return run_keyctl(endpoint, "bastion-admin", folder / "admin_ed25519", pinned, request)


@contextmanager
def tunnel(world: World, key: Path, how: str = "-L") -> Iterator[subprocess.Popen[bytes]]:
    """Hold an `ssh -N -L` (or a `-W`) tunnel open through the gateway with `key`."""
    known = key.with_name(key.name + ".known_hosts")
    pinned = (world.folder / "host_ed25519.pub").read_text().strip()
    known.write_text(f"[127.0.0.1]:{world.probe.port} {pinned}\n")
    behind = None
    if how == "-L":
        forward = ["-N", "-L", f"127.0.0.1:{free_port()}:127.0.0.1:22"]
    else:
        # What ProxyJump opens: a forward to an SSH server on port 22 (all PermitOpen allows).
        from bastion.testing.app_host import LocalAppHost

        behind = LocalAppHost(pinned).start()
        forward = ["-W", f"{behind.host}:{behind.port}"]
    process = subprocess.Popen(
        [
            "ssh",
            *forward,
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-i",
            str(key),
            "-p",
            str(world.probe.port),
            "bastion@127.0.0.1",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: session_open(world, key) or process.poll() is not None)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield process
    finally:
        process.kill()
        process.wait()
        if behind is not None:
            behind.stop()


def session_open(world: World, key: Path) -> bool:
    """Tell whether the gateway's sshd logged the accepted login of `key`."""
    wanted = load_key(key).fingerprint
    return any(
        line.startswith("Accepted publickey for bastion ") and wanted in line
        for line in world.probe.gateway.log_text().splitlines()
    )


def wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def cut(process: subprocess.Popen[bytes]) -> bool:
    """Wait (a few seconds at most) for a tunnel to be closed by the gateway."""
    return wait_for(lambda: process.poll() is not None, 5.0)


def test_a_thiefs_login_key_is_reported_removed_by_rotate_and_its_tunnel_cut(
    world: World, tmp_path: Path
) -> None:
    thief = make_key_pair(tmp_path, "thief")
    thief_fp = fingerprint(thief.public)
    old_copy = tmp_path / "old_login"
    old_copy.write_bytes((world.folder / "login_ed25519").read_bytes())
    old_copy.chmod(0o600)
    assert "added" in admin(world, f"add-login {' '.join(thief.public.split()[:2])} thief")

    seen = status(world.settings, world.deps)
    assert seen["login_keys"]["checked"] is True
    assert seen["login_keys"]["unknown"] == [thief_fp]
    assert any(thief_fp in d and "bastion rotate" in d for d in seen["drift"])
    found = audit(world.settings, world.deps, AuditOptions())
    assert [f.check for f in found.failures] == ["login-key-unknown"]
    assert "bastion rotate" in found.failures[0].fix

    with tunnel(world, thief.path) as thiefs, tunnel(world, old_copy, "-W") as operators:
        result = rotate_login(world.settings, world.deps)
        new = load_key(world.folder / "login_ed25519").fingerprint
        assert result.removed_unknown == [thief_fp]
        assert result.ended_sessions[thief_fp] == 1
        assert world.gateway_fingerprints() == [new]  # the operator's new key stays, alone
        assert cut(thiefs), "the thief's open tunnel survived the rotation"
        assert cut(operators), "a tunnel made with the removed old key survived"
    assert not world.can_log_in_with(thief.path)
    assert status(world.settings, world.deps)["login_keys"]["unknown"] == []
    assert audit(world.settings, world.deps, AuditOptions()).failures == []


def test_remove_login_cuts_only_the_tunnels_of_the_removed_key(
    world: World, tmp_path: Path
) -> None:
    rotate_login(world.settings, world.deps)  # the operator now holds a freshly proven key
    thief = make_key_pair(tmp_path, "thief")
    admin(world, f"add-login {' '.join(thief.public.split()[:2])}")
    with (
        tunnel(world, thief.path, "-W") as thiefs,
        tunnel(world, world.folder / "login_ed25519") as operators,
    ):
        answer = admin(world, f"remove-login {fingerprint(thief.public)}")
        assert f"ended 1 session(s) of {fingerprint(thief.public)}" in answer
        assert cut(thiefs)
        time.sleep(1)
        assert operators.poll() is None, "the operator's tunnel with the new key was cut"
        assert "ended 0 session(s)" in admin(world, f"end-sessions {fingerprint(thief.public)}")
        assert operators.poll() is None


def test_rotate_output_names_the_key_it_removed_and_the_sessions_it_ended(
    world: World, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from bastion.cli import app

    thief = make_key_pair(tmp_path, "thief")
    admin(world, f"add-login {' '.join(thief.public.split()[:2])}")
    reach = f"127.0.0.1:{world.probe.port}"
    with tunnel(world, thief.path):
        result = CliRunner().invoke(app, ["rotate", "--reach", reach], obj=world.deps)
    assert result.exit_code == 0, result.output
    thief_fp = fingerprint(thief.public)
    assert f"Removed login key {thief_fp}: bastion did not put it there." in result.stdout
    assert f"Ended 1 open session(s) made with {thief_fp}." in result.stdout
    assert f"remove login key {thief_fp}, which bastion did not put there" in result.stdout


def test_a_young_key_is_still_rotated_when_the_gateway_trusts_an_unknown_one(
    world: World, tmp_path: Path
) -> None:
    from datetime import timedelta

    thief = make_key_pair(tmp_path, "thief")
    admin(world, f"add-login {' '.join(thief.public.split()[:2])}")
    result = rotate_login(world.settings, world.deps, if_older_than=timedelta(days=30))
    assert result.skipped_reason is None
    assert result.removed_unknown == [fingerprint(thief.public)]
    assert world.gateway_fingerprints() == [load_key(world.folder / "login_ed25519").fingerprint]
