"""`burn`: find (or open) the incident, then contain, preserve, destroy and relaunch."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bastion.adapters.incidents import IncidentFolder, load_incident, open_incident
from bastion.adapters.localstate import GatewayFiles
from bastion.domain.errors import NotFoundError
from bastion.domain.identity import require_record
from bastion.domain.incident import (
    CLOSED,
    CONTAIN,
    CONTAIN_CHAINS,
    DESTROY,
    ELASTIC_IP_STEPS,
    OPEN,
    PRESERVE,
    RELAUNCH,
    Incident,
    clean_reason,
    pre_incident,
)
from bastion.domain.model import InstanceInfo
from bastion.domain.settings import Settings
from bastion.domain.tags import (
    TAG_HOST_KEY_FINGERPRINT,
    TAG_INCIDENT,
    TAG_INCIDENT_APP_GROUPS,
    TAG_INCIDENT_STATE,
    TAG_KEY_FINGERPRINT,
)
from bastion.usecases.burn.run import BurnRun
from bastion.usecases.burn.state import BurnState
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context, allowed_cidrs, open_context
from bastion.usecases.shared.identity import gateway_candidates, identify
from bastion.usecases.shared.lease import break_lock

log = logging.getLogger(__name__)


def incidents_dir(settings: Settings, region: str) -> Path:
    """Return the folder holding this gateway's incident records (they survive `burn`)."""
    return GatewayFiles(settings.gateway_dir(region).expanduser(), settings.name).incidents


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
    instance_id: str | None = None,
    without_keys: bool = False,
) -> BurnResult:
    """Run the incident command; resumes an open incident of this gateway if there is one.

    A new or adopted incident burns only an instance tied to this machine's record (see
    domain.identity), or the one named by `instance_id`; a machine holding nothing of the
    gateway needs `without_keys`.
    """
    # From the process start: what the operator lived through, imports and all.
    started = deps.clock.process_started_at()
    invoked = deps.clock.now()
    if relaunch and settings.allow:
        allowed_cidrs(settings, deps)  # a bad --allow fails now, not after the gateway is gone
    # Who is burning is asked of STS after containment: nothing slow comes before it.
    # The AWS lock is never waited for: containment first, then burn breaks it (see below).
    ctx = open_context(
        settings,
        deps,
        lock_for=None if dry_run else "burn",
        identify=False,
        aws_lock=False,
        chosen_instance=instance_id,
        without_keys=without_keys,
    )
    calls = ctx.aws.call_log()
    calls.take_own()  # from here on, this context's calls are collected (the observe step)
    folder = ctx.files.incidents
    incident = _find_incident(ctx, folder, resume)
    instance: InstanceInfo | None
    found = ctx.aws.compute.find_instances(settings.name) if incident is None else []
    if incident is None:
        found = _ours(ctx, deps, found)
        incident = _adopt_tagged_incident(found, settings, ctx, started)
    opened_now = incident is None
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
            region=ctx.aws.region,
            reason=clean_reason(reason),
            started_at=started.isoformat(),
        )
        incident.pre_incident = pre_incident(instance)
        incident.keys["old"] = {
            "key_pair": instance.key_name,
            "login_key_fingerprint": instance.tags.get(TAG_KEY_FINGERPRINT),
            "host_key_fingerprint": instance.tags.get(TAG_HOST_KEY_FINGERPRINT),
        }
    else:
        iid = incident.pre_incident["instance_id"]
        instance = (
            None
            if ctx.aws.compute.instance_state(iid) == "terminated"
            else ctx.aws.compute.instance(iid)
        )
    steps = list(CONTAIN + PRESERVE + DESTROY)
    if relaunch:
        steps += list(RELAUNCH)
    todo = [s for s in steps if s not in incident.steps_done]
    record_path = folder / incident.incident_id / "report.json"
    if dry_run:
        from bastion.usecases.burn.dry_run import planned_calls

        planned = planned_calls(ctx, incident, instance, todo, keep_instance)
        has_eip = bool(incident.containment.get("elastic_ips")) or bool(
            planned.get("contain_elastic_ip")
        )
        return BurnResult(incident, record_path, _shown(todo, has_eip), True, planned)
    state = BurnState(
        ctx,
        deps,
        incident,
        instance,
        IncidentFolder(record_path.parent),
        keep_instance,
        fresh=opened_now,
    )
    run = BurnRun(state, calls)
    incident.api_calls.extend({"step": "observe", **c} for c in calls.take_own())
    contain = [s for s in todo if s in CONTAIN]
    # Independent at once; the two interface swaps in order (allow-all, then isolation).
    run.batch([[s for s in contain if s in chain] for chain in CONTAIN_CHAINS])
    if not incident.operator:
        incident.operator = ctx.operator
    _take_lock_after_containment(ctx, deps, run)
    incident.timings.setdefault("startup_s", _seconds(started, invoked))
    for step in todo:
        if step not in CONTAIN:
            run.step(step)
    if relaunch:
        incident.mark("recovered", deps.clock.now())
    if state.instance is not None:  # kept for forensics: no longer an unfinished incident
        ctx.aws.compute.tag(state.instance.instance_id, {TAG_INCIDENT_STATE: CLOSED})
    incident.state = CLOSED
    run.save()
    has_eip = bool(incident.containment.get("elastic_ips"))
    return BurnResult(incident, record_path, _shown(todo, has_eip), False)


