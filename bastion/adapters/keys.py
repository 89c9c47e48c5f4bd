"""Ed25519 keys made locally; the only importer of `cryptography`.

Private keys are written 0600 from the first byte, in 0700 folders, and replaced atomically.
Nothing here logs or returns private key text except to the file it writes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bastion.domain.errors import InsecureFileError
from bastion.domain.fingerprints import fingerprint as fingerprint
from bastion.domain.fingerprints import public_key_body as public_key_body

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class SshKey:
    """An Ed25519 key pair; `private_openssh` stays out of repr and logs."""

    public_line: str
    private_openssh: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """Return the OpenSSH SHA256 fingerprint of the public half."""
        return fingerprint(self.public_line)


def generate_key(comment: str) -> SshKey:
    """Make a new Ed25519 key pair in memory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return SshKey(public_line=f"{public} {comment}".strip(), private_openssh=private_text)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700, or refuse an existing one others can read."""
    if path.exists():
        check_private(path)
        return path
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):  # every folder bastion creates is its owner's alone
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by a concurrent run
        os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def check_private(path: Path) -> None:
    """Raise unless `path` is reachable by its owner only."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        wanted = PRIVATE_DIR_MODE if path.is_dir() else PRIVATE_FILE_MODE
        raise InsecureFileError(
            f"{path} has mode {mode:04o}, open to other users; "
            f"run `chmod {wanted:o} {path}` if you trust its content, or remove it"
        )


def write_private_text(path: Path, text: str) -> None:
    """Write a secret atomically; the file is 0600 from its first byte."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk fails in write or fsync, which name no file
        raise


def write_public_text(path: Path, text: str) -> None:
    """Write a non-secret file atomically (0644), e.g. a public key or known_hosts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def save_key(private_path: Path, key: SshKey) -> None:
    """Store a key pair as `private_path` (0600) and `private_path.pub`."""
    write_private_text(private_path, key.private_openssh)
    write_public_text(private_path.with_name(private_path.name + ".pub"), key.public_line + "\n")


def load_key(private_path: Path) -> SshKey:
    """Load a stored key pair, refusing files that others can read."""
    check_private(private_path.parent)
    check_private(private_path)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_text = private_path.read_text()
    try:
        private = serialization.load_ssh_private_key(private_text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InsecureFileError(
            f"{private_path} is not a readable unencrypted OpenSSH key; "
            "move it away and run `bastion rotate` to make a new one"
        ) from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise InsecureFileError(f"{private_path} is not an Ed25519 key; move it away")
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    pub_path = private_path.with_name(private_path.name + ".pub")
    comment = ""
    if pub_path.exists():
        fields = pub_path.read_text().split()
        comment = " ".join(fields[2:])
    return SshKey(public_line=f"{public} {comment}".strip(), private_openssh=private_text)


def known_hosts_line(alias: str, public_line: str) -> str:
    """Return one known_hosts line pinning `public_line` under `alias`."""
    return f"{alias} {public_key_body(public_line)}\n"
