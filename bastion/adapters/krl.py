"""Key revocation lists (KRLs) made by OpenSSH's own `ssh-keygen -k`.

A KRL revokes certificates by serial or key id (which needs the CA's public key, `-s`) and plain
keys; sshd's `RevokedKeys` reads it at every login. An empty specification gives an empty file,
which revokes nothing (sshd refuses every key only when the file is unreadable).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bastion.domain.errors import BastionError, UsageError


def build_krl(spec: str, ca_public_line: str) -> bytes:
    """Return the binary KRL for a specification (`serial: N`, `id: ARN`, `key: ...` lines)."""
    if not spec.strip():
        return b""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise BastionError("ssh-keygen is missing; install the OpenSSH client (openssh-client)")
    with tempfile.TemporaryDirectory(prefix="bastion-krl-") as folder:
        root = Path(folder)
        (root / "ca.pub").write_text(ca_public_line.strip() + "\n", encoding="utf-8")
        (root / "spec").write_text(spec, encoding="utf-8")
        result = subprocess.run(
            [
                keygen,
                "-q",
                "-k",
                "-f",
                str(root / "krl"),
                "-s",
                str(root / "ca.pub"),
                str(root / "spec"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise UsageError(
                f"ssh-keygen cannot build the revocation list: {result.stderr.strip()}"
            )
        return (root / "krl").read_bytes()
