"""Use case `burn`: contain first, keep evidence, destroy, relaunch with fresh keys.

Every step is journaled (intent, then result with AWS request ids) in the incident folder and
is safe to run again, so `burn --resume` (or a plain `burn`, which finds the open incident)
carries on after a crash without repeating or undoing containment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bastion import keys
from bastion.apply import json_line, wait_until
from bastion.aws import is_mutating
from bastion.errors import ConflictError, NotFoundError, UsageError
from bastion.gateway import Context, Deps, allowed_cidrs, open_context, up
from bastion.localstate import GatewayFiles, append_private
from bastion.model import (
    TAG_HOST_KEY_FINGERPRINT,
    TAG_IMAGE,
    TAG_INCIDENT,
    TAG_INCIDENT_APP_GROUPS,
    TAG_INCIDENT_STATE,
    TAG_KEY_FINGERPRINT,
    TAG_MANAGED,
    TAG_NAME,
    TAG_PORT,
    TAG_ROLE,
    Action,
    InstanceInfo,
)
from bastion.settings import Settings

log = logging.getLogger(__name__)

CONTAIN = (
    "contain_app_ssh",
    "contain_network_acl",
    "contain_open_group",
    "contain_isolation_group",
    "contain_elastic_ip",
)
PRESERVE = ("preserve_protect", "preserve_tag", "preserve_snapshots", "preserve_console")
DESTROY = ("destroy_key_pairs", "destroy_local_keys", "destroy_instance", "destroy_cleanup")
RELAUNCH = ("relaunch_gateway", "relaunch_app_groups", "relaunch_elastic_ip")
STEP_SUMMARY = {
    "contain_app_ssh": "revoke every SSH source that admits the gateway (its group, its address)",
    "contain_network_acl": "deny the gateway's private IP in and out in the VPC's network ACLs",
    "contain_open_group": "move every interface to an allow-all group (tracked flows untracked)",
    "contain_isolation_group": "move every interface to an empty isolation group",
    "contain_elastic_ip": "detach the Elastic IP (the allocation is kept for the new gateway)",
    "preserve_protect": "enable termination protection and stop-on-shutdown",
    "preserve_tag": "tag the instance, volumes and interfaces with the incident id",
    "preserve_snapshots": "snapshot every volume (tagged with the incident id)",
    "preserve_console": "save the console output (and screenshot where offered) with sha256",
    "destroy_key_pairs": "delete the compromised EC2 key pair(s)",
    "destroy_local_keys": "delete the local private keys and pinned host key",
    "destroy_instance": "turn protection off and terminate (stop with --keep-instance)",
    "destroy_cleanup": "remove the ACL entries, temporary groups and the old gateway group",
    "relaunch_gateway": "launch a new generation with new login and host keys, verify it",
    "relaunch_app_groups": "admit SSH on every app group from the new gateway group",
    "relaunch_elastic_ip": "attach the kept Elastic IP to the new gateway",
}
# The EC2 operations containment makes; nothing else may change before it is done.
CONTAINMENT_OPERATIONS = frozenset(
    {
        "RevokeSecurityGroupIngress",
        "CreateNetworkAclEntry",
        "ModifyNetworkInterfaceAttribute",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "DisassociateAddress",
    }
)
OPEN, CLOSED = "open", "closed"


PHASES = (("contained", CONTAIN), ("evidence_secured", PRESERVE), ("destroyed", DESTROY))


@dataclass
class Incident:
    """The incident record, saved as report.json (and report.md) after every step."""

    incident_id: str
    name: str
    region: str
    reason: str
    started_at: str
    operator: str = ""
    state: str = OPEN
    steps_done: list[str] = field(default_factory=list)
    pre_incident: dict[str, Any] = field(default_factory=dict)
    containment: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    relaunch: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, Any] = field(default_factory=dict)
    phase_times: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    api_calls: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        """Serialize the record."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Incident:
        """Load a record."""
        return cls(**json.loads(text))

    def mark(self, phase: str, when: datetime) -> None:
        """Record when a phase ended, and the time to contain / recover it implies."""
        self.phase_times.setdefault(phase, when.isoformat())
        start = datetime.fromisoformat(self.started_at)
        seconds = round(
            (datetime.fromisoformat(self.phase_times[phase]) - start).total_seconds(), 3
        )
        if phase == "contained":
            self.timings["time_to_contain_s"] = seconds
        elif phase == "recovered":
            self.timings["time_to_recover_s"] = seconds


