"""What must change to cut a burnt gateway off: the rules that admit it, where its ACL denies go.

Pure: AWS-shaped dictionaries in (as DescribeSecurityGroups, DescribeNetworkAcls and
GetManagedPrefixListEntries return them), plans out. The burn use case reads and applies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# NACL rule numbers people may use; 32767 is the default "*" entry.
FIRST_RULE, LAST_RULE = 1, 32766
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_cidrs(addresses: Iterable[str | None]) -> list[str]:
    """Return each address as its host CIDR (/32 or /128, IPv6 compressed), once, in order."""
    found = [
        ipaddress.ip_network(a.split("/")[0]).with_prefixlen for a in addresses if a and a.strip()
    ]
    return list(dict.fromkeys(found))


def _network(cidr: str | None) -> _Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False) if cidr else None
    except ValueError:
        return None


def names_host(cidr: str | None, hosts: Sequence[str]) -> bool:
    """Tell whether `cidr` is exactly one of the host CIDRs `hosts` (however it is written)."""
    network = _network(cidr)
    return network is not None and network.with_prefixlen in hosts


def admitting_parts(
    permissions: Sequence[Mapping[str, Any]], group_ids: Sequence[str], hosts: Sequence[str]
) -> list[dict[str, Any]]:
    """Return the parts of `permissions` that admit `group_ids` or the `hosts`, ready to revoke.

    Descriptions are kept as described: moto matches them on revoke (AWS ignores them).
    """
    narrowed_all: list[dict[str, Any]] = []
    for permission in permissions:
        pairs = [
            {k: v for k, v in p.items() if k in ("GroupId", "UserId", "Description")}
            for p in permission.get("UserIdGroupPairs", [])
            if p.get("GroupId") in group_ids
        ]
        ranges = [
            {k: v for k, v in r.items() if k in ("CidrIp", "Description")}
            for r in permission.get("IpRanges", [])
            if names_host(r.get("CidrIp"), hosts)
        ]
        ranges6 = [
            {k: v for k, v in r.items() if k in ("CidrIpv6", "Description")}
            for r in permission.get("Ipv6Ranges", [])
            if names_host(r.get("CidrIpv6"), hosts)
        ]
        if not (pairs or ranges or ranges6):
            continue
        narrowed: dict[str, Any] = {"IpProtocol": permission["IpProtocol"]}
        for key in ("FromPort", "ToPort"):
            if key in permission:
                narrowed[key] = permission[key]
        for key, parts in (
            ("UserIdGroupPairs", pairs),
            ("IpRanges", ranges),
            ("Ipv6Ranges", ranges6),
        ):
            if parts:
                narrowed[key] = parts
        narrowed_all.append(narrowed)
    return narrowed_all


def referenced_prefix_lists(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the ids of the prefix lists any rule of `groups` names, in and out."""
    found = [
        p["PrefixListId"]
        for g in groups
        for key in ("IpPermissions", "IpPermissionsEgress")
        for permission in g.get(key, [])
        for p in permission.get("PrefixListIds", [])
        if p.get("PrefixListId")
    ]
    return list(dict.fromkeys(found))


def describe_permission(permission: Mapping[str, Any]) -> str:
    """Return one revoked permission as text: `tcp/22 from sg-1, 10.0.0.5/32`."""
    where = f"{permission['IpProtocol']}/{permission.get('FromPort', 'all')}"
    sources = [p["GroupId"] for p in permission.get("UserIdGroupPairs", [])]
    sources += [r["CidrIp"] for r in permission.get("IpRanges", [])]
    sources += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
    return f"{where} from {', '.join(sources)}"


@dataclass(frozen=True)
class AclDeny:
    """One deny entry containment adds (or found already in place)."""

    acl_id: str
    number: int
    egress: bool
    cidr: str

    def as_record(self) -> dict[str, Any]:
        """Return the entry as the incident record keeps it."""
        return {
            "acl_id": self.acl_id,
            "number": self.number,
            "egress": self.egress,
            "cidr": self.cidr,
        }


def entry_cidr(entry: Mapping[str, Any]) -> str | None:
    """Return the CIDR of an ACL entry, IPv4 or IPv6."""
    return entry.get("CidrBlock") or entry.get("Ipv6CidrBlock")


