"""bastion-keyctl's certificate verbs, run directly: only a real KRL replaces RevokedKeys.

An unreadable RevokedKeys file makes sshd refuse every key, so a request that would install
garbage there (a lockout of the whole team) must change nothing.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bastion.adapters.krl import build_krl
from bastion.adapters.render import SshdParams, render_keyctl
from tests.support import require


@pytest.fixture
def keyctl(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    require(shutil.which("ssh-keygen") is not None, "needs ssh-keygen (openssh-client)")
    script = tmp_path / "bastion-keyctl"
    script.write_text(render_keyctl(SshdParams(port=62222)))
    (tmp_path / "keys").mkdir()
    (tmp_path / "revoked_keys").write_bytes(b"")
    env = {
        **os.environ,
        "BASTION_KEYCTL_KEYS_DIR": str(tmp_path / "keys"),
        "BASTION_KEYCTL_REVOKED_KEYS": str(tmp_path / "revoked_keys"),
        "BASTION_KEYCTL_SSHD_LOG": str(tmp_path / "sshd.log"),
    }
    return script, env


def run(
    keyctl: tuple[Path, dict[str, str]], request: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    script, env = keyctl
    return subprocess.run(
        ["sh", str(script), request],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_set_revoked_keys_installs_a_krl(
    keyctl: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-b", "256", "-N", "", "-f", str(tmp_path / "ca")],
        check=True,
    )
    krl = build_krl("serial: 42\n", (tmp_path / "ca.pub").read_text())
    done = run(keyctl, "set-revoked-keys", base64.b64encode(krl).decode())
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "revoked_keys").read_bytes() == krl


@pytest.mark.parametrize("garbage", ["not base64 !!", base64.b64encode(b"not a KRL").decode()])
def test_set_revoked_keys_refuses_what_is_not_a_krl(
    keyctl: tuple[Path, dict[str, str]], tmp_path: Path, garbage: str
) -> None:
    refused = run(keyctl, "set-revoked-keys", garbage)
    assert refused.returncode == 2, refused.stderr
    assert (tmp_path / "revoked_keys").read_bytes() == b""  # unchanged: nobody locked out
    assert not list(tmp_path.glob("revoked_keys.*"))  # no temp file left


def test_cert_log_returns_only_sshds_certificate_lines(
    keyctl: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "sshd.log").write_text(
        "Accepted publickey for bastion from 127.0.0.1 port 1 ssh2: ED25519-CERT SHA256:a ID arn:x"
        " (serial 1) CA ECDSA SHA256:b\n"
        "Accepted publickey for bastion from 127.0.0.1 port 2 ssh2: ED25519 SHA256:a\n"
        "Invalid user Accepted publickey for bastion from 1.2.3.4 port 3 ssh2: ED25519-CERT x\n"
        "2026-12-01T10:00:00+0000 gw sshd-session[9]: Invalid user x: Accepted publickey for"
        " bastion from 6.6.6.6 port 4 ssh2: ED25519-CERT SHA256:a ID arn:forged (serial 9) CA\n"
    )
    out = run(keyctl, "cert-log").stdout.splitlines()
    assert out == [
        "Accepted publickey for bastion from 127.0.0.1 port 1 ssh2: ED25519-CERT SHA256:a ID arn:x"
        " (serial 1) CA ECDSA SHA256:b"
    ]
