"""Security groups and their rules: the only door to EC2's group and rule calls."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.adapters.aws.errors import translated
from bastion.adapters.aws.shapes import assemble_groups, tag_spec
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import IngressRule, SecurityGroup
from bastion.domain.tags import TAG_NAME, TAG_ROLE

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


class SecurityGroups:
    """Security groups of one account and region, read with their rules."""

    def __init__(self, ec2: EC2Client, region: str) -> None:
        self.ec2 = ec2
        self.region = region

    def _groups(self, **kwargs: Any) -> list[SecurityGroup]:
        groups = self.ec2.describe_security_groups(**kwargs)["SecurityGroups"]
        if not groups:
            return []
        ids = [g["GroupId"] for g in groups]
        rules = self.ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": ids}]
        )["SecurityGroupRules"]
        return assemble_groups(groups, rules)

    def find_gateway_groups(self, name: str) -> list[SecurityGroup]:
        """Return every gateway group tagged for gateway `name`, with rules."""
        with translated("listing gateway security groups"):
            return self._groups(
                Filters=[
                    {"Name": f"tag:{TAG_NAME}", "Values": [name]},
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["gateway-group"]},
                ]
            )

    def group(self, id_or_name: str, vpc_id: str | None = None) -> SecurityGroup:
        """Return one group by id or name, with rules."""
        if re.fullmatch(r"sg-[0-9a-f]{8,17}", id_or_name):
            try:  # translated first, so that InvalidGroup.NotFound arrives as NotFoundError
                with translated(f"looking up security group {id_or_name}"):
                    found = self._groups(GroupIds=[id_or_name])
            except NotFoundError:
                found = []
        else:
            with translated(f"looking up security group {id_or_name}"):
                filters = [{"Name": "group-name", "Values": [id_or_name]}]
                if vpc_id:
                    filters.append({"Name": "vpc-id", "Values": [vpc_id]})
                found = self._groups(Filters=filters)
        if not found:
            raise NotFoundError(
                f"security group {id_or_name!r} not found in {self.region}; "
                "check --app-sg (an id like sg-0abc or a group name) and --region"
            )
        if len(found) > 1:
            listed = ", ".join(f"{g.group_id} in {g.vpc_id}" for g in found)
            raise UsageError(
                f"{len(found)} security groups are named {id_or_name!r} ({listed}); "
                "pass --app-sg with the group id, or a --subnet in the VPC you mean"
            )
        return found[0]

    def all_groups(self) -> list[SecurityGroup]:
        """Return every security group of the region with its rules (two paginated reads)."""
        with translated("listing security groups"):
            groups = [
                g
                for page in self.ec2.get_paginator("describe_security_groups").paginate()
                for g in page["SecurityGroups"]
            ]
            rules = [
                r
                for page in self.ec2.get_paginator("describe_security_group_rules").paginate()
                for r in page["SecurityGroupRules"]
            ]
        return assemble_groups(groups, rules)

    def find_group_by_name(self, group_name: str, vpc_id: str) -> str | None:
        """Return the id of the group named `group_name` in `vpc_id`, if it exists."""
        with translated(f"looking up group {group_name}"):
            found = self.ec2.describe_security_groups(
                Filters=[
                    {"Name": "group-name", "Values": [group_name]},
                    {"Name": "vpc-id", "Values": [vpc_id]},
                ]
            )["SecurityGroups"]
        return found[0]["GroupId"] if found else None

    def group_referencing(self, group_ids: Sequence[str]) -> str | None:
        """Return the id of a group whose ingress references one of `group_ids`, if any."""
        with translated("looking for groups that trust the gateway"):
            found = self.ec2.describe_security_groups(
                Filters=[{"Name": "ip-permission.group-id", "Values": list(group_ids)}]
            )["SecurityGroups"]
        others = [g["GroupId"] for g in found if g["GroupId"] not in group_ids]
        return others[0] if others else None

    def groups_admitting(
        self, group_ids: Sequence[str], cidrs: Sequence[str] = ()
    ) -> list[tuple[str, list[IngressRule]]]:
        """Return each other group with the ingress rules that admit `group_ids` or `cidrs`."""
        result: dict[str, list[IngressRule]] = {}
        with translated("looking for groups that trust the gateway"):
            searches = [("ip-permission.group-id", list(group_ids))]
            if cidrs:
                searches.append(("ip-permission.cidr", list(cidrs)))
            for filter_name, values in searches:
                for group in self._groups(Filters=[{"Name": filter_name, "Values": values}]):
                    if group.group_id in group_ids:
                        continue
                    rules = [
                        r
                        for r in group.ingress
                        if r.source_group in group_ids or (r.cidr is not None and r.cidr in cidrs)
                    ]
                    if rules:
                        known = result.setdefault(group.group_id, [])
                        known.extend(r for r in rules if r not in known)
        return list(result.items())

    def vpc_group_permissions(self, vpc_id: str) -> list[dict[str, Any]]:
        """Return every group of a VPC as described: its id and its rules in and out (one read).

        What containment narrows and hands to `revoke_permissions`: revoking by permission
        needs no rule ids, so no second read.
        """
        with translated(f"reading the security groups of {vpc_id}"):
            return [
                {
                    "GroupId": g["GroupId"],
                    "IpPermissions": g.get("IpPermissions", []),
                    "IpPermissionsEgress": g.get("IpPermissionsEgress", []),
                }
                for page in self.ec2.get_paginator("describe_security_groups").paginate(
                    Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
                )
                for g in page["SecurityGroups"]
            ]

    def revoke_permissions(
        self, group_id: str, permissions: Sequence[Mapping[str, Any]], egress: bool
    ) -> None:
        """Remove rules from a group by what they admit (no rule ids needed)."""
        with translated(f"removing rules from {group_id}"):
            if egress:
                self.ec2.revoke_security_group_egress(
                    GroupId=group_id,
                    IpPermissions=list(permissions),  # type: ignore[arg-type]
                )
            else:
                self.ec2.revoke_security_group_ingress(
                    GroupId=group_id,
                    IpPermissions=list(permissions),  # type: ignore[arg-type]
                )

    def create_group(
        self, group_name: str, description: str, vpc_id: str, tags: Mapping[str, str]
    ) -> str:
        """Create a security group and return its id."""
        with translated(f"creating security group {group_name}"):
            reply = self.ec2.create_security_group(
                GroupName=group_name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[tag_spec("security-group", tags)],  # type: ignore[list-item]
            )
        return str(reply["GroupId"])

    def delete_group(self, group_id: str) -> None:
        """Delete a security group."""
        with translated(f"deleting security group {group_id}"):
            self.ec2.delete_security_group(GroupId=group_id)

    def authorize(self, group_id: str, permission: Mapping[str, Any], egress: bool) -> None:
        """Add one rule (an IpPermissions item) to a group."""
        with translated(f"adding a rule to {group_id}"):
            if egress:
                self.ec2.authorize_security_group_egress(
                    GroupId=group_id,
                    IpPermissions=[permission],  # type: ignore[list-item]
                )
            else:
                self.ec2.authorize_security_group_ingress(
                    GroupId=group_id,
                    IpPermissions=[permission],  # type: ignore[list-item]
                )

    def revoke(self, group_id: str, rule_ids: Sequence[str], egress: bool) -> None:
        """Remove rules from a group by rule id."""
        with translated(f"removing rules {', '.join(rule_ids)} from {group_id}"):
            if egress:
                self.ec2.revoke_security_group_egress(
                    GroupId=group_id, SecurityGroupRuleIds=list(rule_ids)
                )
            else:
                self.ec2.revoke_security_group_ingress(
                    GroupId=group_id, SecurityGroupRuleIds=list(rule_ids)
                )

    def set_rule_description(self, group_id: str, rule: IngressRule, description: str) -> None:
        """Rewrite one ingress rule's description in place (no gap in access)."""
        request: dict[str, Any] = {
            "IpProtocol": rule.protocol,
            "FromPort": rule.from_port,
            "ToPort": rule.to_port,
            "Description": description,
        }
        if rule.cidr:
            request["CidrIpv6" if ":" in rule.cidr else "CidrIpv4"] = rule.cidr
        elif rule.source_group:
            request["ReferencedGroupId"] = rule.source_group
        with translated(f"updating rule {rule.rule_id} of {group_id}"):
            self.ec2.modify_security_group_rules(
                GroupId=group_id,
                SecurityGroupRules=[
                    {"SecurityGroupRuleId": rule.rule_id, "SecurityGroupRule": request}  # type: ignore[typeddict-item]
                ],
            )
