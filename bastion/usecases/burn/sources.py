"""What in the VPC admits the burnt gateway: rules in and out, and prefix lists holding it.

Shared by containment (which revokes) and the dry run (which lists what it would revoke).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bastion.domain.containment import (
    admitting_parts,
    describe_permission,
    every_host,
    prefix_list_hits,
    referenced_prefix_lists,
)
from bastion.domain.errors import AwsAuthError, BastionError
from bastion.usecases.ports import Cloud

AtOnce = Callable[..., list[Any]]


class Revoke(NamedTuple):
    """The parts of one group's rules (one direction) that admit the gateway."""

    group_id: str
    egress: bool
    permissions: list[dict[str, Any]]

    def as_record(self) -> dict[str, Any]:
        """Return it as the incident record keeps it."""
        return {
            "group_id": self.group_id,
            "direction": "egress" if self.egress else "ingress",
            "rules": [describe_permission(p) for p in self.permissions],
        }


@dataclass
class Admitting:
    """Every rule of the VPC that admits the gateway, and the prefix lists its rules name."""

    hosts: list[str]
    revokes: list[Revoke] = field(default_factory=list)
    prefix_lists: list[str] = field(default_factory=list)
    # Groups whose ingress named the gateway's groups: the app groups, re-pointed on relaunch.
    trusting_groups: list[str] = field(default_factory=list)


def admitting_rules(aws: Cloud, pre: Mapping[str, Any]) -> Admitting:
    """Return what in the gateway's VPC admits its groups or any of its addresses (one read)."""
    own = list(pre["security_group_ids"])
    found = Admitting(every_host(pre))
    groups = [g for g in aws.groups.vpc_group_permissions(pre["vpc_id"]) if g["GroupId"] not in own]
    for group in groups:
        for egress, key in ((False, "IpPermissions"), (True, "IpPermissionsEgress")):
            parts = admitting_parts(group[key], own, found.hosts)
            if not parts:
                continue
            found.revokes.append(Revoke(group["GroupId"], egress, parts))
            if not egress and any(p.get("UserIdGroupPairs") for p in parts):
                found.trusting_groups.append(group["GroupId"])
    found.prefix_lists = referenced_prefix_lists(groups)
    return found


def revoke_all(aws: Cloud, revokes: Sequence[Revoke], at_once: AtOnce) -> list[dict[str, Any]]:
    """Revoke every found part at once; return the egress revokes AWS refused.

    The documented policy lets bastion change egress only on its own groups, so a refused
    egress revoke on another group is reported, not fatal (ingress and the ACL denies still cut
    the gateway off); a refused ingress revoke fails containment, as the README says.
    """
    refused: list[dict[str, Any]] = []

    def revoke(r: Revoke) -> None:
        try:
            aws.groups.revoke_permissions(r.group_id, r.permissions, egress=r.egress)
        except AwsAuthError as exc:
            if not r.egress:
                raise
            refused.append({**r.as_record(), "why": str(exc)})

    at_once(*(lambda r=r: revoke(r) for r in revokes))
    return refused


def _or_error(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except BastionError as exc:
        return exc


def prefix_list_findings(
    aws: Cloud, list_ids: Sequence[str], hosts: Sequence[str], at_once: AtOnce
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the prefix lists holding the gateway's addresses, and those that could not be read."""
    if not list_ids:
        return [], []
    network = aws.network
    described, *entries = at_once(
        lambda: _or_error(lambda: network.prefix_lists(list_ids)),
        *(lambda i=i: _or_error(lambda: network.prefix_list_entries(i)) for i in list_ids),
    )
    unread = [
        {"prefix_list_id": i, "entries": [], "why": f"could not be read: {e}"}
        for i, e in zip(list_ids, entries, strict=True)
        if isinstance(e, BastionError)
    ]
    if isinstance(described, BastionError):
        described = [{"PrefixListId": i} for i in list_ids]  # owner unknown: try to change it
    held = {i: e for i, e in zip(list_ids, entries, strict=True) if isinstance(e, list)}
    return prefix_list_hits(described, held, hosts), unread


def clear_prefix_lists(
    aws: Cloud, list_ids: Sequence[str], hosts: Sequence[str], at_once: AtOnce
) -> dict[str, list[dict[str, Any]]]:
    """Remove the gateway's entries from the prefix lists bastion may change; report the rest."""
    hits, left = prefix_list_findings(aws, list_ids, hosts, at_once)
    changed: list[dict[str, Any]] = []

    def remove(hit: dict[str, Any]) -> None:
        if hit["aws_managed"]:
            left.append(
                {
                    **hit,
                    "why": "AWS-managed: bastion cannot change it; the rules naming it "
                    "still admit these entries (revoke those rules by hand if they must go)",
                }
            )
            return
        try:
            aws.network.remove_prefix_list_entries(
                hit["prefix_list_id"], int(hit["version"] or 0), hit["entries"]
            )
        except BastionError as exc:
            left.append({**hit, "why": f"could not be changed: {exc}"})
            return
        changed.append(hit)

    at_once(*(lambda h=h: remove(h) for h in hits))
    return {"changed": changed, "left": left}
