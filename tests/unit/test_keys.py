"""Local keys: 0600 from the first byte, 0700 folders, loose permissions refused."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bastion.adapters import keys
from bastion.domain.errors import InsecureFileError


def test_saved_key_is_0600_in_a_0700_folder_and_loads_back(tmp_path: Path) -> None:
    key = keys.generate_key("test")
    path = tmp_path / "gw" / "login_ed25519"
    old_umask = os.umask(0)  # even a permissive umask must not widen the modes
    try:
        keys.save_key(path, key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.load_key(path) == key


def test_private_key_never_appears_in_repr() -> None:
    key = keys.generate_key("test")
    assert "PRIVATE" not in repr(key)


def test_loose_key_file_is_refused_with_instructions(tmp_path: Path) -> None:
    path = tmp_path / "gw" / "login_ed25519"
    keys.save_key(path, keys.generate_key("test"))
    path.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        keys.load_key(path)


def test_loose_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gw" / "login_ed25519"
    keys.save_key(path, keys.generate_key("test"))
    path.parent.chmod(0o755)
    with pytest.raises(InsecureFileError, match="chmod 700"):
        keys.load_key(path)


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is missing")
    key = keys.generate_key("test")
    pub = tmp_path / "k.pub"
    pub.write_text(key.public_line + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    assert printed.split()[1] == key.fingerprint


def test_known_hosts_line_pins_under_the_alias_without_comment() -> None:
    key = keys.generate_key("host comment")
    line = keys.known_hosts_line("bastion-default", key.public_line)
    assert line == f"bastion-default {' '.join(key.public_line.split()[:2])}\n"
