"""A gateway built from bastion's user data, against bastion.ssh (paramiko) and the ssh client."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bastion.adapters.ssh import (
    Endpoint,
    public_key_fingerprint,
    run_keyctl,
    tcp_reachable,
    verify_login,
)
from bastion.domain.errors import HostKeyMismatchError, SshError, TimeoutExpired, UsageError
from bastion.testing import LocalGateway, free_port
from bastion.testing.app_host import LocalAppHost

if TYPE_CHECKING:
    from conftest import GatewayKeys

HOST_ALIAS = "bastion-gateway"


def test_login_with_pinned_host_key_returns_its_fingerprint(
    endpoint: Endpoint, keys: GatewayKeys
) -> None:
    fingerprint = verify_login(endpoint, "bastion", keys.login.path, keys.host.public)
    assert fingerprint == public_key_fingerprint(keys.host.public)


def test_login_user_can_open_a_forwarding_channel(
    endpoint: Endpoint, keys: GatewayKeys, behind: LocalAppHost
) -> None:
    target = Endpoint(behind.host, behind.port)
    verify_login(endpoint, "bastion", keys.login.path, keys.host.public, forward_to=target)


@pytest.mark.parametrize("where", ["its own sshd", "a non-22 port of the host behind"])
def test_login_user_cannot_forward_to_a_port_other_than_22(
    endpoint: Endpoint, keys: GatewayKeys, behind: LocalAppHost, where: str
) -> None:
    target = endpoint if where == "its own sshd" else Endpoint(behind.host, 2222)
    with pytest.raises(SshError, match="refused forwarding"):
        verify_login(endpoint, "bastion", keys.login.path, keys.host.public, forward_to=target)


def test_accepted_login_key_fingerprint_is_logged(
    gateway: LocalGateway, endpoint: Endpoint, keys: GatewayKeys
) -> None:
    verify_login(endpoint, "bastion", keys.login.path, keys.host.public)
    assert "Accepted publickey for bastion from 127.0.0.1" in gateway.log_text()
    assert public_key_fingerprint(keys.login.public) in gateway.log_text()


def test_wrong_host_key_is_refused(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(HostKeyMismatchError) as caught:
        verify_login(endpoint, "bastion", keys.login.path, keys.stranger.public)
    message = caught.value.message
    assert public_key_fingerprint(keys.host.public) in message
    assert public_key_fingerprint(keys.stranger.public) in message
    assert "bastion burn" in message


def test_unknown_login_key_is_refused(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(SshError, match="refused login key") as caught:
        verify_login(endpoint, "bastion", keys.stranger.path, keys.host.public)
    assert not isinstance(caught.value, HostKeyMismatchError)
    assert public_key_fingerprint(keys.stranger.public) in caught.value.message


def test_admin_key_cannot_log_in_as_the_login_user(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(SshError, match="refused login key"):
        verify_login(endpoint, "bastion", keys.admin.path, keys.host.public)


def test_login_user_cannot_run_a_command(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(SshError):
        run_keyctl(endpoint, "bastion", keys.login.path, keys.host.public, "id")


def test_admin_user_cannot_forward(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(SshError, match="refused forwarding"):
        verify_login(
            endpoint, "bastion-admin", keys.admin.path, keys.host.public, forward_to=endpoint
        )


def test_root_cannot_log_in(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(SshError, match="refused login key"):
        verify_login(endpoint, "root", keys.login.path, keys.host.public)


def test_closed_port_is_reported_as_unreachable(keys: GatewayKeys) -> None:
    closed = Endpoint("127.0.0.1", free_port())
    assert not tcp_reachable(closed, timeout=1.0)
    with pytest.raises(SshError, match="cannot connect"):
        verify_login(closed, "bastion", keys.login.path, keys.host.public, timeout=2.0)


def test_open_port_is_reachable(endpoint: Endpoint) -> None:
    assert tcp_reachable(endpoint, timeout=1.0)


def test_silent_server_times_out(keys: GatewayKeys) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        silent = Endpoint("127.0.0.1", listener.getsockname()[1])
        with pytest.raises(TimeoutExpired, match="no SSH greeting"):
            verify_login(silent, "bastion", keys.login.path, keys.host.public, timeout=0.5)


def test_missing_private_key_is_a_usage_error(endpoint: Endpoint, keys: GatewayKeys) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        verify_login(endpoint, "bastion", Path("/nonexistent/key"), keys.host.public)


# --- the real OpenSSH client, configured the way a user's ssh_config would be -------------


def write_client_config(
    directory: Path,
    endpoint: Endpoint,
    identity: Path,
    known_host_key: str,
    behind: LocalAppHost | None = None,
    behind_key: Path | None = None,
) -> Path:
    """Write a known_hosts file pinning `known_host_key` and an ssh_config with a jump host.

    `behind-gateway` is `behind` reached through the gateway, logging in with `behind_key`.
    """
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"{HOST_ALIAS} {known_host_key}\n")
    common = (
        f"    HostName {endpoint.host}\n"
        f"    Port {endpoint.port}\n"
        "    User bastion\n"
        f"    IdentityFile {identity}\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        "    BatchMode yes\n"
        "    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        f"    HostKeyAlias {HOST_ALIAS}\n"
        "    ConnectTimeout 5\n"
    )
    config = directory / "ssh_config"
    text = f"Host gateway\n{common}\n"
    if behind is not None:
        (directory / "behind_known_hosts").write_text(behind.known_hosts_line())
        text += (
            f"Host behind-gateway\n    HostName {behind.host}\n    Port {behind.port}\n"
            f"    User {behind.user}\n    IdentityFile {behind_key}\n"
            "    IdentitiesOnly yes\n    IdentityAgent none\n    BatchMode yes\n"
            "    StrictHostKeyChecking yes\n"
            f"    UserKnownHostsFile {directory / 'behind_known_hosts'}\n"
            "    ProxyJump gateway\n"
        )
    config.write_text(text)
    return config


def run_ssh(ssh: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the OpenSSH client with only the given config file."""
    return subprocess.run(
        [ssh, "-F", str(config), *args],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "HOME": str(config.parent)},
    )


