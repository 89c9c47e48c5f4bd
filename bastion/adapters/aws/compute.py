"""Instances: the only door to EC2's instance calls (launch, start, stop, terminate, tags)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.adapters.aws.errors import translated
from bastion.adapters.aws.shapes import instance_groups, tag_dict, tag_spec
from bastion.domain.errors import NotFoundError
from bastion.domain.model import LIVE_STATES, Image, InstanceInfo
from bastion.domain.tags import TAG_NAME, TAG_ROLE

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


class Compute:
    """EC2 instances of one account and region."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

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

    def all_gateway_instances(self) -> list[InstanceInfo]:
        """Return every live instance tagged as a bastion gateway, of any name."""
        with translated("listing gateway instances"):
            return self._instances(
                Filters=[
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["gateway"]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
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
                            security_group_ids=instance_groups(i),
                            tags=tag_dict(i.get("Tags")),
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
                            instance_type=i.get("InstanceType", ""),
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
                    tag_spec("instance", tags),  # type: ignore[list-item]
                    tag_spec("volume", tags),  # type: ignore[list-item]
                    # Tagged as bastion's, so the policy lets burn tag it (policy/bastion.json).
                    tag_spec("network-interface", tags),  # type: ignore[list-item]
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

    def stop_instance(self, instance_id: str) -> None:
        """Stop an instance."""
        with translated(f"stopping {instance_id}"):
            self.ec2.stop_instances(InstanceIds=[instance_id])

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

    def require_imdsv2(self, instance_id: str) -> None:
        """Make the instance's metadata service answer only session (IMDSv2) requests."""
        with translated(f"requiring IMDSv2 on {instance_id}"):
            self.ec2.modify_instance_metadata_options(
                InstanceId=instance_id, HttpTokens="required", HttpEndpoint="enabled"
            )

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

    def volume_encryption(self, volume_ids: Sequence[str]) -> dict[str, bool]:
        """Return whether each volume is encrypted."""
        if not volume_ids:
            return {}
        with translated("describing gateway volumes"):
            found = self.ec2.describe_volumes(VolumeIds=list(volume_ids))["Volumes"]
        return {v["VolumeId"]: bool(v.get("Encrypted")) for v in found}
