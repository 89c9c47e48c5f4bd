"""The only importer of boto3/botocore: EC2 and SSM calls, with errors made human.

Each method is one AWS conversation with no policy in it; planners decide, this executes.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.domain.errors import AwsAuthError, AwsError, NotFoundError, UsageError
from bastion.domain.model import (
    LIVE_STATES,
    TAG_KEY_FINGERPRINT,
    TAG_NAME,
    TAG_ROLE,
    IngressRule,
    InstanceInfo,
    KeyPairInfo,
    SecurityGroup,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

log = logging.getLogger(__name__)

AUTH_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "AccessDenied",
        "AccessDeniedException",
        "OptInRequired",
    }
)
LIMIT_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "SecurityGroupLimitExceeded",
        "KeyPairLimitExceeded",
        "InsufficientInstanceCapacity",
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
    }
)
LIMIT_HINTS = {
    "InstanceLimitExceeded": "terminate unused instances or ask AWS for a higher limit",
    "VcpuLimitExceeded": "terminate unused instances or request a vCPU quota increase",
    "InsufficientInstanceCapacity": "try another --instance-type or --subnet in another zone",
    "RequestLimitExceeded": "AWS kept throttling after retries; wait a minute and rerun",
}
MUTATING_PREFIXES = (
    "Create",
    "Delete",
    "Import",
    "Run",
    "Start",
    "Stop",
    "Terminate",
    "Authorize",
    "Revoke",
    "Modify",
    "Associate",
    "Disassociate",
    "Replace",
)


def is_mutating(operation: str) -> bool:
    """Tell whether an EC2 operation name changes anything."""
    return operation.startswith(MUTATING_PREFIXES)


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn botocore failures into `BastionError`s that say what to do."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )
    from botocore.parsers import ResponseParserError

    try:
        yield
    except ResponseParserError as exc:
        raise AwsError(f"{doing}: the endpoint sent an unreadable answer; retry shortly") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", str(exc))
        if code in AUTH_CODES:
            raise AwsAuthError(
                f"{doing}: AWS denied it ({code}: {message}); "
                "check the credentials' IAM permissions or pick another --profile"
            ) from exc
        if code in LIMIT_CODES:
            hint = LIMIT_HINTS.get(code, "raise the limit or remove unused resources")
            raise AwsError(f"{doing}: {code}: {message}; {hint}") from exc
        if code.endswith("NotFound") or code.endswith(".Malformed"):
            raise NotFoundError(f"{doing}: {code}: {message}") from exc
        raise AwsError(f"{doing}: {code}: {message}") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise AwsAuthError(
            "no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile"
        ) from exc
    except ProfileNotFound as exc:
        raise AwsAuthError(f"{exc}; list profiles with `aws configure list-profiles`") from exc
    except NoRegionError as exc:
        raise UsageError("no AWS region set; pass --region or set AWS_REGION") from exc
    except EndpointConnectionError as exc:
        raise AwsError(
            f"{doing}: cannot reach AWS ({exc}); check the network and --region"
        ) from exc
    except BotoCoreError as exc:
        raise AwsError(f"{doing}: {exc}") from exc


def make_session(profile: str | None, region: str | None) -> boto3.Session:
    """Build a boto3 session from the standard credential chain."""
    import boto3

    with translated("reading AWS configuration"):
        session = boto3.Session(profile_name=profile, region_name=region)
    chosen = session.region_name
    if not chosen:
        raise UsageError("no AWS region set; pass --region or set AWS_REGION")
    known = set(session.get_available_regions("ec2"))
    for partition in ("aws-cn", "aws-us-gov"):
        known |= set(session.get_available_regions("ec2", partition_name=partition))
    if chosen not in known:
        raise UsageError(
            f"unknown AWS region {chosen!r}; pass --region with a region such as us-east-1"
        )
    return session


@dataclass(frozen=True)
class Subnet:
    """The subnet a gateway launches into."""

    subnet_id: str
    vpc_id: str
    vpc_cidr: str


@dataclass(frozen=True)
class Image:
    """An AMI and the device its root volume is attached as."""

    image_id: str
    root_device_name: str
    root_volume_gib: int = 8


def _tags(items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in items or ()}


def _instance_groups(instance: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the instance's groups from every interface (moto fills only the interfaces)."""
    ids = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    for interface in instance.get("NetworkInterfaces", []):
        ids.extend(g["GroupId"] for g in interface.get("Groups", []))
    return tuple(dict.fromkeys(ids))