def incidents_dir(settings: Settings, region: str) -> Path:
    """Return the folder holding this gateway's incident records (they survive `burn`)."""
    return GatewayFiles(settings.gateway_dir(region).expanduser(), settings.name).incidents


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


def clean_reason(text: str) -> str:
    """Return `text` as printable UTF-8, whatever bytes the shell passed."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    printable = "".join(ch if ch.isprintable() else " " for ch in raw).strip()
    if len(printable) > 1000:
        raise UsageError("--reason is longer than 1000 characters; shorten it")
    return printable


@dataclass
class BurnResult:
    """What `burn` did, and where the record is."""

    incident: Incident
    record_path: Path
    steps: list[str]
    dry_run: bool
    calls: dict[str, list[str]] = field(default_factory=dict)


def burn(
    settings: Settings,
    deps: Deps,
    reason: str = "",
    relaunch: bool = True,
    keep_instance: bool = False,
    resume: str | None = None,
    dry_run: bool = False,
) -> BurnResult:
    """Run the incident command; resumes an open incident of this gateway if there is one."""
    started = deps.clock.now()
    if relaunch and settings.allow:
        allowed_cidrs(settings, deps)  # a bad --allow fails now, not after the gateway is gone
    ctx = open_context(settings, deps, lock_for=None if dry_run else "burn")
    calls = ctx.ec2.call_log()
    folder = ctx.files.incidents
    incident = _find_incident(ctx, folder, resume)
    instance: InstanceInfo | None
    found = ctx.ec2.find_instances(settings.name) if incident is None else []
    if incident is None:
        incident = _adopt_tagged_incident(found, settings, ctx, started)
    if incident is None:
        instances = [i for i in found if TAG_INCIDENT not in i.tags]
        if not instances:
            raise NotFoundError(
                f"gateway {settings.name!r} has no live instance to burn; run `bastion status`"
            )
        instance = max(instances, key=lambda i: i.generation)
        incident = Incident(
            incident_id=f"inc-{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}",
            name=settings.name,
            region=ctx.ec2.region,
            reason=clean_reason(reason),
            started_at=started.isoformat(),
            operator=ctx.operator,
        )
        incident.pre_incident = _pre_incident(instance)
        incident.keys["old"] = {
            "key_pair": instance.key_name,
            "login_key_fingerprint": instance.tags.get(TAG_KEY_FINGERPRINT),
            "host_key_fingerprint": instance.tags.get(TAG_HOST_KEY_FINGERPRINT),
        }
    else:
        iid = incident.pre_incident["instance_id"]
        instance = None if ctx.ec2.instance_state(iid) == "terminated" else ctx.ec2.instance(iid)
    steps = list(CONTAIN + PRESERVE + DESTROY)
    if relaunch:
        steps += list(RELAUNCH)
    todo = [s for s in steps if s not in incident.steps_done]
    record_path = folder / incident.incident_id / "report.json"
    if dry_run:
        planned = planned_calls(ctx, incident, instance, todo, keep_instance)
        return BurnResult(incident, record_path, todo, True, planned)
    run = BurnRun(ctx, deps, incident, instance, record_path.parent, keep_instance, calls)
    incident.api_calls.extend({"step": "observe", **c} for c in calls)
    run.save()
    for step in todo:
        run.step(step)
    if relaunch:
        incident.mark("recovered", deps.clock.now())
    if run.instance is not None:  # kept for forensics: no longer an unfinished incident
        ctx.ec2.tag(run.instance.instance_id, {TAG_INCIDENT_STATE: CLOSED})
    incident.state = CLOSED
    run.save()
    return BurnResult(incident, record_path, todo, False)


def _find_incident(ctx: Context, folder: Path, resume: str | None) -> Incident | None:
    if resume is not None:
        path = folder / resume / "report.json"
        if not path.exists():
            raise NotFoundError(f"no incident {resume!r} in {folder}; see `ls {folder}`")
        return Incident.from_json(path.read_text())
    if folder.exists():
        for path in sorted(folder.glob("*/report.json"), reverse=True):
            record = Incident.from_json(path.read_text())
            if record.name == ctx.settings.name and record.state != CLOSED:
                log.info("resuming open incident %s", record.incident_id)
                return record
    return None


def _adopt_tagged_incident(
    found: list[InstanceInfo], settings: Settings, ctx: Context, now: datetime
) -> Incident | None:
    """Take over an open incident known only from AWS tags (its record is on another machine).

    Every step checks AWS before acting, so running them all again finishes the job without
    undoing containment; what the lost record knew of the time before is marked as unknown.
    """
    tagged = [i for i in found if i.tags.get(TAG_INCIDENT_STATE) == OPEN and TAG_INCIDENT in i.tags]
    if not tagged:
        return None
    instance = tagged[0]
    log.warning(
        "adopting open incident %s from the tags of %s",
        instance.tags[TAG_INCIDENT],
        instance.instance_id,
    )
    incident = Incident(
        incident_id=instance.tags[TAG_INCIDENT],
        name=settings.name,
        region=ctx.ec2.region,
        reason="(adopted from AWS tags; the original record is on another machine)",
        started_at=now.isoformat(),
        operator=ctx.operator,
    )
    incident.pre_incident = _pre_incident(instance)
    trusted_by = instance.tags.get(TAG_INCIDENT_APP_GROUPS, "")
    incident.containment["app_groups"] = [g for g in trusted_by.split(",") if g]
    return incident


def _pre_incident(instance: InstanceInfo) -> dict[str, Any]:
    return {
        "instance_id": instance.instance_id,
        "generation": instance.generation,
        "state": instance.state,
        "public_ip": instance.public_ip,
        "private_ip": instance.private_ip,
        "subnet_id": instance.subnet_id,
        "vpc_id": instance.vpc_id,
        "key_name": instance.key_name,
        "security_group_ids": list(instance.security_group_ids),
        "interface_ids": list(instance.interface_ids),
        "volume_ids": list(instance.volume_ids),
        "tags": instance.tags,
    }


class BurnRun:
    """Executes burn steps, each idempotent, journaled before and after."""

    def __init__(
        self,
        ctx: Context,
        deps: Deps,
        incident: Incident,
        instance: InstanceInfo | None,
        folder: Path,
        keep_instance: bool,
        calls: list[dict[str, str]],
    ) -> None:
        self.ctx, self.deps, self.incident = ctx, deps, incident
        self.instance = instance
        self.folder = folder
        self.keep_instance = keep_instance
        self.calls = calls
        self.pre = incident.pre_incident

    # --- bookkeeping -----------------------------------------------------------------------

    def save(self) -> None:
        """Write report.json and report.md atomically (0600: they name resources and hashes)."""
        keys.write_private_text(self.folder / "report.json", self.incident.to_json())
        keys.write_private_text(self.folder / "report.md", render_report(self.incident))

    def journal(self, entry: dict[str, Any], at: datetime | None = None) -> None:
        """Append one line to the incident journal."""
        keys.ensure_private_dir(self.folder)
        line = json_line({"at": (at or self.deps.clock.now()).isoformat(), **entry})
        append_private(self.folder / "journal.jsonl", line)

    def step(self, name: str) -> None:
        """Run one step: journal intent, run, journal result with request ids, save."""
        self.deps.reporter.step(f"[{self.incident.incident_id}] {STEP_SUMMARY[name]}")
        self.journal({"step": name, "phase": "intent"})
        if self.deps.before_each is not None:
            self.deps.before_each(Action(name, STEP_SUMMARY[name]))
        del self.calls[:]  # what came before is already in the record
        handler: Callable[[], dict[str, Any] | None] = getattr(self, name)
        try:
            outcome = handler() or {}
        except Exception as exc:
            calls = list(self.calls)
            self.incident.api_calls.extend({"step": name, **c} for c in calls)
            self.journal({"step": name, "phase": "failed", "error": str(exc)[:300], "calls": calls})
            self.save()
            raise
        calls = list(self.calls)
        self.incident.api_calls.extend({"step": name, **c} for c in calls)
        done_at = self.deps.clock.now()
        self.journal({"step": name, "phase": "done", "result": outcome, "calls": calls}, done_at)
        self.incident.steps_done.append(name)
        for phase, members in PHASES:
            if name == members[-1]:
                self.incident.mark(phase, done_at)
        self.save()

    def _group_name(self, kind: str) -> str:
        return f"bastion-{self.incident.name}-{self.incident.incident_id}-{kind}"

    def _incident_tags(self, role: str) -> dict[str, str]:
        return {
            "Name": self._group_name(role),
            TAG_MANAGED: "true",
            TAG_NAME: self.incident.name,
            TAG_ROLE: f"incident-{role}",
            TAG_INCIDENT: self.incident.incident_id,
        }

    # --- contain ---------------------------------------------------------------------------

    def contain_app_ssh(self) -> dict[str, Any]:
        """Revoke every rule that admits the gateway's groups or its addresses."""
        ec2 = self.ctx.ec2
        revoked = []
        own = self.pre["security_group_ids"]
        addresses = [
            f"{ip}/32" for ip in (self.pre.get("private_ip"), self.pre.get("public_ip")) if ip
        ]
        for group_id, rules in ec2.groups_admitting(own, addresses):
            ec2.revoke(group_id, [r.rule_id for r in rules], egress=False)
            revoked.append(
                {
                    "group_id": group_id,
                    "rules": [
                        f"{r.protocol}/{r.from_port} from {r.source_group or r.cidr}" for r in rules
                    ],
                }
            )
        self.incident.containment.setdefault("app_groups", [])
        for item in revoked:
            if item["group_id"] not in self.incident.containment["app_groups"]:
                self.incident.containment["app_groups"].append(item["group_id"])
        return {"revoked": revoked}

    def contain_network_acl(self) -> dict[str, Any]:
        """Deny the gateway's private IP both ways in every network ACL of its VPC."""
        ip = self.pre.get("private_ip")
        if not ip:
            return {"skipped": "no private IP"}
        cidr = f"{ip}/32"
        added = self.incident.containment.setdefault("acl_entries", [])
        for acl_id, entries in self.ctx.ec2.vpc_network_acls(self.pre["vpc_id"]):
            for egress in (False, True):
                same = [
                    e
                    for e in entries
                    if e.get("Egress") == egress
                    and e.get("CidrBlock") == cidr
                    and e.get("RuleAction") == "deny"
                ]
                if same:
                    continue
                taken = {int(e["RuleNumber"]) for e in entries if e.get("Egress") == egress}
                number = next(n for n in range(1, 32767) if n not in taken)
                self.ctx.ec2.add_acl_deny(acl_id, number, egress, cidr)
                added.append({"acl_id": acl_id, "number": number, "egress": egress})
                entries.append(
                    {
                        "Egress": egress,
                        "RuleNumber": number,
                        "CidrBlock": cidr,
                        "RuleAction": "deny",
                    }
                )
        return {"entries": added}

    def _ensure_group(self, kind: str) -> str:
        ec2 = self.ctx.ec2
        name = self._group_name(kind)
        vpc = self.pre["vpc_id"]
        existing = ec2.find_group_by_name(name, vpc)
        if existing:
            return existing
        group_id = ec2.create_group(
            name,
            f"bastion incident {self.incident.incident_id}: {kind}",
            vpc,
            self._incident_tags(kind),
        )
        if kind == "open":
            for cidr_key, cidr in (
                ("IpRanges", {"CidrIp": "0.0.0.0/0"}),
                ("Ipv6Ranges", {"CidrIpv6": "::/0"}),
            ):
                ec2.authorize(group_id, {"IpProtocol": "-1", cidr_key: [cidr]}, egress=False)
        else:
            default = [r.rule_id for r in ec2.group(group_id).egress]
            if default:
                ec2.revoke(group_id, default, egress=True)
        return group_id

    def _interfaces_in(self, group_id: str) -> bool:
        if self.instance is None:
            return True
        current = self.ctx.ec2.instance(self.instance.instance_id)
        return set(current.security_group_ids) == {group_id}

    def contain_open_group(self) -> dict[str, Any]:
        """Swap every interface into an allow-all group, so tracked flows become untracked."""
        isolation = self.ctx.ec2.find_group_by_name(self._group_name("isolate"), self.pre["vpc_id"])
        if isolation and self._interfaces_in(isolation):
            return {"skipped": "already isolated"}  # never undo containment on a resume
        group_id = self._ensure_group("open")
        self.incident.containment["open_group"] = group_id
        for interface in self.pre["interface_ids"]:
            self.ctx.ec2.set_interface_groups(interface, [group_id])
        return {"group_id": group_id}

    def contain_isolation_group(self) -> dict[str, Any]:
        """Swap every interface into an empty group: no traffic in or out."""
        group_id = self._ensure_group("isolate")
        self.incident.containment["isolation_group"] = group_id
        for interface in self.pre["interface_ids"]:
            self.ctx.ec2.set_interface_groups(interface, [group_id])
        return {"group_id": group_id}

    def contain_elastic_ip(self) -> dict[str, Any]:
        """Detach Elastic IPs, keeping the allocations for the new gateway."""
        kept = self.incident.containment.setdefault("elastic_ips", [])
        for address in self.ctx.ec2.addresses(self.pre["instance_id"]):
            self.ctx.ec2.disassociate_address(address["AssociationId"])
            if address["AllocationId"] not in kept:
                kept.append(address["AllocationId"])
        return {"kept": kept}

    # --- preserve --------------------------------------------------------------------------

    def preserve_protect(self) -> None:
        """Keep the instance from being terminated or vanishing while evidence is taken."""
        if self.instance is None:
            return
        self.ctx.ec2.set_termination_protection(self.instance.instance_id, True)
        self.ctx.ec2.set_shutdown_stops(self.instance.instance_id)

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
            self.ctx.ec2.tag(resource, tags)

    def preserve_snapshots(self) -> dict[str, Any]:
        """Snapshot every volume once per incident."""
        ec2 = self.ctx.ec2
        done = {
            s["VolumeId"]: s["SnapshotId"]
            for s in ec2.snapshots(TAG_INCIDENT, self.incident.incident_id)
        }
        for volume in self.pre["volume_ids"]:
            if volume not in done:
                tags = {
                    TAG_MANAGED: "true",
                    TAG_NAME: self.incident.name,
                    TAG_INCIDENT: self.incident.incident_id,
                    "Name": f"{volume} evidence",
                }
                done[volume] = ec2.snapshot(
                    volume, f"bastion incident {self.incident.incident_id} {volume}", tags
                )
        self.incident.evidence["snapshots"] = done
        return {"snapshots": done}

    def preserve_console(self) -> dict[str, Any]:
        """Save the console output (and a screenshot if offered) with their sha256."""
        iid = self.pre["instance_id"]
        text = self.ctx.ec2.console_output(iid) if self.instance is not None else ""
        data = text.encode("utf-8", "replace")
        keys.write_private_text(self.folder / "console-output.txt", text)
        evidence = {
            "console_output": {
                "file": "console-output.txt",
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        }
        shot = self.ctx.ec2.console_screenshot(iid) if self.instance is not None else None
        if shot:
            path = self.folder / "console-screenshot.jpg"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(shot)
            evidence["console_screenshot"] = {
                "file": path.name,
                "sha256": hashlib.sha256(shot).hexdigest(),
            }
        else:
            evidence["console_screenshot"] = {"missing": "not offered by the API"}
        self.incident.evidence.update(evidence)
        return evidence

    # --- destroy ---------------------------------------------------------------------------

    def destroy_key_pairs(self) -> dict[str, Any]:
        """Delete every EC2 key pair of the gateway: nothing may keep trusting it."""
        deleted = []
        for key_pair in self.ctx.ec2.find_key_pairs(self.incident.name):
            self.ctx.ec2.delete_key_pair(key_pair.name)
            deleted.append(key_pair.name)
        return {"deleted": deleted}

    def destroy_local_keys(self) -> None:
        """Remove the compromised private keys and the pin of the burnt host key."""
        from bastion.access import RECORD_NAME

        # Where the ssh config was written stays, so the relaunch rewrites it for the new gateway.
        self.ctx.files.remove(keep=(RECORD_NAME,))

    def destroy_instance(self) -> dict[str, Any]:
        """Terminate (or, with --keep-instance, stop) the isolated instance."""
        if self.instance is None:
            return {"skipped": "already terminated"}
        ec2, iid = self.ctx.ec2, self.instance.instance_id
        target = "stopped" if self.keep_instance else "terminated"
        if self.keep_instance:
            ec2.stop_instance(iid)
        else:
            ec2.set_termination_protection(iid, False)
            ec2.terminate_instance(iid)
        wait_until(
            lambda: ec2.instance_state(iid) == target,
            f"{iid} to be {target}",
            self.deps.clock,
            self.deps.reporter,
            self.ctx.settings.wait_timeout,
        )
        if not self.keep_instance:
            self.instance = None
        return {"state": target}

    def destroy_cleanup(self) -> dict[str, Any]:
        """Remove what containment added, once the instance is gone; keep it if it is kept."""
        ec2 = self.ctx.ec2
        removed: list[str] = []
        ip = self.pre.get("private_ip")
        if self.instance is None and ip:
            recorded = {
                (e["acl_id"], int(e["number"]), bool(e["egress"]))
                for e in self.incident.containment.get("acl_entries", [])
            }
            # Delete only what is still there (a resume may find some gone), and only the deny
            # entries containment made; with the record lost (adopted from tags), those are the
            # deny entries for the burnt instance's own address.
            for acl_id, entries in ec2.vpc_network_acls(self.pre["vpc_id"]):
                for e in entries:
                    key = (acl_id, int(e["RuleNumber"]), bool(e.get("Egress")))
                    ours = e.get("RuleAction") == "deny" and e.get("CidrBlock") == f"{ip}/32"
                    if ours and (not recorded or key in recorded):
                        with contextlib.suppress(NotFoundError):
                            ec2.delete_acl_entry(*key)
                        removed.append(f"acl {acl_id} #{key[1]}")
        kinds = ("open",) if self.instance is not None else ("open", "isolate")
        for kind in kinds:
            group_id = ec2.find_group_by_name(self._group_name(kind), self.pre["vpc_id"])
            if group_id:
                ec2.delete_group(group_id)
                removed.append(group_id)
        for group in ec2.find_gateway_groups(self.incident.name):
            ec2.delete_group(group.group_id)
            removed.append(group.group_id)
        return {"removed": removed}

    # --- relaunch --------------------------------------------------------------------------

    def relaunch_gateway(self) -> dict[str, Any]:
        """Launch the next generation with brand-new keys, verified as `up` verifies."""
        from dataclasses import replace

        app_groups = self.incident.containment.get("app_groups", [])
        settings = self.ctx.settings
        tags = self.pre.get("tags", {})
        # The same gateway comes back (port, image family), only with everything fresh.
        if TAG_PORT in tags:
            settings = replace(settings, port=int(tags[TAG_PORT]))
        if TAG_IMAGE in tags:
            settings = replace(settings, image=tags[TAG_IMAGE])
        if settings.app_sg is None and app_groups:
            settings = replace(settings, app_sg=app_groups[0])
        result = up(
            settings,
            self.deps,
            generation_floor=int(self.pre["generation"]) + 1,
            ctx=replace(self.ctx, settings=settings),
        )
        status = result.status or {}
        instance = status.get("instance") or {}
        self.incident.relaunch = {
            "instance_id": instance.get("id"),
            "generation": instance.get("generation"),
            "security_group": status.get("security_group"),
            "key_pair": status.get("key_pair"),
            "host_key_fingerprint": status.get("host_key_fingerprint"),
            "login_key_fingerprint": status.get("login_key_fingerprint"),
        }
        self.incident.keys["new"] = {
            k: self.incident.relaunch[k]
            for k in ("key_pair", "login_key_fingerprint", "host_key_fingerprint")
        }
        return self.incident.relaunch

    def relaunch_app_groups(self) -> dict[str, Any]:
        """Point every app group that trusted the old gateway at the new one."""
        new_group = self.incident.relaunch.get("security_group")
        added = []
        for group_id in self.incident.containment.get("app_groups", [])[1:]:
            group = self.ctx.ec2.group(group_id)
            if any(r.source_group == new_group and r.admits_port(22) for r in group.ingress):
                continue
            self.ctx.ec2.authorize(
                group_id,
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "UserIdGroupPairs": [
                        {
                            "GroupId": new_group,
                            "Description": f"bastion:gateway {self.incident.name}",
                        }
                    ],
                },
                egress=False,
            )
            added.append(group_id)
        return {"added": added}

    def relaunch_elastic_ip(self) -> dict[str, Any]:
        """Attach the kept Elastic IP to the new gateway."""
        new_instance = self.incident.relaunch.get("instance_id")
        moved = []
        for allocation in self.incident.containment.get("elastic_ips", []):
            if new_instance:
                self.ctx.ec2.associate_address(allocation, new_instance)
                moved.append(allocation)
        return {"moved": moved}


