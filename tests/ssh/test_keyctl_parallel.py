"""Parallel bastion-keyctl requests: every change lands exactly as it was reported."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest
from conftest import gateway_user_data, make_key_pair

from bastion.adapters.render import SshdParams, render_keyctl
from bastion.adapters.ssh import Endpoint, public_key_fingerprint, run_keyctl
from bastion.testing import LocalGateway

if TYPE_CHECKING:
    from conftest import GatewayKeys

PARALLEL = 16
pytestmark = pytest.mark.xdist_group("sshd")


def _fingerprints(listing: str) -> set[str]:
    return {public_key_fingerprint(" ".join(line.split()[1:3])) for line in listing.splitlines()}


def _new_keys(directory: Path, count: int) -> list[str]:
    return [make_key_pair(directory, f"k{i}").public for i in range(count)]


def test_sixteen_parallel_adds_by_the_script_all_land(
    ssh_keygen: str, keys: GatewayKeys, tmp_path: Path
) -> None:
    script = tmp_path / "bastion-keyctl"
    script.write_text(render_keyctl(SshdParams(port=2222)))
    keys_dir = tmp_path / "authorized_keys"
    keys_dir.mkdir()
    (keys_dir / "bastion").write_text(f"restrict,port-forwarding {keys.login.public}\n")
    env = {**os.environ, "BASTION_KEYCTL_KEYS_DIR": str(keys_dir)}
    publics = _new_keys(tmp_path, PARALLEL)

    def keyctl(request: str) -> str:
        done = subprocess.run(
            ["sh", str(script), request], capture_output=True, text=True, env=env, check=True
        )
        return done.stdout

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(lambda key: keyctl(f"add-login {key}"), publics))
    assert all(answer.startswith("added SHA256:") for answer in answers)
    expected = {public_key_fingerprint(key) for key in publics}
    assert _fingerprints(keyctl("list")) == expected | {public_key_fingerprint(keys.login.public)}

    # Removals racing additions: what was reported removed stays removed.
    removed, kept = publics[: PARALLEL // 2], publics[PARALLEL // 2 :]
    (tmp_path / "more").mkdir()
    more = _new_keys(tmp_path / "more", PARALLEL // 2)
    requests = [f"remove-login {public_key_fingerprint(k)}" for k in removed]
    requests += [f"add-login {k}" for k in more]
    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(keyctl, requests))
    assert all(re.match(r"^(added|removed) SHA256:", answer) for answer in answers), answers
    final = {public_key_fingerprint(k) for k in [keys.login.public, *kept, *more]}
    assert _fingerprints(keyctl("list")) == final


def test_sixteen_parallel_adds_over_the_admin_channel_all_land(
    sshd: str, ssh_keygen: str, keys: GatewayKeys, tmp_path: Path
) -> None:
    publics = _new_keys(tmp_path, PARALLEL)
    with LocalGateway(
        gateway_user_data(keys), install_keyctl=True, host_key=keys.host.private_pem
    ) as gateway:
        # Log in one by one (sshd limits unauthenticated connections per source), then send
        # all sixteen requests at the same moment over the authenticated connections.
        clients = [_admin_client(gateway, keys) for _ in range(PARALLEL)]
        start = threading.Barrier(PARALLEL)

        def add(index: int) -> tuple[int, str]:
            start.wait(timeout=30)
            _, stdout, _ = clients[index].exec_command(f"add-login {publics[index]}", timeout=30)
            answer = stdout.read().decode()
            return stdout.channel.recv_exit_status(), answer

        try:
            with ThreadPoolExecutor(PARALLEL) as pool:
                answers = list(pool.map(add, range(PARALLEL)))
        finally:
            for client in clients:
                client.close()
        endpoint = Endpoint(gateway.host, gateway.port)
        listed = run_keyctl(endpoint, "bastion-admin", keys.admin.path, keys.host.public, "list")
    assert all(status == 0 and out.startswith("added SHA256:") for status, out in answers), answers
    expected = {public_key_fingerprint(key) for key in publics}
    assert _fingerprints(listed) == expected | {public_key_fingerprint(keys.login.public)}


def _admin_client(gateway: LocalGateway, keys: GatewayKeys) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    host_type, host_blob = keys.host.public.split()[:2]
    pinned = paramiko.PKey.from_type_string(host_type, base64.b64decode(host_blob))
    client.get_host_keys().add(f"[{gateway.host}]:{gateway.port}", host_type, pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        gateway.host,
        gateway.port,
        username="bastion-admin",
        pkey=paramiko.PKey.from_path(keys.admin.path),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client
