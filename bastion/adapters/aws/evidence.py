"""Evidence for an incident: volume snapshots and the console's output and screenshot."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bastion.adapters.aws.errors import translated
from bastion.adapters.aws.shapes import tag_spec
from bastion.domain.errors import AwsError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

# What EC2 answers `Latest=True` with on instance types that have no live console buffer.
LATEST_UNSUPPORTED = frozenset({"UnsupportedOperation", "InvalidParameterCombination"})


class Evidence:
    """What EC2 can keep or show of an instance before it is destroyed."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

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
                TagSpecifications=[tag_spec("snapshot", tags)],  # type: ignore[list-item]
            )
        return str(reply["SnapshotId"])

    def console_output(self, instance_id: str) -> str:
        """Return the instance's console output (EC2 keeps only the last 64 KB).

        `Latest=True` (the live buffer, Nitro instances) where the instance supports it; other
        instance types refuse it, and then the output EC2 last captured is read.
        """
        from botocore.exceptions import ClientError

        doing = f"reading console output of {instance_id}"
        with translated(doing):
            try:
                reply = self.ec2.get_console_output(InstanceId=instance_id, Latest=True)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in LATEST_UNSUPPORTED:
                    raise
                log.info("%s does not offer the latest console output: %s", instance_id, exc)
                reply = self.ec2.get_console_output(InstanceId=instance_id)
        raw = reply.get("Output", "") or ""
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8", "replace")
        except ValueError:
            return str(raw)

    def console_screenshot(self, instance_id: str) -> bytes | None:
        """Return a JPEG of the console, or None where the API does not offer one."""
        try:
            with translated(f"taking a console screenshot of {instance_id}"):
                data = self.ec2.get_console_screenshot(InstanceId=instance_id).get("ImageData", "")
        except (AwsError, NotFoundError, NotImplementedError) as exc:
            log.info("no console screenshot: %s", exc)
            return None
        return base64.b64decode(data) if data else None
