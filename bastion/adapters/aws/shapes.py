"""AWS's dictionaries in, bastion's frozen model out (and tags the other way)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bastion.domain.model import IngressRule, KeyPairInfo, SecurityGroup
from bastion.domain.tags import TAG_KEY_FINGERPRINT


def tag_dict(items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in items or ()}


def instance_groups(instance: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the instance's groups from every interface (moto fills only the interfaces)."""
    ids = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    for interface in instance.get("NetworkInterfaces", []):
        ids.extend(g["GroupId"] for g in interface.get("Groups", []))
    return tuple(dict.fromkeys(ids))


def interface_addresses(instance: Mapping[str, Any]) -> tuple[str, ...]:
    """Return every private IPv4 (primary and secondary) and IPv6 address of every interface."""
    found = [instance.get("PrivateIpAddress")]
    for interface in instance.get("NetworkInterfaces", []):
        found.append(interface.get("PrivateIpAddress"))
        found += [a.get("PrivateIpAddress") for a in interface.get("PrivateIpAddresses", [])]
        found += [a.get("Ipv6Address") for a in interface.get("Ipv6Addresses", [])]
    return tuple(dict.fromkeys(str(a) for a in found if a))


def public_addresses(instance: Mapping[str, Any]) -> tuple[str, ...]:
    """Return every public IPv4 address mapped to the instance's interfaces."""
    found = [instance.get("PublicIpAddress")]
    for interface in instance.get("NetworkInterfaces", []):
        found.append((interface.get("Association") or {}).get("PublicIp"))
        found += [
            (a.get("Association") or {}).get("PublicIp")
            for a in interface.get("PrivateIpAddresses", [])
        ]
    return tuple(dict.fromkeys(str(a) for a in found if a))


def tag_spec(resource: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def key_pair(k: Mapping[str, Any]) -> KeyPairInfo:
    return KeyPairInfo(
        name=k["KeyName"],
        key_pair_id=k.get("KeyPairId", ""),
        fingerprint=tag_dict(k.get("Tags")).get(TAG_KEY_FINGERPRINT, ""),
        created_at=k.get("CreateTime"),
    )


def assemble_groups(
    groups: Sequence[Mapping[str, Any]], rules: Sequence[Mapping[str, Any]]
) -> list[SecurityGroup]:
    """Join groups and their rules (as DescribeSecurityGroupRules returns them)."""
    by_group: dict[str, tuple[list[IngressRule], list[IngressRule]]] = {
        g["GroupId"]: ([], []) for g in groups
    }
    # moto leaves out the description of group-reference rules in DescribeSecurityGroupRules;
    # the group's own IpPermissions carry it, so fill it in from there.
    pair_notes: dict[tuple[str, bool, str, int, int, str], str] = {}
    for g in groups:
        for egress, key in ((False, "IpPermissions"), (True, "IpPermissionsEgress")):
            for p in g.get(key, []):
                for pair in p.get("UserIdGroupPairs", []):
                    if pair.get("Description"):
                        pair_notes[
                            (
                                g["GroupId"],
                                egress,
                                str(p.get("IpProtocol", "")),
                                int(p.get("FromPort", -1)),
                                int(p.get("ToPort", -1)),
                                str(pair.get("GroupId", "")),
                            )
                        ] = str(pair["Description"])
    for r in rules:
        if r["GroupId"] not in by_group:
            continue
        referenced = (r.get("ReferencedGroupInfo") or {}).get("GroupId")
        description = r.get("Description", "") or ""
        if referenced and not description:
            description = pair_notes.get(
                (
                    r["GroupId"],
                    bool(r.get("IsEgress")),
                    str(r.get("IpProtocol", "")),
                    int(r.get("FromPort", -1)),
                    int(r.get("ToPort", -1)),
                    referenced,
                ),
                "",
            )
        rule = IngressRule(
            rule_id=r["SecurityGroupRuleId"],
            protocol=str(r.get("IpProtocol", "")),
            from_port=int(r.get("FromPort", -1)),
            to_port=int(r.get("ToPort", -1)),
            cidr=r.get("CidrIpv4") or r.get("CidrIpv6"),
            source_group=referenced,
            description=description,
        )
        by_group[r["GroupId"]][1 if r.get("IsEgress") else 0].append(rule)
    return [
        SecurityGroup(
            group_id=g["GroupId"],
            name=g["GroupName"],
            vpc_id=g.get("VpcId", ""),
            tags=tag_dict(g.get("Tags")),
            ingress=tuple(by_group[g["GroupId"]][0]),
            egress=tuple(by_group[g["GroupId"]][1]),
        )
        for g in groups
    ]
