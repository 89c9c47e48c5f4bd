"""OpenSSH fingerprints and key bodies: plain arithmetic on public keys, no key library."""

from __future__ import annotations

import base64
import hashlib

from bastion.domain.errors import UsageError


def fingerprint(public_line: str) -> str:
    """Return `SHA256:...` for an OpenSSH public key line, as `ssh-keygen -lf` prints it."""
    parts = public_line.split()
    if len(parts) < 2:
        raise UsageError(f"not an OpenSSH public key: {public_line[:40]!r}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise UsageError(f"not an OpenSSH public key: {public_line[:40]!r}") from exc
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def public_key_body(public_line: str) -> str:
    """Return `type base64` without the comment, the form compared across systems."""
    return " ".join(public_line.split()[:2])
