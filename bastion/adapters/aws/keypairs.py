"""Key pairs and images: EC2's key-pair calls, and AMIs found through SSM parameters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bastion.adapters.aws.errors import translated
from bastion.adapters.aws.shapes import key_pair, tag_spec
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import Image, KeyPairInfo
from bastion.domain.tags import TAG_NAME, TAG_ROLE

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient


class KeyPairs:
    """The login key pairs bastion imports (only ever public halves)."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

    def find_key_pairs(self, name: str) -> list[KeyPairInfo]:
        """Return the login key pairs tagged for gateway `name`."""
        with translated("listing key pairs"):
            found = self.ec2.describe_key_pairs(
                Filters=[
                    {"Name": f"tag:{TAG_NAME}", "Values": [name]},
                    {"Name": f"tag:{TAG_ROLE}", "Values": ["login-key"]},
                ]
            )["KeyPairs"]
        return [key_pair(k) for k in found]

    def all_login_key_pairs(self) -> list[KeyPairInfo]:
        """Return every bastion login key pair in the region, of any gateway."""
        with translated("listing key pairs"):
            found = self.ec2.describe_key_pairs(
                Filters=[{"Name": f"tag:{TAG_ROLE}", "Values": ["login-key"]}]
            )["KeyPairs"]
        return [key_pair(k) for k in found]

    def import_key_pair(self, key_name: str, public_line: str, tags: Mapping[str, str]) -> str:
        """Import a public key under `key_name`; return its id."""
        with translated(f"importing key pair {key_name}"):
            reply = self.ec2.import_key_pair(
                KeyName=key_name,
                PublicKeyMaterial=public_line.encode(),
                TagSpecifications=[tag_spec("key-pair", tags)],  # type: ignore[list-item]
            )
        return str(reply.get("KeyPairId", ""))

    def delete_key_pair(self, key_name: str) -> None:
        """Delete a key pair by name (moto ignores ids)."""
        with translated(f"deleting key pair {key_name}"):
            self.ec2.delete_key_pair(KeyName=key_name)


class Images:
    """AMIs: an SSM public parameter (or an AMI id) resolved to an image and its root device."""

    def __init__(self, ec2: EC2Client, ssm: Callable[[], SSMClient], region: str) -> None:
        self.ec2 = ec2
        self._ssm_factory = ssm
        self.region = region

    @functools.cached_property
    def ssm(self) -> SSMClient:
        """Return the SSM client, made on first use (only image lookups need it)."""
        return self._ssm_factory()

    def resolve_image(self, parameter: str | None, image_id: str | None) -> Image:
        """Resolve an SSM public parameter (or take an AMI id) and read its root device."""
        if parameter:
            try:
                with translated(f"resolving image parameter {parameter}", service="ssm"):
                    image_id = self.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
            except NotFoundError as exc:
                raise NotFoundError(
                    f"image parameter {parameter} not found in {self.region}; check --image "
                    "(al2023, debian13, ubuntu24.04, ami-..., or ssm:/an/existing/parameter)"
                ) from exc
            assert image_id
        if not image_id:
            raise UsageError("no image given; pass --image")
        try:
            with translated(f"describing image {image_id}"):
                images = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        except NotFoundError:
            images = []
        if not images:
            raise NotFoundError(
                f"image {image_id} not found in {self.region}; check --image and --region "
                "(AMI ids differ per region)"
            )
        found = images[0]
        root = found.get("RootDeviceName", "/dev/xvda")
        sizes = [
            int(m["Ebs"].get("VolumeSize", 8))
            for m in found.get("BlockDeviceMappings", [])
            if m.get("DeviceName") == root and "Ebs" in m
        ]
        return Image(image_id, root, max([*sizes, 8]))
