"""The rendered sshd_config is accepted by the real sshd and means what we think it means."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bastion.adapters.render import SshdParams, render_sshd_config

if TYPE_CHECKING:
    from conftest import GatewayKeys


def effective_config(sshd: str, config_path: Path, connection: str) -> dict[str, list[str]]:
    """Return `sshd -T` for one connection spec as keyword -> values (lowercase keywords)."""
    result = subprocess.run(
        [sshd, "-T", "-f", str(config_path), "-C", connection],
        capture_output=True,
        text=True,
        check=True,
    )
    config: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        keyword, _, value = line.partition(" ")
        config.setdefault(keyword, []).append(value)
    return config


@pytest.fixture()
def config_path(sshd: str, keys: GatewayKeys, tmp_path: Path) -> Path:
    params = SshdParams(
        port=2222,
        host_key_path=str(keys.host.path),
        authorized_keys_dir=str(tmp_path / "authorized_keys"),
        pid_file=str(tmp_path / "sshd.pid"),
        permit_open=("10.0.1.5:22", "db.internal:5432"),
    )
    path = tmp_path / "sshd_config"
    path.write_text(render_sshd_config(params))
    return path


def test_sshd_accepts_the_rendered_config(sshd: str, config_path: Path) -> None:
    result = subprocess.run(
        [sshd, "-t", "-f", str(config_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_effective_config_is_hardened(sshd: str, config_path: Path) -> None:
    config = effective_config(sshd, config_path, "user=nobody,host=x,addr=127.0.0.1")
    assert config["port"] == ["2222"]
    assert config["passwordauthentication"] == ["no"]
    assert config["kbdinteractiveauthentication"] == ["no"]
    assert config["permitrootlogin"] == ["no"]
    assert config["loglevel"] == ["VERBOSE"]
    assert config["allowtcpforwarding"] == ["no"]
    assert config["authenticationmethods"] == ["publickey"]
    assert config["hostkeyalgorithms"] == ["ssh-ed25519"]
    assert "subsystem" not in config
    assert "include" not in config
    assert "ecdh-sha2-nistp256" not in config["kexalgorithms"][0]


def test_login_user_may_only_forward_locally(sshd: str, config_path: Path) -> None:
    config = effective_config(sshd, config_path, "user=bastion,host=x,addr=127.0.0.1")
    assert config["allowtcpforwarding"] == ["local"]
    assert config["permitopen"] == ["10.0.1.5:22 db.internal:5432"]
    assert config["forcecommand"] == ["/usr/sbin/nologin"]
    assert config["permittty"] == ["no"]
    assert config["maxsessions"] == ["0"]


def test_admin_user_may_only_run_the_key_management_command(sshd: str, config_path: Path) -> None:
    config = effective_config(sshd, config_path, "user=bastion-admin,host=x,addr=127.0.0.1")
    assert config["allowtcpforwarding"] == ["no"]
    assert config["permittty"] == ["no"]
    assert config["forcecommand"] == [
        'sudo -n /usr/local/sbin/bastion-keyctl "$SSH_ORIGINAL_COMMAND"'
    ]