def first_allowing(entries: Sequence[Mapping[str, Any]], egress: bool, cidr: str) -> int:
    """Return the lowest number of an allow entry that matches traffic of `cidr` (or 32767)."""
    host = ipaddress.ip_network(cidr)
    numbers = [
        int(e["RuleNumber"])
        for e in entries
        if bool(e.get("Egress")) == egress
        and e.get("RuleAction") == "allow"
        and (network := _network(entry_cidr(e))) is not None
        and network.version == host.version
        and host.subnet_of(network)  # type: ignore[arg-type]
    ]
    return min(numbers, default=LAST_RULE + 1)


def effective_deny(entries: Sequence[Mapping[str, Any]], egress: bool, cidr: str) -> int | None:
    """Return the number of a deny entry for `cidr` evaluated before every allow, if any."""
    limit = first_allowing(entries, egress, cidr)
    numbers = [
        int(e["RuleNumber"])
        for e in entries
        if bool(e.get("Egress")) == egress
        and e.get("RuleAction") == "deny"
        and names_host(entry_cidr(e), [cidr])
        and int(e["RuleNumber"]) < limit
    ]
    return min(numbers, default=None)


@dataclass
class AclPlan:
    """The deny entries to add, those already in place, and those with no number free."""

    add: list[AclDeny]
    present: list[AclDeny]
    blocked: list[dict[str, Any]]


def plan_acl_denies(
    acls: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], cidrs: Sequence[str]
) -> AclPlan:
    """Place a deny for each host CIDR, both ways, in each ACL, before any allow that matches it.

    ACL entries are evaluated lowest number first, so a deny behind an allow-all never matches:
    each deny takes the lowest free number below the first allow entry that holds its address.
    When none is free, nothing is renumbered (moving an allow changes what others may reach):
    the entry is reported as blocked, with the allow in the way.
    """
    plan = AclPlan([], [], [])
    for acl_id, entries in acls:
        for egress in (False, True):
            taken = {int(e["RuleNumber"]) for e in entries if bool(e.get("Egress")) == egress}
            for cidr in cidrs:
                existing = effective_deny(entries, egress, cidr)
                if existing is not None:
                    plan.present.append(AclDeny(acl_id, existing, egress, cidr))
                    continue
                limit = first_allowing(entries, egress, cidr)
                number = next((n for n in range(FIRST_RULE, limit) if n not in taken), None)
                if number is None:
                    plan.blocked.append(
                        {
                            "acl_id": acl_id,
                            "egress": egress,
                            "cidr": cidr,
                            "allowed_by_rule": limit,
                            "why": f"no free rule number below {limit}, the first allow "
                            f"entry matching {cidr}; renumber the ACL by hand",
                        }
                    )
                    continue
                taken.add(number)
                plan.add.append(AclDeny(acl_id, number, egress, cidr))
    return plan


def unchecked_denies(
    acls: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], wanted: Sequence[AclDeny]
) -> list[AclDeny]:
    """Return the wanted denies that the ACLs as read back do not evaluate before every allow."""
    by_id = {acl_id: entries for acl_id, entries in acls}
    return [d for d in wanted if effective_deny(by_id.get(d.acl_id, []), d.egress, d.cidr) is None]


def prefix_list_hits(
    lists: Sequence[Mapping[str, Any]],
    entries: Mapping[str, Sequence[str]],
    hosts: Sequence[str],
) -> list[dict[str, Any]]:
    """Return each prefix list holding one of `hosts` as an entry: what to remove, who owns it."""
    hits = []
    for prefix_list in lists:
        list_id = prefix_list["PrefixListId"]
        held = [c for c in entries.get(list_id, []) if names_host(c, hosts)]
        if held:
            hits.append(
                {
                    "prefix_list_id": list_id,
                    "name": prefix_list.get("PrefixListName", ""),
                    "owner": prefix_list.get("OwnerId", ""),
                    "version": prefix_list.get("Version"),
                    "entries": held,
                    "aws_managed": prefix_list.get("OwnerId") == "AWS",
                }
            )
    return hits


def interface_hosts(pre: Mapping[str, Any]) -> list[str]:
    """Return the host CIDRs the VPC sees of the gateway: every interface's IPv4 and IPv6."""
    return host_cidrs(pre.get("addresses") or [pre.get("private_ip")])


def every_host(pre: Mapping[str, Any]) -> list[str]:
    """Return every host CIDR of the gateway, its public IPv4 addresses included."""
    public = pre.get("public_addresses") or [pre.get("public_ip")]
    return host_cidrs([*interface_hosts(pre), *public])