def _take_lock_after_containment(ctx: Context, deps: Deps, run: BurnRun) -> None:
    """Break any other holder's AWS lock, on the record: it stops before its next step."""
    broken = break_lock(ctx, deps, "burn")
    if broken is None:
        return
    run.journal(
        {
            "step": "lock",
            "phase": "broken",
            "holder": broken.holder,
            "command": broken.command,
            "since": broken.since.isoformat(),
            "lease_expires": broken.expires.isoformat(),
        }
    )
    deps.reporter.warn(
        f"burn took the lock on gateway {ctx.settings.name!r} from {broken.describe()}, "
        "after containment; that command stops before its next step"
    )


def _shown(steps: list[str], has_eip: bool) -> list[str]:
    """Return the steps to report: the Elastic IP ones only for a gateway that has one."""
    # The steps still run (and are journaled) either way, so a resume finds them done.
    return [s for s in steps if has_eip or s not in ELASTIC_IP_STEPS]


def _find_incident(ctx: Context, folder: Path, resume: str | None) -> Incident | None:
    if resume is not None:
        record = load_incident(folder, resume)
        if record is None:
            raise NotFoundError(f"no incident {resume!r} in {folder}; see `ls {folder}`")
        return record
    record = open_incident(folder, ctx.settings.name)
    if record is not None:
        log.info("resuming open incident %s", record.incident_id)
    return record


def _ours(ctx: Context, deps: Deps, found: list[InstanceInfo]) -> list[InstanceInfo]:
    """Keep the instances tied to this machine's record; refuse (nothing changed) otherwise."""
    ours = identify(ctx, deps, "burn", gateway_candidates(found, open_incidents=True))
    kept = [i for i in found if i.instance_id in ours]
    going_ahead = require_record(
        ctx.settings.name,
        ctx.files.record(),
        kept[0].tags if kept else None,
        "burn",
        ctx.without_keys,
    )
    if going_ahead:
        deps.reporter.warn(going_ahead)
    return kept


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
        region=ctx.aws.region,
        reason="(adopted from AWS tags; the original record is on another machine)",
        started_at=now.isoformat(),
    )
    incident.pre_incident = pre_incident(instance)
    trusted_by = instance.tags.get(TAG_INCIDENT_APP_GROUPS, "")
    incident.containment["app_groups"] = [g for g in trusted_by.split(",") if g]
    return incident


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)
