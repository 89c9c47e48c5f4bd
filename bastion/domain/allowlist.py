"""Allow-list rules: who may reach the gateway port, until when. Pure: parse, plan, describe.

Each rule bastion adds to the gateway group says, in its description, its label, its owner, when
it was added and (optionally) when it expires:

    bastion:office by alice at 2026-11-26T09:00:00Z until 2026-11-26T17:00Z

The same grammar covers the `me` rules that `bastion up` writes (which carry no expiry), so one
parser reads both. Expiry is enforced by pruning: `allow --prune`, and every mutating bastion
command on the gateway (`up`, `allow`, `allow --revoke`) prunes first; read-only commands
(`status`, `allow --list`) show expired rules as expired and never count them as access.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bastion.domain.cidr import coverage
from bastion.domain.errors import ConflictError, NotFoundError, UsageError
from bastion.domain.model import (
    LABEL_ME,
    RULE_PREFIX,
    Action,
    IngressRule,
    ObservedGateway,
    Plan,
    SecurityGroup,
)
from bastion.domain.rules import rule_description, rule_owner, ssh_permission

log = logging.getLogger(__name__)

LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
DEFAULT_LABEL = "adhoc"
DEFAULT_FOR = "8h"
EXPIRY_FORMAT = "%Y-%m-%dT%H:%MZ"
WHEN_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NOTE_RE = re.compile(
    rf"^{RULE_PREFIX}:(?P<label>[^\s:]+)(?: by (?P<owner>\S+))?(?: at (?P<at>\S+))?"
    r"(?: until (?P<until>\S+))?"
)
_DURATION_RE = re.compile(r"(\d{1,5})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class RuleNote:
    """What a bastion rule's description says about it."""

    label: str
    owner: str | None
    added_at: str | None
    expires_at: datetime | None


def parse_note(description: str) -> RuleNote | None:
    """Read label, owner, time added and expiry from a rule description; None if not bastion's."""
    match = _NOTE_RE.match(description)
    if not match:
        return None
    until = match.group("until")
    return RuleNote(
        label=match.group("label"),
        owner=match.group("owner"),
        added_at=match.group("at"),
        expires_at=parse_expiry(until) if until else None,
    )


def parse_expiry(text: str) -> datetime | None:
    """Parse an expiry written as `2026-11-27T03:00Z` (or with seconds); None if unreadable."""
    for fmt in (EXPIRY_FORMAT, WHEN_FORMAT):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def format_expiry(when: datetime) -> str:
    """Write an expiry in the rule-description format (UTC, minute precision)."""
    return when.astimezone(UTC).strftime(EXPIRY_FORMAT)