def _tag_spec(resource: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _key_pair(k: Mapping[str, Any]) -> KeyPairInfo:
    return KeyPairInfo(
        name=k["KeyName"],
        key_pair_id=k.get("KeyPairId", ""),
        fingerprint=_tags(k.get("Tags")).get(TAG_KEY_FINGERPRINT, ""),
        created_at=k.get("CreateTime"),
    )


def _assemble_groups(
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
            tags=_tags(g.get("Tags")),
            ingress=tuple(by_group[g["GroupId"]][0]),
            egress=tuple(by_group[g["GroupId"]][1]),
        )
        for g in groups
    ]


class Ec2:
    """EC2 and SSM for one account and region."""

    def __init__(self, session: boto3.Session) -> None:
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10)
        with translated("creating AWS clients"):
            self.ec2: EC2Client = session.client("ec2", config=config)
        self._session, self._config = session, config
        self.region: str = session.region_name or ""

    @functools.cached_property
    def ssm(self) -> SSMClient:
        """Return the SSM client, made on first use (only image lookups need it)."""
        with translated("creating the SSM client"):
            return self._session.client("ssm", config=self._config)

    @functools.cached_property
    def _sts(self) -> Any:
        with translated("creating the STS client"):
            return self._session.client("sts", config=self._config)

    def call_log(self) -> list[dict[str, str]]:
        """Start recording every EC2 call (operation and AWS request id); return the live list."""
        collected: list[dict[str, str]] = []

        def record(parsed: Any = None, model: Any = None, **_: Any) -> None:
            entry = {"operation": getattr(model, "name", "?")}
            if isinstance(parsed, dict):
                entry["request_id"] = str(parsed.get("ResponseMetadata", {}).get("RequestId", ""))
                if parsed.get("Error"):
                    entry["error"] = str(parsed["Error"].get("Code", "error"))
            collected.append(entry)

        def record_error(exception: Any = None, model: Any = None, **_: Any) -> None:
            if exception is not None:
                error = type(exception).__name__
                collected.append({"operation": getattr(model, "name", "?"), "error": error})

        self.ec2.meta.events.register("after-call.ec2.*", record)
        self.ec2.meta.events.register("after-call-error.ec2.*", record_error)
        return collected

    def on_call(self, handler: Callable[..., Any]) -> None:
        """Register `handler(model=...)` before each EC2 call, e.g. to count calls."""
        self.ec2.meta.events.register("before-call.ec2.*", handler)

    def caller_arn(self) -> str:
        """Return the ARN of the caller; fails early when credentials are missing."""
        with translated("checking AWS credentials"):
            return str(self._sts.get_caller_identity()["Arn"])

    # --- key pairs -------------------------------------------------------------------------

    def find_key_pairs(self, name: str) -> list[KeyPairInfo]:
        """Return the login key pairs tagged for gateway `name`."""
        with translated("listing key pairs"):
            found = self.ec2.describe_key_pairs(
                Filters=[
                    {"Name": f"tag:{TAG_NAME}", "Values": [name]},
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["login-key"]},
                ]
            )["KeyPairs"]
        return [_key_pair(k) for k in found]

    def import_key_pair(self, key_name: str, public_line: str, tags: Mapping[str, str]) -> str:
        """Import a public key under `key_name`; return its id."""
        with translated(f"importing key pair {key_name}"):
            reply = self.ec2.import_key_pair(
                KeyName=key_name,
                PublicKeyMaterial=public_line.encode(),
                TagSpecifications=[_tag_spec("key-pair", tags)],  # type: ignore[list-item]
            )
        return str(reply.get("KeyPairId", ""))

    def delete_key_pair(self, key_name: str) -> None:
        """Delete a key pair by name (moto ignores ids)."""
        with translated(f"deleting key pair {key_name}"):
            self.ec2.delete_key_pair(KeyName=key_name)

    # --- networks and groups ---------------------------------------------------------------

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
        return Subnet(chosen["SubnetId"], chosen["VpcId"], vpc["CidrBlock"])

    def _groups(self, **kwargs: Any) -> list[SecurityGroup]:
        groups = self.ec2.describe_security_groups(**kwargs)["SecurityGroups"]
        if not groups:
            return []
        ids = [g["GroupId"] for g in groups]
        rules = self.ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": ids}]
        )["SecurityGroupRules"]
        return _assemble_groups(groups, rules)

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
        with translated(f"looking up security group {id_or_name}"):
            if re.fullmatch(r"sg-[0-9a-f]{8,17}", id_or_name):
                try:
                    found = self._groups(GroupIds=[id_or_name])
                except NotFoundError:
                    found = []
            else:
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
            raise UsageError(
                f"{len(found)} security groups are named {id_or_name!r}; pass the group id instead"
            )
        return found[0]

    def create_group(
        self, group_name: str, description: str, vpc_id: str, tags: Mapping[str, str]
    ) -> str:
        """Create a security group and return its id."""
        with translated(f"creating security group {group_name}"):
            reply = self.ec2.create_security_group(
                GroupName=group_name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[_tag_spec("security-group", tags)],  # type: ignore[list-item]
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

    # --- account-wide reads (audit) ----------------------------------------------------------

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
        return _assemble_groups(groups, rules)

    def all_gateway_instances(self) -> list[InstanceInfo]:
        """Return every live instance tagged as a bastion gateway, of any name."""
        with translated("listing gateway instances"):
            return self._instances(
                Filters=[
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["gateway"]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ]
            )

    def volume_encryption(self, volume_ids: Sequence[str]) -> dict[str, bool]:
        """Return whether each volume is encrypted."""
        if not volume_ids:
            return {}
        with translated("describing gateway volumes"):
            found = self.ec2.describe_volumes(VolumeIds=list(volume_ids))["Volumes"]
        return {v["VolumeId"]: bool(v.get("Encrypted")) for v in found}

    def all_login_key_pairs(self) -> list[KeyPairInfo]:
        """Return every bastion login key pair in the region, of any gateway."""
        with translated("listing key pairs"):
            found = self.ec2.describe_key_pairs(
                Filters=[{"Name": f"tag:{TAG_ROLE}", "Values": ["login-key"]}]
            )["KeyPairs"]
        return [_key_pair(k) for k in found]

    def require_imdsv2(self, instance_id: str) -> None:
        """Make the instance's metadata service answer only session (IMDSv2) requests."""
        with translated(f"requiring IMDSv2 on {instance_id}"):
            self.ec2.modify_instance_metadata_options(
                InstanceId=instance_id, HttpTokens="required", HttpEndpoint="enabled"
            )

    # --- images and instances --------------------------------------------------------------

    def resolve_image(self, parameter: str | None, image_id: str | None) -> Image:
        """Resolve an SSM public parameter (or take an AMI id) and read its root device."""
        if parameter:
            with translated(f"resolving image parameter {parameter}"):
                try:
                    image_id = self.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
                except NotFoundError:
                    raise
            assert image_id
        if not image_id:
            raise UsageError("no image given; pass --image")
        with translated(f"describing image {image_id}"):
            images = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        if not images:
            raise NotFoundError(f"image {image_id} not found in {self.region}; check --image")
        found = images[0]
        root = found.get("RootDeviceName", "/dev/xvda")
        sizes = [
            int(m["Ebs"].get("VolumeSize", 8))
            for m in found.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == root and "Ebs" in m
        ]
        return Image(image_id, root, max([*sizes, 8]))

    def find_instances(self, name: str) -> list[InstanceInfo]:
        """Return the live (not terminated) gateway instances of `name`."""
        with translated("listing gateway instances"):
            return self._instances(
                Filters=[
                    {"Name": f"tag:{TAG_NAME}", "Values": [name]},
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["gateway"]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ]
            )

    def running_in_group(self, group_id: str) -> list[InstanceInfo]:
        """Return the running instances in security group `group_id` (filtered by EC2)."""
        with translated(f"listing running instances in {group_id}"):
            return self._instances(
                Filters=[
                    {"Name": "instance.group-id", "Values": [group_id]},
                    {"Name": "instance-state-name", "Values": ["running"]},
                ]
            )

    def instance(self, instance_id: str) -> InstanceInfo:
        """Describe one instance."""
        with translated(f"describing instance {instance_id}"):
            found = self._instances(InstanceIds=[instance_id])
        if not found:
            raise NotFoundError(f"instance {instance_id} not found")
        return found[0]

    def _instances(self, **kwargs: Any) -> list[InstanceInfo]:
        result: list[InstanceInfo] = []
        paginator = self.ec2.get_paginator("describe_instances")
        for page in paginator.paginate(**kwargs):
            for reservation in page["Reservations"]:
                for i in reservation["Instances"]:
                    result.append(
                        InstanceInfo(
                            instance_id=i["InstanceId"],
                            state=i["State"]["Name"],
                            public_ip=i.get("PublicIpAddress"),
                            private_ip=i.get("PrivateIpAddress"),
                            subnet_id=i.get("SubnetId"),
                            vpc_id=i.get("VpcId"),
                            key_name=i.get("KeyName"),
                            image_id=i.get("ImageId", ""),
                            launch_time=i.get("LaunchTime"),
                            security_group_ids=_instance_groups(i),
                            tags=_tags(i.get("Tags")),
                            interface_ids=tuple(
                                n["NetworkInterfaceId"] for n in i.get("NetworkInterfaces", [])
                            ),
                            volume_ids=tuple(
                                m["Ebs"]["VolumeId"]
                                for m in i.get("BlockDeviceMappings", [])
                                if "Ebs" in m
                            ),
                            metadata_http_tokens=(i.get("MetadataOptions") or {}).get("HttpTokens"),
                            instance_profile_arn=(i.get("IamInstanceProfile") or {}).get("Arn"),
                        )
                    )
        return result

    def run_instance(
        self,
        *,
        image: Image,
        instance_type: str,
        key_name: str,
        subnet_id: str,
        group_id: str,
        user_data: str,
        public_ip: bool,
        tags: Mapping[str, str],
    ) -> InstanceInfo:
        """Launch one hardened instance: IMDSv2 only, encrypted root, no instance profile."""
        with translated("launching the gateway instance"):
            reply = self.ec2.run_instances(
                ImageId=image.image_id,
                InstanceType=instance_type,  # type: ignore[arg-type]
                KeyName=key_name,
                MinCount=1,
                MaxCount=1,
                UserData=user_data,
                NetworkInterfaces=[
                    {
                        "DeviceIndex": 0,
                        "SubnetId": subnet_id,
                        "Groups": [group_id],
                        "AssociatePublicIpAddress": public_ip,
                        "DeleteOnTermination": True,
                    }
                ],
                MetadataOptions={
                    "HttpTokens": "required",
                    "HttpEndpoint": "enabled",
                    "HttpPutResponseHopLimit": 1,
                },
                BlockDeviceMappings=[
                    {
                        "DeviceName": image.root_device_name,
                        "Ebs": {
                            "VolumeSize": image.root_volume_gib,
                            "Encrypted": True,
                            "DeleteOnTermination": True,
                            "VolumeType": "gp3",
                        },
                    }
                ],
                TagSpecifications=[
                    _tag_spec("instance", tags),  # type: ignore[list-item]
                    _tag_spec("volume", tags),  # type: ignore[list-item]
                ],
            )
        instance_id = reply["Instances"][0]["InstanceId"]
        return self.instance(instance_id)

    def tag(self, resource_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a resource."""
        with translated(f"tagging {resource_id}"):
            self.ec2.create_tags(
                Resources=[resource_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )

    def untag(self, resource_id: str, keys: Sequence[str]) -> None:
        """Remove tags (by key) from a resource."""
        with translated(f"untagging {resource_id}"):
            self.ec2.delete_tags(Resources=[resource_id], Tags=[{"Key": k} for k in keys])

    def start_instance(self, instance_id: str) -> None:
        """Start a stopped instance."""
        with translated(f"starting {instance_id}"):
            self.ec2.start_instances(InstanceIds=[instance_id])

    def terminate_instance(self, instance_id: str) -> None:
        """Terminate an instance."""
        with translated(f"terminating {instance_id}"):
            self.ec2.terminate_instances(InstanceIds=[instance_id])

    def instance_state(self, instance_id: str) -> str:
        """Return an instance's state name ('terminated' when it is gone)."""
        try:
            return self.instance(instance_id).state
        except NotFoundError:
            return "terminated"

    def user_data(self, instance_id: str) -> str:
        """Return the instance's user data as text."""
        with translated(f"reading user data of {instance_id}"):
            reply = self.ec2.describe_instance_attribute(
                InstanceId=instance_id, Attribute="userData"
            )
        encoded = (reply.get("UserData") or {}).get("Value", "")
        return base64.b64decode(encoded).decode() if encoded else ""

    def group_referencing(self, group_ids: Sequence[str]) -> str | None:
        """Return the id of a group whose ingress references one of `group_ids`, if any."""
        with translated("looking for groups that trust the gateway"):
            found = self.ec2.describe_security_groups(
                Filters=[{"Name": "ip-permission.group-id", "Values": list(group_ids)}]
            )["SecurityGroups"]
        others = [g["GroupId"] for g in found if g["GroupId"] not in group_ids]
        return others[0] if others else None

    # --- incident response -----------------------------------------------------------------

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

    def set_termination_protection(self, instance_id: str, enabled: bool) -> None:
        """Turn termination protection on or off."""
        with translated(f"setting termination protection of {instance_id}"):
            self.ec2.modify_instance_attribute(
                InstanceId=instance_id, DisableApiTermination={"Value": enabled}
            )

    def set_shutdown_stops(self, instance_id: str) -> None:
        """Make a shutdown from inside the instance stop it rather than terminate it."""
        with translated(f"setting shutdown behaviour of {instance_id}"):
            self.ec2.modify_instance_attribute(
                InstanceId=instance_id, InstanceInitiatedShutdownBehavior={"Value": "stop"}
            )

    def snapshots(self, tag_key: str, tag_value: str) -> list[dict[str, str]]:
        """Return snapshots carrying a tag, as {SnapshotId, VolumeId}."""
        with translated("listing incident snapshots"):
            found = self.ec2.describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": f"tag:{tag_key}", "Values": [tag_value]}]
            )["Snapshots"]
        return [{"SnapshotId": s["SnapshotId"], "VolumeId": s.get("VolumeId", "")} for s in found]

    def snapshot(self, volume_id: str, description: str, tags: Mapping[str, str]) -> str:
        """Snapshot a volume and return the snapshot id."""
        with translated(f"snapshotting {volume_id}"):
            reply = self.ec2.create_snapshot(
                VolumeId=volume_id,
                Description=description[:255],
                TagSpecifications=[_tag_spec("snapshot", tags)],  # type: ignore[list-item]
            )
        return str(reply["SnapshotId"])

    def console_output(self, instance_id: str) -> str:
        """Return the instance's console output (EC2 keeps only the last 64 KB)."""
        with translated(f"reading console output of {instance_id}"):
            raw = self.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8", "replace")
        except ValueError:
            return str(raw)  # moto returns it undecoded

    def console_screenshot(self, instance_id: str) -> bytes | None:
        """Return a JPEG of the console, or None where the API does not offer one."""
        try:
            with translated(f"taking a console screenshot of {instance_id}"):
                data = self.ec2.get_console_screenshot(InstanceId=instance_id).get("ImageData", "")
        except (AwsError, NotFoundError, NotImplementedError) as exc:
            log.info("no console screenshot: %s", exc)
            return None
        return base64.b64decode(data) if data else None

    def stop_instance(self, instance_id: str) -> None:
        """Stop an instance."""
        with translated(f"stopping {instance_id}"):
            self.ec2.stop_instances(InstanceIds=[instance_id])
