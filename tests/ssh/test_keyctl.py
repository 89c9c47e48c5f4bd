"""bastion-keyctl manages login keys: run directly, then end to end over the admin channel."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bastion.adapters.render import SshdParams, render_keyctl
from bastion.adapters.ssh import Endpoint, public_key_fingerprint, run_keyctl, verify_login
from bastion.domain.errors import SshError
from bastion.testing import LocalGateway

if TYPE_CHECKING:
    from conftest import GatewayKeys

LOGIN_LINE_OPTIONS = "restrict,port-forwarding"


@pytest.fixture()
def keyctl(
    ssh_keygen: str, keys: GatewayKeys, tmp_path: Path
) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Return a runner for the rendered script over a temp keys dir seeded with the login key."""
    script = tmp_path / "bastion-keyctl"
    script.write_text(render_keyctl(SshdParams(port=2222)))
    keys_dir = tmp_path / "authorized_keys"
    keys_dir.mkdir()
    (keys_dir / "bastion").write_text(f"{LOGIN_LINE_OPTIONS} {keys.login.public}\n")

    def run(request: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SSH_ORIGINAL_COMMAND": request,
            "BASTION_KEYCTL_KEYS_DIR": str(keys_dir),
        }
        return subprocess.run(
            ["sh", str(script)], capture_output=True, text=True, env=env, check=False
        )

    return run


def test_list_prints_the_login_keys(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], keys: GatewayKeys
) -> None:
    result = keyctl("list")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{LOGIN_LINE_OPTIONS} {keys.login.public}\n"


def test_add_login_appends_a_restricted_line_once(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], keys: GatewayKeys
) -> None:
    added = keyctl(f"add-login {keys.stranger.public}")
    again = keyctl(f"add-login {keys.stranger.public}")
    assert added.returncode == 0, added.stderr
    assert public_key_fingerprint(keys.stranger.public) in added.stdout
    assert again.returncode == 0 and "already authorized" in again.stdout
    assert keyctl("list").stdout.splitlines() == [
        f"{LOGIN_LINE_OPTIONS} {keys.login.public}",
        f"{LOGIN_LINE_OPTIONS} {keys.stranger.public}",
    ]


@pytest.mark.parametrize(
    "request_text",
    [
        "add-login ssh-rsa AAAAB3NzaC1yc2E",
        "add-login ssh-ed25519 not*base64",
        'add-login ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 x",command="/bin/sh',
        "add-login ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBROKEN",
        "remove-login MD5:aa:bb",
        "shell",
        "",
    ],
)
def test_bad_requests_are_refused_without_touching_the_file(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], request_text: str, keys: GatewayKeys
) -> None:
    result = keyctl(request_text)
    assert result.returncode == 2, result.stdout + result.stderr
    assert keyctl("list").stdout == f"{LOGIN_LINE_OPTIONS} {keys.login.public}\n"


def test_remove_login_revokes_by_fingerprint(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], keys: GatewayKeys
) -> None:
    keyctl(f"add-login {keys.stranger.public}")
    result = keyctl(f"remove-login {public_key_fingerprint(keys.login.public)}")
    assert result.returncode == 0, result.stderr
    assert keyctl("list").stdout == f"{LOGIN_LINE_OPTIONS} {keys.stranger.public}\n"


def test_remove_login_refuses_to_remove_the_last_key(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], keys: GatewayKeys
) -> None:
    result = keyctl(f"remove-login {public_key_fingerprint(keys.login.public)}")
    assert result.returncode == 8
    assert "last login key" in result.stderr
    assert keyctl("list").stdout == f"{LOGIN_LINE_OPTIONS} {keys.login.public}\n"


def test_remove_login_of_an_unknown_key_is_not_found(
    keyctl: Callable[[str], subprocess.CompletedProcess[str]], keys: GatewayKeys
) -> None:
    result = keyctl(f"remove-login {public_key_fingerprint(keys.stranger.public)}")
    assert result.returncode == 3


