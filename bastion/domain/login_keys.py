"""The gateway's authorized login keys as bastion sees them: which it put there, which not.

bastion knows a login key when it holds it locally (the login key, or the one a rotation is
bringing in) or records it in AWS (the instance's key-fingerprint tag, the EC2 key pairs). Any
other key on the gateway came through the admin channel from someone else: a thief with the
admin key, or a person adding keys by hand. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.domain.errors import UsageError
from bastion.domain.fingerprints import fingerprint

_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_ENDED = re.compile(r"^ended (\d+) session\(s\) of (SHA256:[A-Za-z0-9+/=]+)$", re.M)


@dataclass(frozen=True)
class AuthorizedKey:
    """One line of the login user's authorized_keys file, as `bastion-keyctl list` prints it."""

    fingerprint: str
    key_type: str
    comment: str


@dataclass(frozen=True)
class LoginKeysReport:
    """The gateway's login keys, or why they were not read (`expected`: this machine has the
    gateway's admin key, so the keys should have been read)."""

    checked: bool
    reason: str | None = None
    keys: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    expected: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "checked": self.checked,
            "reason": self.reason,
            "keys": self.keys,
            "unknown": self.unknown,
        }


def parse_authorized_keys(listing: str) -> list[AuthorizedKey]:
    """Return the keys in `bastion-keyctl list` output (options first, then type, key, comment)."""
    found: list[AuthorizedKey] = []
    for line in listing.splitlines():
        fields = line.split()
        for index, word in enumerate(fields[:-1]):
            if word.startswith(("ssh-", "sk-ssh-")):
                comment = _PRINTABLE.sub("?", " ".join(fields[index + 2 :]))[:80]
                try:
                    key_fingerprint = fingerprint(f"{word} {fields[index + 1]}")
                except UsageError:  # sshd cannot use such a line either
                    break
                found.append(AuthorizedKey(key_fingerprint, word, comment))
                break
    return found


def known_login_keys(*fingerprints: str | None, key_pairs: Iterable[str] = ()) -> frozenset[str]:
    """Return the login keys bastion put there: held locally, tagged, or an EC2 key pair."""
    return frozenset(fp for fp in (*fingerprints, *key_pairs) if fp)


def unknown_login_keys(on_gateway: Sequence[str], known: Iterable[str]) -> list[str]:
    """Return the gateway's login keys that bastion did not put there, in the gateway's order."""
    mine = set(known)
    return list(dict.fromkeys(fp for fp in on_gateway if fp not in mine))


def login_keys_view(keys: Sequence[AuthorizedKey], known: Iterable[str]) -> list[dict[str, Any]]:
    """Return the keys as JSON-ready rows, each flagged known or not."""
    mine = set(known)
    return [
        {
            "fingerprint": k.fingerprint,
            "type": k.key_type,
            "comment": k.comment,
            "known": k.fingerprint in mine,
        }
        for k in keys
    ]


def ended_sessions(output: str) -> dict[str, int]:
    """Return {fingerprint: sessions ended} from `remove-login`/`end-sessions` output."""
    return {m.group(2): int(m.group(1)) for m in _ENDED.finditer(output)}
