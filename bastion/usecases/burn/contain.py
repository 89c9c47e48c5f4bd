"""Contain: from one describe of the gateway, and before anything slow, cut it off."""

from __future__ import annotations

from typing import Any

from bastion.domain.incident import CONTAIN
from bastion.usecases.burn.state import Phase


class Containment(Phase):
    """Revoke what trusts the gateway, deny it in the ACLs, isolate it, detach its address."""

    steps = CONTAIN

    def contain_app_ssh(self) -> dict[str, Any]:
        """Revoke every rule that admits the gateway's groups or its addresses."""
        aws = self.ctx.aws
        revoked = []
        own = self.pre["security_group_ids"]
        addresses = [
            f"{ip}/32" for ip in (self.pre.get("private_ip"), self.pre.get("public_ip")) if ip
        ]
        for group_id, rules in aws.groups.groups_admitting(own, addresses):
            aws.groups.revoke(group_id, [r.rule_id for r in rules], egress=False)
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
        for acl_id, entries in self.ctx.aws.network.vpc_network_acls(self.pre["vpc_id"]):
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
                self.ctx.aws.network.add_acl_deny(acl_id, number, egress, cidr)
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
        aws = self.ctx.aws
        name = self.state.group_name(kind)
        vpc = self.pre["vpc_id"]
        existing = aws.groups.find_group_by_name(name, vpc)
        if existing:
            return existing
        group_id = aws.groups.create_group(
            name,
            f"bastion incident {self.incident.incident_id}: {kind}",
            vpc,
            self.state.incident_tags(kind),
        )
        if kind == "open":
            for cidr_key, cidr in (
                ("IpRanges", {"CidrIp": "0.0.0.0/0"}),
                ("Ipv6Ranges", {"CidrIpv6": "::/0"}),
            ):
                aws.groups.authorize(group_id, {"IpProtocol": "-1", cidr_key: [cidr]}, egress=False)
        else:
            default = [r.rule_id for r in aws.groups.group(group_id).egress]
            if default:
                aws.groups.revoke(group_id, default, egress=True)
        return group_id

    def _interfaces_in(self, group_id: str) -> bool:
        if self.instance is None:
            return True
        current = self.ctx.aws.compute.instance(self.instance.instance_id)
        return set(current.security_group_ids) == {group_id}

    def contain_open_group(self) -> dict[str, Any]:
        """Swap every interface into an allow-all group, so tracked flows become untracked."""
        isolation = self.ctx.aws.groups.find_group_by_name(
            self.state.group_name("isolate"), self.pre["vpc_id"]
        )
        if isolation and self._interfaces_in(isolation):
            return {"skipped": "already isolated"}  # never undo containment on a resume
        group_id = self._ensure_group("open")
        self.incident.containment["open_group"] = group_id
        for interface in self.pre["interface_ids"]:
            self.ctx.aws.network.set_interface_groups(interface, [group_id])
        return {"group_id": group_id}

    def contain_isolation_group(self) -> dict[str, Any]:
        """Swap every interface into an empty group: no traffic in or out."""
        group_id = self._ensure_group("isolate")
        self.incident.containment["isolation_group"] = group_id
        for interface in self.pre["interface_ids"]:
            self.ctx.aws.network.set_interface_groups(interface, [group_id])
        return {"group_id": group_id}

    def contain_elastic_ip(self) -> dict[str, Any]:
        """Detach Elastic IPs, keeping the allocations for the new gateway."""
        kept = self.incident.containment.setdefault("elastic_ips", [])
        for address in self.ctx.aws.network.addresses(self.pre["instance_id"]):
            self.ctx.aws.network.disassociate_address(address["AssociationId"])
            if address["AllocationId"] not in kept:
                kept.append(address["AllocationId"])
        return {"kept": kept}
