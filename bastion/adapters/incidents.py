"""The incident folder on this machine: report.json and report.md, the journal, the evidence.

Every file is written 0600 in a 0700 folder (they name resources and hashes); records outlive
`burn` and `down` (see `localstate.GatewayFiles.remove`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.adapters import keys
from bastion.adapters.localstate import append_private
from bastion.domain.apply import json_line
from bastion.domain.incident import CLOSED, Incident, render_report

RECORD = "report.json"


@dataclass(frozen=True)
class IncidentFolder:
    """One incident's folder: its record, its journal, and the evidence taken."""

    path: Path

    @property
    def record(self) -> Path:
        """Return the machine-readable record (report.json)."""
        return self.path / RECORD

    def save(self, incident: Incident) -> None:
        """Write report.json and report.md atomically (0600: they name resources and hashes)."""
        keys.write_private_text(self.path / RECORD, incident.to_json())
        keys.write_private_text(self.path / "report.md", render_report(incident))

    def journal(self, *entries: dict[str, Any]) -> None:
        """Append lines to the incident journal, in one write."""
        keys.ensure_private_dir(self.path)
        append_private(self.path / "journal.jsonl", "".join(json_line(e) for e in entries))

    def write_text(self, name: str, text: str) -> None:
        """Keep a piece of text evidence (0600, replaced atomically)."""
        keys.write_private_text(self.path / name, text)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Keep a piece of binary evidence (0600 from the first byte)."""
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def load_incident(folder: Path, incident_id: str) -> Incident | None:
    """Return the record of incident `incident_id` in `folder`, if there is one."""
    path = folder / incident_id / RECORD
    return Incident.from_json(path.read_text()) if path.exists() else None


def open_incident(folder: Path, name: str) -> Incident | None:
    """Return the newest unfinished incident of gateway `name` in `folder`, if any."""
    if folder.exists():
        for path in sorted(folder.glob(f"*/{RECORD}"), reverse=True):
            record = Incident.from_json(path.read_text())
            if record.name == name and record.state != CLOSED:
                return record
    return None


def past_incidents(folder: Path) -> list[dict[str, Any]]:
    """Summarize the incident records in `folder`, newest first."""
    found = []
    for path in sorted(folder.glob("*/report.json"), reverse=True):
        with contextlib.suppress(ValueError, TypeError, OSError):
            record = Incident.from_json(path.read_text())
            found.append(
                {
                    "id": record.incident_id,
                    "state": record.state,
                    "started_at": record.started_at,
                    "reason": record.reason,
                    "time_to_contain_s": record.timings.get("time_to_contain_s"),
                    "report": str(path),
                }
            )
    return found
