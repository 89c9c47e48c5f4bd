"""The incident record of `burn`: its steps, their order, and the report people read.

Pure data and text: the record is saved (and journaled) by `adapters.incidents`, and the steps
are carried out by `usecases.burn`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bastion.domain.calls import is_mutating
from bastion.domain.errors import UsageError
from bastion.domain.model import InstanceInfo

CONTAIN = (
    "contain_app_ssh",
    "contain_network_acl",
    "contain_open_group",
    "contain_isolation_group",
    "contain_elastic_ip",
)
# Containment runs as these chains at once; within a chain, in order. contain_open_group moves
# each interface to the allow-all group (tracked flows become untracked) and straight on to the
# isolation group, made beforehand; contain_isolation_group reads the interfaces back.
CONTAIN_CHAINS = (
    ("contain_app_ssh",),
    ("contain_network_acl",),
    ("contain_open_group", "contain_isolation_group"),
    ("contain_elastic_ip",),
)


PRESERVE = ("preserve_protect", "preserve_tag", "preserve_snapshots", "preserve_console")


DESTROY = ("destroy_key_pairs", "destroy_local_keys", "destroy_instance", "destroy_cleanup")


RELAUNCH = ("relaunch_gateway", "relaunch_app_groups", "relaunch_elastic_ip")


ELASTIC_IP_STEPS = frozenset({"contain_elastic_ip", "relaunch_elastic_ip"})


STEP_SUMMARY = {
    "contain_app_ssh": "revoke every rule in the VPC that admits the gateway's groups or "
    "addresses (in and out, prefix lists too)",
    "contain_network_acl": "deny every address of the gateway in and out in the VPC's network "
    "ACLs, before any allow",
    "contain_open_group": "move every interface to an allow-all group (tracked flows untracked), "
    "then to the empty isolation group",
    "contain_isolation_group": "check every interface is in the empty isolation group",
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
        "ModifyManagedPrefixList",
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


def clean_reason(text: str) -> str:
    """Return `text` as printable UTF-8, whatever bytes the shell passed."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    printable = "".join(ch if ch.isprintable() else " " for ch in raw).strip()
    if len(printable) > 1000:
        raise UsageError("--reason is longer than 1000 characters; shorten it")
    return printable


def pre_incident(instance: InstanceInfo) -> dict[str, Any]:
    """Return what the record keeps of the instance as it was before the incident."""
    return {
        "instance_id": instance.instance_id,
        "generation": instance.generation,
        "state": instance.state,
        "public_ip": instance.public_ip,
        "private_ip": instance.private_ip,
        "addresses": list(instance.interface_addresses),
        "public_addresses": list(instance.public_addresses),
        "subnet_id": instance.subnet_id,
        "vpc_id": instance.vpc_id,
        "key_name": instance.key_name,
        "security_group_ids": list(instance.security_group_ids),
        "interface_ids": list(instance.interface_ids),
        "volume_ids": list(instance.volume_ids),
        "tags": instance.tags,
    }


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
        ("time to contain (from the process start)", "time_to_contain_s"),
        ("of which start-up (process start to the command)", "startup_s"),
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


def describe_steps(
    steps: list[str], calls: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Return the steps with their summaries (and planned calls), for printing a plan."""
    return [
        {"step": s, "summary": STEP_SUMMARY[s], **({"calls": calls[s]} if calls else {})}
        for s in steps
    ]