def test_rotation_over_the_admin_channel_swaps_the_login_key(
    sshd: str, ssh_keygen: str, keys: GatewayKeys, user_data_for: Callable[..., str]
) -> None:
    """Add the new login key, prove it, revoke the old one: what `bastion rotate` will do."""
    with LocalGateway(
        user_data_for(keys), install_keyctl=True, host_key=keys.host.private_pem
    ) as gateway:
        endpoint = Endpoint(gateway.host, gateway.port)

        def admin(command: str) -> str:
            return run_keyctl(endpoint, "bastion-admin", keys.admin.path, keys.host.public, command)

        assert admin("list").strip().endswith(keys.login.public)
        admin(f"add-login {keys.stranger.public}")
        verify_login(endpoint, "bastion", keys.stranger.path, keys.host.public)
        admin(f"remove-login {public_key_fingerprint(keys.login.public)}")
        with pytest.raises(SshError, match="refused login key"):
            verify_login(endpoint, "bastion", keys.login.path, keys.host.public)
        with pytest.raises(SshError, match="last login key"):
            admin(f"remove-login {public_key_fingerprint(keys.stranger.public)}")


def test_login_key_cannot_use_the_admin_channel(
    sshd: str, keys: GatewayKeys, endpoint: Endpoint
) -> None:
    with pytest.raises(SshError, match="refused login key"):
        run_keyctl(endpoint, "bastion-admin", keys.login.path, keys.host.public, "list")


def test_host_key_verbs_stage_activate_and_remove_over_the_admin_channel(
    sshd: str, ssh_keygen: str, keys: GatewayKeys, user_data_for: Callable[..., str], tmp_path: Path
) -> None:
    """Stage a host key (private half on stdin), switch sshd to it, remove the old one."""
    from conftest import make_key_pair

    from bastion.domain.errors import HostKeyMismatchError

    new = make_key_pair(tmp_path, "new-host")
    old_body = " ".join(keys.host.public.split()[:2])
    new_body = " ".join(new.public.split()[:2])
    old_fp = public_key_fingerprint(keys.host.public)
    new_fp = public_key_fingerprint(new.public)
    with LocalGateway(
        user_data_for(keys), install_keyctl=True, host_key=keys.host.private_pem
    ) as gateway:
        endpoint = Endpoint(gateway.host, gateway.port)

        def admin(command: str, pinned: str = keys.host.public, stdin: str | None = None) -> str:
            return run_keyctl(
                endpoint, "bastion-admin", keys.admin.path, pinned, command, stdin_data=stdin
            )

        assert admin("list-host-keys") == f"active {old_body}\n"
        with pytest.raises(SshError, match="not the one"):
            admin(f"add-host-key {new_body}", stdin=keys.stranger.private_pem)
        with pytest.raises(SshError, match="not the one"):
            admin(f"add-host-key {new_body}")  # no private half at all
        assert admin("list-host-keys") == f"active {old_body}\n"

        assert "staged" in admin(f"add-host-key {new_body}", stdin=new.private_pem)
        assert admin("list-host-keys") == f"active {old_body}\nstaged {new_body}\n"
        verify_login(endpoint, "bastion", keys.login.path, keys.host.public)  # still the old
        with pytest.raises(SshError, match="active host key"):
            admin(f"remove-host-key {old_fp}")

        admin(f"activate-host-key {new_fp}")
        verify_login(endpoint, "bastion", keys.login.path, new.public)
        with pytest.raises(HostKeyMismatchError):
            verify_login(endpoint, "bastion", keys.login.path, keys.host.public)
        assert admin("list-host-keys", new.public) == f"active {new_body}\nstaged {old_body}\n"

        admin(f"remove-host-key {old_fp}", new.public)
        assert admin("list-host-keys", new.public) == f"active {new_body}\n"
        with pytest.raises(SshError, match="no staged host key"):
            admin(f"remove-host-key {old_fp}", new.public)