def render_report(incident: Incident) -> str:
    """Return the incident record as Markdown for people."""
    old, new = incident.keys.get("old", {}), incident.keys.get("new", {})
    lines = [
        f"# Incident {incident.incident_id}: gateway `{incident.name}` ({incident.region})",
        "",
        f"- state: **{incident.state}**",
        f"- reason: {incident.reason or '(none given)'}",
        f"- run by: {incident.operator}",
        f"- started: {incident.started_at}",
    ]
    for phase in ("contained", "evidence_secured", "destroyed", "recovered"):
        if phase in incident.phase_times:
            lines.append(f"- {phase.replace('_', ' ')}: {incident.phase_times[phase]}")
    for label, key in (
        ("time to contain", "time_to_contain_s"),
        ("time to recover", "time_to_recover_s"),
    ):
        if key in incident.timings:
            lines.append(f"- {label}: {incident.timings[key]} s")
    pre = incident.pre_incident
    lines += [
        "",
        "## Before",
        f"- instance {pre.get('instance_id')} (generation {pre.get('generation')}), "
        f"public {pre.get('public_ip') or 'none'}, private {pre.get('private_ip') or 'none'}",
        f"- groups {', '.join(pre.get('security_group_ids', []))}; key pair {pre.get('key_name')}",
        f"- login key {old.get('login_key_fingerprint')}, "
        f"host key {old.get('host_key_fingerprint')}",
        "",
        "## Containment",
        f"```json\n{json.dumps(incident.containment, indent=2, sort_keys=True)}\n```",
        "",
        "## Evidence",
        f"```json\n{json.dumps(incident.evidence, indent=2, sort_keys=True)}\n```",
    ]
    if incident.relaunch:
        lines += [
            "",
            "## New gateway",
            f"- instance {incident.relaunch.get('instance_id')} "
            f"(generation {incident.relaunch.get('generation')}), "
            f"group {incident.relaunch.get('security_group')}",
            f"- login key {new.get('login_key_fingerprint')}, "
            f"host key {new.get('host_key_fingerprint')} (pinned)",
        ]
    lines += ["", "## Steps", *(f"1. {STEP_SUMMARY[s]} (`{s}`)" for s in incident.steps_done)]
    mutating = [c for c in incident.api_calls if is_mutating(c.get("operation", ""))]
    lines += ["", f"## AWS calls ({len(incident.api_calls)}, {len(mutating)} mutating)", ""]
    lines += [
        " ".join(
            part
            for part in (
                f"- {c.get('step')}:",
                c.get("operation"),
                c.get("request_id"),
                c.get("error"),
            )
            if part
        )
        for c in incident.api_calls
    ]
    return "\n".join(lines) + "\n"


