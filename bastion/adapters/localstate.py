"""Where a gateway's local files live, and what they say (fingerprints, never secrets)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bastion.adapters import keys
from bastion.domain.fingerprints import fingerprint
from bastion.domain.identity import GatewayRecord
from bastion.domain.model import LocalKeys


@dataclass(frozen=True)
class GatewayFiles:
    """The private per-gateway folder: keys, pinned host key, known_hosts, journal."""

    root: Path
    name: str

    @property
    def login_key(self) -> Path:
        """Return the daily login private key (forwarding only)."""
        return self.root / "login_ed25519"

    @property
    def next_login_key(self) -> Path:
        """Return the login key being rotated in (present only while a rotation runs)."""
        return self.root / "login_ed25519.next"

    @property
    def next_host_key_pub(self) -> Path:
        """Return the host key being rotated in (public half; present only mid-rotation)."""
        return self.root / "host_ed25519.next.pub"

    @property
    def relaunch_dir(self) -> Path:
        """Return the folder of the next generation's keys while `rotate --relaunch` runs."""
        return self.root / "relaunch"

    @property
    def admin_key(self) -> Path:
        """Return the key-management private key (forced command only)."""
        return self.root / "admin_ed25519"

    @property
    def host_key_pub(self) -> Path:
        """Return the pinned public host key of the gateway."""
        return self.root / "host_ed25519.pub"

    @property
    def known_hosts(self) -> Path:
        """Return the per-gateway known_hosts (only the pinned key, under the alias)."""
        return self.root / "known_hosts"

    @property
    def journal(self) -> Path:
        """Return the append-only log of applied actions."""
        return self.root / "journal.jsonl"

    @property
    def launched(self) -> Path:
        """Return the record of instances this machine launched or verified (one id a line)."""
        return self.root / "instances"

    @property
    def incidents(self) -> Path:
        """Return the folder of incident records, which outlives keys, `burn` and `down`."""
        return self.root / "incidents"

    @property
    def alias(self) -> str:
        """Return the SSH host alias of the gateway."""
        return f"bastion-{self.name}"

    def read(self) -> LocalKeys:
        """Return fingerprints of what is on disk, refusing loosely protected secrets."""
        login = keys.load_key(self.login_key).fingerprint if self.login_key.exists() else None
        admin = keys.load_key(self.admin_key).fingerprint if self.admin_key.exists() else None
        pinned = self.host_key_pub.read_text().strip() if self.host_key_pub.exists() else None
        return LocalKeys(login, admin, pinned or None, self.missing_copies())

    def _copies(self) -> dict[Path, Path]:
        """Return each file that is a copy of another (what it is rewritten from)."""
        return {
            self.login_key.with_name(self.login_key.name + ".pub"): self.login_key,
            self.admin_key.with_name(self.admin_key.name + ".pub"): self.admin_key,
            self.known_hosts: self.host_key_pub,
        }

    def missing_copies(self) -> tuple[str, ...]:
        """Name the files missing beside what they are made from (a full disk, a deletion)."""
        return tuple(
            c.name for c, source in self._copies().items() if source.exists() and not c.exists()
        )

    def restore_copies(self) -> list[str]:
        """Rewrite each missing copy from its source; return `NAME from SOURCE` for each."""
        restored = []
        for copy, source in self._copies().items():
            if not source.exists() or copy.exists():
                continue
            if source == self.host_key_pub:
                self.pin_host_key(source.read_text())
            else:
                keys.write_public_text(copy, keys.load_key(source).public_line + "\n")
            restored.append(f"{copy.name} from {source.name}")
        return restored

    def record(self) -> GatewayRecord:
        """Return what ties an instance to this machine (a relaunch's staged instance too)."""
        ids = (
            self.recorded_instances()
            | GatewayFiles(self.relaunch_dir, self.name).recorded_instances()
        )
        # Which keys exist, not what they are: loading them (cryptography's SSH parsers) would
        # cost burn a few dozen milliseconds before containment, and identity needs no more.
        pinned = self.host_key_pub.read_text().strip() if self.host_key_pub.exists() else ""
        return GatewayRecord(
            instance_ids=ids,
            pinned_fingerprint=fingerprint(pinned) if pinned else None,
            holds_keys=self.login_key.exists()
            or self.admin_key.exists()
            # The operator's own key, pointed at by `bastion cert` (a certificate gateway).
            or any((self.root / n).is_symlink() for n in ("login_identity", "admin_identity")),
        )

    def recorded_instances(self) -> frozenset[str]:
        """Return the ids of the instances recorded as this machine's gateway."""
        if not self.launched.exists():
            return frozenset()
        return frozenset(line.strip() for line in self.launched.read_text().split() if line)

    def record_instances(self, instance_ids: frozenset[str] | set[str]) -> None:
        """Record instances as this machine's gateway (launched here, or proven by its host key)."""
        new = set(instance_ids) - self.recorded_instances()
        if new:
            keys.ensure_private_dir(self.root)
            append_private(self.launched, "".join(f"{iid}\n" for iid in sorted(new)))

    def pin_host_key(self, public_line: str) -> None:
        """Pin the gateway's host key for paramiko and for OpenSSH (via HostKeyAlias)."""
        keys.ensure_private_dir(self.root)
        keys.write_public_text(self.host_key_pub, public_line.strip() + "\n")
        keys.write_public_text(self.known_hosts, keys.known_hosts_line(self.alias, public_line))

    def next_login_fingerprint(self) -> str | None:
        """Return the fingerprint of a login key being rotated in, if any."""
        path = self.next_login_key
        return keys.load_key(path).fingerprint if path.exists() else None

    def promote_next_login_key(self) -> None:
        """Make the rotated-in key the login key; the old private key is gone after this."""
        next_pub = self.next_login_key.with_name(self.next_login_key.name + ".pub")
        current_pub = self.login_key.with_name(self.login_key.name + ".pub")
        os.replace(next_pub, current_pub)
        os.replace(self.next_login_key, self.login_key)

    def discard_next_login_key(self) -> None:
        """Forget a login key that never made it onto the gateway."""
        for path in (
            self.next_login_key,
            self.next_login_key.with_name(self.next_login_key.name + ".pub"),
        ):
            path.unlink(missing_ok=True)

    def remove(self, keep: tuple[str, ...] = ()) -> None:
        """Delete the keys, pins and journal; incident records (evidence) and `keep` stay."""
        if not self.root.exists():
            return
        kept = {self.incidents.name, *keep}
        if not any((self.root / name).exists() for name in kept):
            shutil.rmtree(self.root)
            return
        for path in self.root.iterdir():
            if path.name in kept:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def append_private(path: Path, text: str) -> None:
    """Append `text` to a file only its owner may read, whatever the umask or its old mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        os.fchmod(fd, 0o600)
        handle.write(text)
