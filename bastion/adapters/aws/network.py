"""Subnets, network ACLs, interfaces and Elastic IPs: the network below the groups."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.adapters.aws.errors import translated
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import Subnet

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


class Network:
    """The VPC side of one account and region."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

    def subnet(self, subnet: str | None, vpc_id: str | None = None) -> Subnet:
        """Return `subnet` (an id or a Name tag), or a default one (of `vpc_id` when given)."""
        chosen = self._named_subnet(subnet) if subnet else self._default_subnet(vpc_id)
        with translated("looking up the VPC"):
            vpc = self.ec2.describe_vpcs(VpcIds=[chosen["VpcId"]])["Vpcs"][0]
        return Subnet(chosen["SubnetId"], chosen["VpcId"], vpc["CidrBlock"], _cidrs_of(vpc))

    def _named_subnet(self, subnet: str) -> Any:
        by_id = re.fullmatch(r"subnet-[0-9a-f]{8,17}", subnet) is not None
        try:  # translated first, so that AWS's InvalidSubnetID.NotFound arrives as NotFoundError
            with translated(f"looking up subnet {subnet}"):
                if by_id:
                    found = self.ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
                else:
                    found = self.ec2.describe_subnets(
                        Filters=[{"Name": "tag:Name", "Values": [subnet]}]
                    )["Subnets"]
        except NotFoundError:
            found = []
        if not found:
            raise NotFoundError(
                f"subnet {subnet!r} not found in this region; check --subnet (an id like "
                "subnet-0abc1234 or a subnet's Name tag) and --region"
            )
        if len(found) > 1:
            listed = ", ".join(f"{s['SubnetId']} in {s['VpcId']}" for s in found)
            raise UsageError(
                f"{len(found)} subnets are named {subnet!r} ({listed}); pass --subnet with the id"
            )
        return found[0]

    def _default_subnet(self, vpc_id: str | None) -> Any:
        with translated("looking up the subnet"):
            if vpc_id:
                subnets = self.ec2.describe_subnets(
                    Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
                )["Subnets"]
            else:
                subnets = self.ec2.describe_subnets(
                    Filters=[{"Name": "default-for-az", "Values": ["true"]}]
                )["Subnets"]
        if not subnets:
            where = f"VPC {vpc_id}" if vpc_id else "this region's default VPC"
            raise NotFoundError(
                f"no subnet in {where}; pass --subnet with a public subnet's id or Name tag"
            )
        # In the app's VPC: its default subnets first, then those that give public IPs.
        return sorted(
            subnets,
            key=lambda s: (
                not s.get("DefaultForAz", False),
                not s.get("MapPublicIpOnLaunch", False),
                s.get("AvailabilityZone", ""),
                s["SubnetId"],
            ),
        )[0]

    def routes_to_internet(self, subnet_id: str, vpc_id: str) -> bool:
        """Return whether the subnet's route table sends 0.0.0.0/0 to an internet gateway."""
        with translated(f"reading the route table of {subnet_id}"):
            tables = self.ec2.describe_route_tables(
                Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
            )["RouteTables"]
            if not tables:  # no table of its own: the VPC's main one applies
                tables = self.ec2.describe_route_tables(
                    Filters=[
                        {"Name": "vpc-id", "Values": [vpc_id]},
                        {"Name": "association.main", "Values": ["true"]},
                    ]
                )["RouteTables"]
        return any(
            str(route.get("GatewayId", "")).startswith("igw-")
            and route.get("DestinationCidrBlock") == "0.0.0.0/0"
            for table in tables
            for route in table.get("Routes", [])
        )

    def vpc_network_acls(self, vpc_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """Return every network ACL of a VPC with its entries (one call)."""
        with translated(f"reading the network ACLs of {vpc_id}"):
            acls = self.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                "NetworkAcls"
            ]
        return [(a["NetworkAclId"], [dict(e) for e in a.get("Entries", [])]) for a in acls]

    def add_acl_deny(self, acl_id: str, number: int, egress: bool, cidr: str) -> None:
        """Add a deny entry for all traffic to or from `cidr` (IPv4 or IPv6)."""
        block = {"Ipv6CidrBlock": cidr} if ":" in cidr else {"CidrBlock": cidr}
        with translated(f"adding deny rule {number} for {cidr} to {acl_id}"):
            self.ec2.create_network_acl_entry(
                NetworkAclId=acl_id,
                RuleNumber=number,
                Protocol="-1",
                RuleAction="deny",
                Egress=egress,
                **block,  # type: ignore[arg-type]
            )

    def prefix_lists(self, list_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Return the named managed prefix lists: id, name, owner ("AWS" for AWS's own), version."""
        with translated("reading managed prefix lists"):
            found = self.ec2.describe_managed_prefix_lists(PrefixListIds=list(list_ids))
        return [dict(p) for p in found["PrefixLists"]]

    def prefix_list_entries(self, list_id: str) -> list[str]:
        """Return the CIDRs a managed prefix list holds."""
        with translated(f"reading the entries of prefix list {list_id}"):
            pages = self.ec2.get_paginator("get_managed_prefix_list_entries").paginate(
                PrefixListId=list_id
            )
            return [str(e["Cidr"]) for page in pages for e in page.get("Entries", [])]

    def remove_prefix_list_entries(self, list_id: str, version: int, cidrs: Sequence[str]) -> None:
        """Remove entries from a customer-managed prefix list (at the version read).

        moto 5 accepts a stale version and changes AWS-managed lists too; AWS refuses both, so
        the caller checks the owner first and reports a refusal rather than failing.
        """
        with translated(f"removing {', '.join(cidrs)} from prefix list {list_id}"):
            self.ec2.modify_managed_prefix_list(
                PrefixListId=list_id,
                CurrentVersion=version,
                RemoveEntries=[{"Cidr": c} for c in cidrs],
            )

    def delete_acl_entry(self, acl_id: str, number: int, egress: bool) -> None:
        """Remove one ACL entry."""
        with translated(f"removing rule {number} from {acl_id}"):
            self.ec2.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=number, Egress=egress)

    def interface_groups(self, instance_id: str) -> dict[str, list[str]]:
        """Return the security groups of every interface attached to an instance now (one read).

        By attachment, not by id: an interface detached since is no error, one attached since
        is seen.
        """
        with translated(f"reading the groups of the interfaces of {instance_id}"):
            found = self.ec2.describe_network_interfaces(
                Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}]
            )
        return {
            n["NetworkInterfaceId"]: [g["GroupId"] for g in n.get("Groups", [])]
            for n in found["NetworkInterfaces"]
        }

    def set_interface_groups(self, interface_id: str, group_ids: Sequence[str]) -> None:
        """Replace the security groups of one network interface."""
        with translated(f"changing the groups of {interface_id}"):
            self.ec2.modify_network_interface_attribute(
                NetworkInterfaceId=interface_id, Groups=list(group_ids)
            )

    def addresses(self, instance_id: str) -> list[dict[str, str]]:
        """Return the Elastic IPs associated with an instance."""
        with translated(f"listing Elastic IPs of {instance_id}"):
            found = self.ec2.describe_addresses(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}]
            )["Addresses"]
        return [{k: str(v) for k, v in a.items() if isinstance(v, str)} for a in found]

    def disassociate_address(self, association_id: str) -> None:
        """Detach an Elastic IP, keeping its allocation."""
        with translated(f"detaching Elastic IP {association_id}"):
            self.ec2.disassociate_address(AssociationId=association_id)

    def associate_address(self, allocation_id: str, instance_id: str) -> None:
        """Attach a kept Elastic IP to an instance."""
        with translated(f"attaching Elastic IP {allocation_id} to {instance_id}"):
            self.ec2.associate_address(AllocationId=allocation_id, InstanceId=instance_id)


def _cidrs_of(vpc: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the VPC's associated IPv4 and IPv6 CIDRs, its primary IPv4 CIDR first."""
    live = ("associated", "associating")
    found = [str(vpc["CidrBlock"])]
    for entry in vpc.get("CidrBlockAssociationSet", []):
        if entry.get("CidrBlockState", {}).get("State", "associated") in live:
            found.append(str(entry["CidrBlock"]))
    for entry in vpc.get("Ipv6CidrBlockAssociationSet", []):
        if entry.get("Ipv6CidrBlockState", {}).get("State", "associated") in live:
            found.append(str(entry["Ipv6CidrBlock"]))
    return tuple(dict.fromkeys(found))
