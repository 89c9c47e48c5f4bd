"""bastion-keyctl ties open connections to the key that opened them (sshd's VERBOSE log + ss).

Run directly with a fixed sshd log and a stand-in `ss` (BASTION_KEYCTL_SS), so every case of the
log is exact; the real sshd and real tunnels are in test_login_key_guard.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bastion.adapters.render import SshdParams, render_keyctl

OLD = "SHA256:" + "o" * 43
NEW = "SHA256:" + "n" * 43
THIEF = "SHA256:" + "t" * 43
LISTENER = 4242  # the pid in sshd's pid file; no such process needs to exist

LOG = f"""\
Server listening on 0.0.0.0 port 62222.\r
Accepted publickey for bastion-admin from 198.51.100.1 port 40000 ssh2: ED25519 {THIEF}\r
Accepted publickey for bastion from 198.51.100.1 port 40001 ssh2: ED25519 {THIEF}\r
Accepted publickey for bastion from 203.0.113.7 port 50000 ssh2: ED25519 {OLD}\r
Accepted publickey for bastion from 2001:db8::7 port 50001 ssh2: ED25519 {OLD}\r
Accepted publickey for bastion from 203.0.113.7 port 50002 ssh2: ED25519 {OLD}\r
Accepted publickey for bastion from 203.0.113.7 port 50002 ssh2: ED25519 {NEW}\r
Invalid user x Accepted publickey for bastion from 203.0.113.7 port 50003 ssh2: ED25519 {THIEF}\r
Disconnected from user bastion 203.0.113.7 port 50000\r
"""

SS_LISTEN = f"""\
LISTEN 0 128 0.0.0.0:62222 0.0.0.0:* users:(("sshd",pid={LISTENER},fd=3))
LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:(("sshd",pid=999,fd=3))
"""


def held_by(name: str, *pids: int) -> str:
    """Return ss's process column for a socket held by these processes."""
    return "users:(" + ",".join(f'("{name}",pid={pid},fd=4)' for pid in pids) + ")"


SS_ESTABLISHED = "".join(
    f"0 0 {local} {peer} {users}\n"
    for local, peer, users in (
        ("10.0.0.5:62222", "198.51.100.1:40001", held_by("sshd-session", 11, 12)),
        ("[::ffff:10.0.0.5]:62222", "[::ffff:203.0.113.7]:50000", held_by("sshd", 21, 22)),
        ("[2001:db8::5]:62222", "[2001:db8::7]:50001", held_by("sshd", 31)),
        ("10.0.0.5:62222", "203.0.113.7:50002", held_by("sshd", 41, 42)),
        ("10.0.0.5:62222", "203.0.113.7:50003", held_by("sshd", 51)),
        ("10.0.0.5:2222", "198.51.100.1:40001", held_by("sshd", 61)),
        ("10.0.0.5:40001", "10.0.1.9:22", held_by("sshd", 12)),
    )
)


@pytest.fixture()
def sessions(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `bastion-keyctl sessions` over the fixed log and connection table."""
    script = tmp_path / "bastion-keyctl"
    script.write_text(render_keyctl(SshdParams(port=62222)))
    keys_dir = tmp_path / "authorized_keys"
    keys_dir.mkdir()
    (tmp_path / "sshd.log").write_text(LOG)
    (tmp_path / "sshd.pid").write_text(f"{LISTENER}\n")
    fake_ss = tmp_path / "ss"
    (tmp_path / "listen").write_text(SS_LISTEN)
    (tmp_path / "established").write_text(SS_ESTABLISHED)
    fake_ss.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *established*) cat {tmp_path}/established ;; '
        f"*) cat {tmp_path}/listen ;; esac\n"
    )
    fake_ss.chmod(0o755)
    env = {
        **os.environ,
        "SSH_ORIGINAL_COMMAND": "sessions",
        "BASTION_KEYCTL_KEYS_DIR": str(keys_dir),
        "BASTION_KEYCTL_SSHD_LOG": str(tmp_path / "sshd.log"),
        "BASTION_KEYCTL_PID_FILE": str(tmp_path / "sshd.pid"),
        "BASTION_KEYCTL_SS": str(fake_ss),
    }
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=False)


def test_each_open_login_is_tied_to_the_key_that_opened_it(
    sessions: subprocess.CompletedProcess[str],
) -> None:
    assert sessions.returncode == 0, sessions.stderr
    assert sessions.stdout.splitlines() == [
        f"{THIEF} 198.51.100.1 40001",
        f"{OLD} 203.0.113.7 50000",  # IPv4-mapped address of a dual-stack socket
        f"{OLD} 2001:db8::7 50001",
        f"{NEW} 203.0.113.7 50002",  # a reused client port belongs to the latest login
    ]


def test_forged_lines_other_users_and_other_sshds_are_ignored(
    sessions: subprocess.CompletedProcess[str],
) -> None:
    out = sessions.stdout
    assert "50003" not in out  # an "Accepted" text inside another message is no login
    assert "40000" not in out  # the admin user's login is not a login-user session
    # The other sshd on 2222 and the session's own forward to 10.0.1.9:22 are not sessions.
    assert out.count("198.51.100.1 40001") == 1 and "10.0.1.9" not in out


def test_end_sessions_takes_only_a_well_formed_fingerprint(tmp_path: Path) -> None:
    script = tmp_path / "bastion-keyctl"
    script.write_text(render_keyctl(SshdParams(port=62222)))
    (tmp_path / "keys").mkdir()
    for request in (
        "end-sessions",
        "end-sessions SHA256:a;reboot",
        "end-sessions $(id)",
        "end-sessions x y",
    ):
        env = {
            **os.environ,
            "SSH_ORIGINAL_COMMAND": request,
            "BASTION_KEYCTL_KEYS_DIR": str(tmp_path / "keys"),
        }
        result = subprocess.run(
            ["sh", str(script)], capture_output=True, text=True, env=env, check=False
        )
        assert result.returncode == 2, (request, result.stdout, result.stderr)
