"""Subnets, network ACLs, interfaces and Elastic IPs: the network below the groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.adapters.aws.errors import translated
from bastion.domain.errors import NotFoundError
from bastion.domain.model import Subnet

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


class Network:
    """The VPC side of one account and region."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

    def subnet(self, subnet_id: str | None) -> Subnet:
        """Return `subnet_id`, or the default VPC's first default subnet."""
        with translated("looking up the subnet"):
            if subnet_id:
                subnets = self.ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
            else:
                subnets = self.ec2.describe_subnets(
                    Filters=[{"Name": "default-for-az", "Values": ["true"]}]
                )["Subnets"]
        if not subnets:
            raise NotFoundError(
                "no default subnet in this region; pass --subnet with a public subnet id"
            )
        chosen = sorted(subnets, key=lambda s: s.get("AvailabilityZone", ""))[0]
        with translated("looking up the VPC"):
            vpc = self.ec2.describe_vpcs(VpcIds=[chosen["VpcId"]])["Vpcs"][0]
        return Subnet(chosen["SubnetId"], chosen["VpcId"], vpc["CidrBlock"], _cidrs_of(vpc))

    def vpc_network_acls(self, vpc_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """Return every network ACL of a VPC with its entries (one call)."""
        with translated(f"reading the network ACLs of {vpc_id}"):
            acls = self.ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])[
                "NetworkAcls"
            ]
        return [(a["NetworkAclId"], [dict(e) for e in a.get("Entries", [])]) for a in acls]

    def add_acl_deny(self, acl_id: str, number: int, egress: bool, cidr: str) -> None:
        """Add a deny entry for all traffic to or from `cidr`."""
        with translated(f"adding deny rule {number} to {acl_id}"):
            self.ec2.create_network_acl_entry(
                NetworkAclId=acl_id,
                RuleNumber=number,
                Protocol="-1",
                RuleAction="deny",
                Egress=egress,
                CidrBlock=cidr,
            )

    def delete_acl_entry(self, acl_id: str, number: int, egress: bool) -> None:
        """Remove one ACL entry."""
        with translated(f"removing rule {number} from {acl_id}"):
            self.ec2.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=number, Egress=egress)

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
