"""Preserve: keep the instance from vanishing, tag it, snapshot its volumes, save its console."""

from __future__ import annotations

import hashlib
from typing import Any

from bastion.domain.incident import OPEN, PRESERVE
from bastion.domain.tags import (
    TAG_INCIDENT,
    TAG_INCIDENT_APP_GROUPS,
    TAG_INCIDENT_STATE,
    TAG_MANAGED,
    TAG_NAME,
)
from bastion.usecases.burn.state import Phase


class Preservation(Phase):
    """Evidence first: protection, incident tags, snapshots, console output with hashes."""

    steps = PRESERVE

    def preserve_protect(self) -> None:
        """Keep the instance from being terminated or vanishing while evidence is taken."""
        if self.instance is None:
            return
        self.ctx.aws.compute.set_termination_protection(self.instance.instance_id, True)
        self.ctx.aws.compute.set_shutdown_stops(self.instance.instance_id)

    def preserve_tag(self) -> None:
        """Mark everything of the instance with the incident id."""
        if self.instance is None:
            return
        tags = {TAG_INCIDENT: self.incident.incident_id, TAG_INCIDENT_STATE: OPEN}
        # So that another machine can finish the incident from the tags alone.
        app_groups = ",".join(self.incident.containment.get("app_groups", []))
        if app_groups:
            tags[TAG_INCIDENT_APP_GROUPS] = app_groups[:255]
        for resource in (
            self.instance.instance_id,
            *self.pre["volume_ids"],
            *self.pre["interface_ids"],
        ):
            self.ctx.aws.compute.tag(resource, tags)

    def preserve_snapshots(self) -> dict[str, Any]:
        """Snapshot every volume once per incident."""
        aws = self.ctx.aws
        done = {
            s["VolumeId"]: s["SnapshotId"]
            for s in aws.evidence.snapshots(TAG_INCIDENT, self.incident.incident_id)
        }
        for volume in self.pre["volume_ids"]:
            if volume not in done:
                tags = {
                    TAG_MANAGED: "true",
                    TAG_NAME: self.incident.name,
                    TAG_INCIDENT: self.incident.incident_id,
                    "Name": f"{volume} evidence",
                }
                done[volume] = aws.evidence.snapshot(
                    volume, f"bastion incident {self.incident.incident_id} {volume}", tags
                )
        self.incident.evidence["snapshots"] = done
        return {"snapshots": done}

    def preserve_console(self) -> dict[str, Any]:
        """Save the console output (and a screenshot if offered) with their sha256."""
        iid = self.pre["instance_id"]
        text = self.ctx.aws.evidence.console_output(iid) if self.instance is not None else ""
        data = text.encode("utf-8", "replace")
        self.state.folder.write_text("console-output.txt", text)
        evidence = {
            "console_output": {
                "file": "console-output.txt",
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        }
        shot = self.ctx.aws.evidence.console_screenshot(iid) if self.instance is not None else None
        if shot:
            self.state.folder.write_bytes("console-screenshot.jpg", shot)
            evidence["console_screenshot"] = {
                "file": "console-screenshot.jpg",
                "sha256": hashlib.sha256(shot).hexdigest(),
            }
        else:
            evidence["console_screenshot"] = {"missing": "not offered by the API"}
        self.incident.evidence.update(evidence)
        return evidence