def planned_calls(
    ctx: Context,
    incident: Incident,
    instance: InstanceInfo | None,
    steps: list[str],
    keep_instance: bool,
) -> dict[str, list[str]]:
    """Return, per step, the mutating AWS calls it would make, found with reads only."""
    ec2, pre = ctx.ec2, incident.pre_incident
    iid = pre["instance_id"]
    group = f"bastion-{incident.name}-{incident.incident_id}"
    interfaces = pre.get("interface_ids", [])
    calls: dict[str, list[str]] = {}
    ip = pre.get("private_ip")
    addresses = [f"{a}/32" for a in (ip, pre.get("public_ip")) if a]
    for step in steps:
        todo: list[str] = []
        if step == "contain_app_ssh":
            for group_id, rules in ec2.groups_admitting(pre["security_group_ids"], addresses):
                for r in rules:
                    source = r.source_group or r.cidr
                    todo.append(
                        f"RevokeSecurityGroupIngress {group_id} {r.protocol}/{r.from_port} "
                        f"from {source}"
                    )
        elif step == "contain_network_acl" and ip:
            for acl_id, _ in ec2.vpc_network_acls(pre["vpc_id"]):
                todo += [
                    f"CreateNetworkAclEntry {acl_id} deny {ip}/32 {way}"
                    for way in ("inbound", "outbound")
                ]
        elif step == "contain_open_group":
            todo.append(f"CreateSecurityGroup {group}-open (all traffic in, default egress)")
            todo += [f"ModifyNetworkInterfaceAttribute {n} -> {group}-open" for n in interfaces]
        elif step == "contain_isolation_group":
            todo.append(f"CreateSecurityGroup {group}-isolate (no rules)")
            todo += [f"ModifyNetworkInterfaceAttribute {n} -> {group}-isolate" for n in interfaces]
        elif step == "contain_elastic_ip":
            todo += [f"DisassociateAddress {a['PublicIp']}" for a in ec2.addresses(iid)]
        elif step == "preserve_protect" and instance:
            todo.append(f"ModifyInstanceAttribute {iid} DisableApiTermination, shutdown=stop")
        elif step == "preserve_tag" and instance:
            todo.append(f"CreateTags {iid} {' '.join(pre['volume_ids'] + interfaces)}")
        elif step == "preserve_snapshots":
            todo += [f"CreateSnapshot {v}" for v in pre.get("volume_ids", [])]
        elif step == "destroy_key_pairs":
            todo += [f"DeleteKeyPair {k.name}" for k in ec2.find_key_pairs(incident.name)]
        elif step == "destroy_instance" and instance:
            todo.append(f"StopInstances {iid}" if keep_instance else f"TerminateInstances {iid}")
        elif step == "destroy_cleanup":
            todo.append("DeleteNetworkAclEntry (the deny entries), DeleteSecurityGroup (temporary")
            todo[-1] += f" groups and {', '.join(pre.get('security_group_ids', []))})"
        elif step == "relaunch_gateway":
            todo.append(
                f"ImportKeyPair, CreateSecurityGroup bastion-{incident.name}-gw-"
                f"{int(pre.get('generation', 1)) + 1} and its rules, RunInstances, "
                "AuthorizeSecurityGroupIngress on the app group (as `bastion up`)"
            )
        elif step == "relaunch_elastic_ip":
            todo += [f"AssociateAddress {a['PublicIp']} -> new gateway" for a in ec2.addresses(iid)]
        calls[step] = todo
    return calls


def describe_steps(
    steps: list[str], calls: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Return the steps with their summaries (and planned calls), for printing a plan."""
    return [
        {"step": s, "summary": STEP_SUMMARY[s], **({"calls": calls[s]} if calls else {})}
        for s in steps
    ]


__all__ = ["ConflictError", "burn"]