def read_line_with_deadline(process: subprocess.Popen[bytes], seconds: float) -> bytes:
    """Return the first line the process prints, waiting at most `seconds`."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 1024)
            if not chunk:
                break
            data += chunk
    return data


def test_ssh_w_forwards_through_the_login_user(
    ssh_client: str, endpoint: Endpoint, keys: GatewayKeys, tmp_path: Path, behind: LocalAppHost
) -> None:
    """`ssh -W` (what ProxyJump runs) reaches the sshd behind the gateway: its banner comes back."""
    config = write_client_config(tmp_path, endpoint, keys.login.path, keys.host.public)
    target = f"{behind.host}:{behind.port}"
    process = subprocess.Popen(
        [ssh_client, "-F", str(config), "-W", target, "gateway"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        banner = read_line_with_deadline(process, 10.0)
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=5)
    assert banner.startswith(b"SSH-2.0-OpenSSH"), stderr.decode()


def test_proxyjump_authenticates_to_the_host_behind_the_gateway(
    ssh_client: str, endpoint: Endpoint, keys: GatewayKeys, tmp_path: Path, behind: LocalAppHost
) -> None:
    """The host behind the jump listens on port 22 of its own loopback address."""
    config = write_client_config(
        tmp_path, endpoint, keys.login.path, keys.host.public, behind, keys.stranger.path
    )
    result = run_ssh(ssh_client, config, "-v", "behind-gateway", "id -un")
    # "(via proxy)" marks the connection to the host behind the jump, not the jump itself.
    assert '(via proxy) using "publickey"' in result.stderr, result.stderr
    assert result.returncode == 0 and result.stdout.strip() == behind.user, result.stderr


def test_login_user_gets_no_shell_from_the_real_client(
    ssh_client: str, endpoint: Endpoint, keys: GatewayKeys, tmp_path: Path
) -> None:
    config = write_client_config(tmp_path, endpoint, keys.login.path, keys.host.public)
    result = run_ssh(ssh_client, config, "gateway", "id")
    assert result.returncode != 0
    assert "uid=" not in result.stdout


def test_real_client_refuses_a_gateway_with_another_host_key(
    ssh_client: str, endpoint: Endpoint, keys: GatewayKeys, tmp_path: Path
) -> None:
    config = write_client_config(tmp_path, endpoint, keys.login.path, keys.stranger.public)
    result = run_ssh(ssh_client, config, "-W", f"{endpoint.host}:{endpoint.port}", "gateway")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr, result.stderr