def parse_duration(text: str, option: str = "--for") -> timedelta | None:
    """Parse `--for` (or `option`): `90m`, `8h`, `7d`, or `never` (None: no expiry)."""
    value = text.strip().lower()
    if value == "never":
        return None
    match = _DURATION_RE.fullmatch(value)
    if not match or int(match.group(1)) == 0:
        raise UsageError(
            f"{option} {text!r} is not a duration; use e.g. 90m, 8h or 7d, or `never` for no expiry"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def expiry_after(now: datetime, duration: timedelta) -> datetime:
    """Return now + duration rounded up to the minute, so no rule ends earlier than asked."""
    end = (now + duration).astimezone(UTC)
    minutes = math.ceil(end.timestamp() / 60)
    return datetime.fromtimestamp(minutes * 60, UTC)


def expires_at(rule: IngressRule) -> datetime | None:
    """Return when a bastion rule expires (None: never, or not bastion's)."""
    note = parse_note(rule.description)
    return note.expires_at if note else None


def is_expired(rule: IngressRule, now: datetime) -> bool:
    """Tell whether a bastion rule's expiry has passed."""
    end = expires_at(rule)
    return end is not None and end <= now


def expired_rules(group: SecurityGroup | None, now: datetime) -> list[IngressRule]:
    """Return the gateway group's bastion ingress rules whose expiry has passed."""
    if group is None:
        return []
    return [r for r in group.ingress if r.label is not None and is_expired(r, now)]


def prune_actions(
    group: SecurityGroup | None, now: datetime, spare: Iterable[str] = ()
) -> tuple[SecurityGroup | None, tuple[Action, ...]]:
    """Plan removing expired rules; return the group as it will be, and the action.

    The one prune every bastion command runs first (`up` included): planners then see the
    group without its expired rules, so nothing is planned on top of a rule about to go.
    `spare` names rule ids the caller will renew instead of removing.
    """
    expired = [r for r in expired_rules(group, now) if r.rule_id not in set(spare)]
    if group is None or not expired:
        return group, ()
    gone = {r.rule_id for r in expired}
    action = Action(
        "prune_ingress",
        f"remove {len(expired)} expired rule(s) from {group.group_id}: "
        + ", ".join(f"{r.cidr} ({r.label})" for r in expired),
        {"group_id": group.group_id, "rule_ids": sorted(gone)},
    )
    pruned = replace(group, ingress=tuple(r for r in group.ingress if r.rule_id not in gone))
    return pruned, (action,)


def without_expired(observed: ObservedGateway, now: datetime) -> tuple[ObservedGateway, Plan]:
    """Return the gateway as it is once pruned, and the prune plan (for `up`)."""
    group, actions = prune_actions(observed.group, now)
    return replace(observed, group=group), Plan("prune", observed.name, actions)


def rule_view(rule: IngressRule, now: datetime, operator: str | None = None) -> dict[str, Any]:
    """Describe one ingress rule for people and scripts: owner, expiry, remaining lifetime."""
    note = parse_note(rule.description)
    end = note.expires_at if note else None
    remaining = None if end is None else max(0, int((end - now).total_seconds()))
    return {
        "rule_id": rule.rule_id,
        "cidr": rule.cidr,
        "source_group": rule.source_group,
        "port": rule.from_port,
        "label": rule.label,
        "owner": note.owner if note else None,
        "added_at": note.added_at if note else None,
        "expires_at": format_expiry(end) if end else None,
        "remaining_s": remaining,
        "remaining": human_remaining(remaining),
        "expired": end is not None and end <= now,
        "mine": bool(operator and note and note.owner == rule_owner(operator)),
    }


def human_remaining(seconds: int | None) -> str:
    """Write a remaining lifetime as `3h 20m`, `expired` or `no expiry`."""
    if seconds is None:
        return "no expiry"
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = math.ceil(rest / 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes or not parts else []
    return " ".join(parts)


def admits(rule: IngressRule, address: str, port: int, now: datetime) -> bool:
    """Tell whether a live (not expired) CIDR rule lets `address` reach tcp `port`."""
    if not rule.cidr or not rule.admits_port(port) or is_expired(rule, now):
        return False
    ip = ipaddress.ip_network(address, strict=False).network_address
    network = ipaddress.ip_network(rule.cidr, strict=False)
    return ip.version == network.version and ip in network


def _port_rules(group: SecurityGroup, port: int) -> list[IngressRule]:
    return [r for r in group.ingress if r.cidr and r.admits_port(port)]


# --- pure planners ---------------------------------------------------------------------------


def plan_allow(
    name: str,
    group: SecurityGroup,
    port: int,
    cidr: str,
    label: str,
    operator: str,
    now: datetime,
    until: datetime | None,
    force: bool = False,
) -> Plan:
    """Plan adding (or renewing) one rule on the gateway port, after pruning expired ones;
    refuse one that, with the live rules there, would admit the whole Internet."""
    live = [r for r in _port_rules(group, port) if not is_expired(r, now) and r.cidr != cidr]
    if live and coverage([cidr, *(str(r.cidr) for r in live)]).world_open:
        together = coverage([cidr, *(str(r.cidr) for r in live)]).describe()
        raise UsageError(
            f"{cidr} with the rules already on {group.group_id} ("
            + ", ".join(f"{r.cidr} {r.label or r.rule_id}" for r in live)
            + f") would open tcp/{port} to the whole Internet ({together}); "
            "`bastion allow` never does that: allow narrower ranges"
        )
    when = now.astimezone(UTC).strftime(WHEN_FORMAT)
    description = rule_description(label, operator, when, format_expiry(until) if until else None)
    same = [r for r in group.ingress if r.cidr == cidr and r.from_port == port == r.to_port]
    foreign = [r for r in same if r.label is None]
    if foreign:
        raise ConflictError(
            f"{cidr} already reaches tcp/{port} on {group.group_id} through a rule bastion did not "
            f"make ({foreign[0].rule_id}); bastion leaves it alone: remove it in the console "
            "first if you want it to expire"
        )
    owner = rule_owner(operator)
    others = [r for r in same if (parse_note(r.description) or _NO_NOTE).owner != owner]
    if others and not force:
        note = parse_note(others[0].description) or _NO_NOTE
        raise ConflictError(
            f"{cidr} is already allowed by {note.owner}'s rule {note.label!r}; pass --force to "
            "take it over with your label and expiry"
        )
    _, prune = prune_actions(group, now, spare=[r.rule_id for r in same])
    actions = list(prune)
    lifetime = f"until {format_expiry(until)}" if until else "with no expiry"
    if same:
        actions.append(
            Action(
                "renew_ingress",
                f"relabel the rule for {cidr} on {group.group_id} as {label!r} {lifetime}",
                {"group_id": group.group_id, "rule": same[0], "description": description},
            )
        )
        for extra in same[1:]:
            actions.append(
                Action(
                    "revoke_ingress",
                    f"remove the duplicate rule {extra.rule_id} for {cidr}",
                    {"group_id": group.group_id, "rule_ids": [extra.rule_id]},
                )
            )
    else:
        actions.append(
            Action(
                "authorize_ingress",
                f"allow tcp/{port} from {cidr} on {group.group_id} as {label!r} {lifetime}",
                {"group_id": group.group_id, "permission": ssh_permission(port, cidr, description)},
            )
        )
    return Plan("allow", name, tuple(actions))


_NO_NOTE = RuleNote("", None, None, None)


def plan_revoke(
    name: str,
    group: SecurityGroup,
    port: int,
    target: str,
    operator: str,
    caller: str | None,
    now: datetime,
    force: bool = False,
) -> Plan:
    """Plan removing the bastion rules named by label or CIDR, refusing to lock the caller out.

    Someone else's rule, or the last live rule that admits the caller, needs `force`; the
    label `me` names only the caller's own rule.
    """
    cidr = _as_cidr(target)
    matches = [
        r
        for r in group.ingress
        if r.cidr and ((cidr is not None and r.cidr == cidr) or r.label == target)
    ]
    owner = rule_owner(operator)
    if target == LABEL_ME:
        # Every operator has a `me` rule; `--revoke me` means the caller's own.
        matches = [r for r in matches if (parse_note(r.description) or _NO_NOTE).owner == owner]
        if not matches:
            raise NotFoundError(
                f"you ({owner}) have no rule labelled 'me' on {group.group_id}; see `bastion "
                "allow --list` (another operator's rule goes with --revoke CIDR --force)"
            )
    owned = [r for r in matches if r.label is not None]
    if not owned:
        if matches:
            raise ConflictError(
                f"the rule for {target} on {group.group_id} was not made by bastion; bastion "
                "never removes rules it did not make (remove it in the console)"
            )
        raise NotFoundError(
            f"no rule labelled or for {target!r} on {group.group_id}; see `bastion allow --list`"
        )
    theirs = [r for r in owned if (parse_note(r.description) or _NO_NOTE).owner != owner]
    if theirs and not force:
        notes = [parse_note(r.description) or _NO_NOTE for r in theirs]
        who = ", ".join(sorted({str(n.owner) for n in notes}))
        raise ConflictError(
            f"{len(theirs)} rule(s) for {target!r} belong to {who}; pass --force to revoke "
            "someone else's rule"
        )
    pruned, prune = prune_actions(group, now, spare=[r.rule_id for r in owned])
    assert pruned is not None
    going = {r.rule_id for r in owned}
    if not force:
        if caller is None:
            raise ConflictError(
                "could not detect your IP to make sure you keep access after the revoke; "
                "pass --force to revoke anyway"
            )
        before = [r for r in _port_rules(pruned, port) if admits(r, caller, port, now)]
        after = [r for r in before if r.rule_id not in going]
        if before and not after:
            raise ConflictError(
                f"revoking {target!r} removes the last rule that lets your IP {caller} reach "
                f"tcp/{port} on {group.group_id}, locking you out; pass --force if you mean it"
            )
    actions = [
        *prune,
        Action(
            "revoke_ingress",
            f"revoke {', '.join(f'{r.cidr} ({r.label})' for r in owned)} from {group.group_id}",
            {"group_id": group.group_id, "rule_ids": sorted(going)},
        ),
    ]
    return Plan("allow", name, tuple(actions))


def plan_prune(name: str, group: SecurityGroup | None, now: datetime) -> Plan:
    """Plan removing exactly the expired bastion rules."""
    return Plan("allow", name, prune_actions(group, now)[1])


def _as_cidr(target: str) -> str | None:
    try:
        network = ipaddress.ip_network(target.strip(), strict=False)
    except ValueError:
        return None
    return str(network)


def check_label(label: str) -> None:
    """Refuse a label that is not 1-32 lowercase letters, digits, dots, dashes or underscores."""
    if not LABEL_PATTERN.match(label):
        raise UsageError(
            f"label {label!r} is invalid; use 1-32 lowercase letters, digits, dots, dashes or "
            "underscores, starting with a letter or digit (e.g. office)"
        )
