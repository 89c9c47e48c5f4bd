"""Read an instance's host keys from its console output, the way EC2 documents it.

At first boot cloud-init prints the host public keys between `-----BEGIN SSH HOST KEY KEYS-----`
and `-----END SSH HOST KEY KEYS-----` (and their fingerprints above). The console is written by
the instance itself at boot and read through the EC2 API, not over the network, so it is how a
host key can be learned without trusting the first connection. Pure parsing: no I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BEGIN_KEYS = "-----BEGIN SSH HOST KEY KEYS-----"
END_KEYS = "-----END SSH HOST KEY KEYS-----"
_KEY = re.compile(r"\b(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) ([A-Za-z0-9+/]{20,}={0,2})(?:\s|$)")


@dataclass(frozen=True)
class ConsoleHostKeys:
    """What the console says about the host keys: none, one per type, or a contradiction."""

    blocks: int
    keys: dict[str, tuple[str, ...]]

    def key_of_type(self, key_type: str = "ssh-ed25519") -> str | None:
        """Return "TYPE BASE64" when the console names exactly one key of that type, else None."""
        found = self.keys.get(key_type, ())
        return f"{key_type} {found[0]}" if len(found) == 1 else None

    def contradicts(self, key_type: str = "ssh-ed25519") -> bool:
        """Tell whether the console names several different keys of that type (never trust it)."""
        return len(self.keys.get(key_type, ())) > 1


def host_keys_from_console(text: str) -> ConsoleHostKeys:
    """Collect the host keys of every closed block between cloud-init's markers.

    Line prefixes (`ec2: `, timestamps) are tolerated; a block cut off before its end marker
    (the console keeps only its last 64 KB) counts for nothing.
    """
    found: dict[str, list[str]] = {}
    blocks = 0
    pending: list[tuple[str, str]] | None = None
    for line in text.replace("\r", "").splitlines():
        if BEGIN_KEYS in line:
            pending = []
        elif END_KEYS in line and pending is not None:
            blocks += 1
            for key_type, blob in pending:
                known = found.setdefault(key_type, [])
                if blob not in known:
                    known.append(blob)
            pending = None
        elif pending is not None:
            pending.extend(_KEY.findall(line))
    return ConsoleHostKeys(blocks=blocks, keys={k: tuple(v) for k, v in found.items()})
