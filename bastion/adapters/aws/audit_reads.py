"""What only the audit reads: gateways' raw user data and the account's serial console switch."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from bastion.adapters.aws.errors import translated

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger(__name__)

# Answers of an endpoint that does not have the call (moto, some EC2-compatible clouds).
_UNSUPPORTED = frozenset({"NotImplemented", "InvalidAction", "UnsupportedOperation"})


class AuditReads:
    """Reads for `bastion audit` that no other command needs."""

    def __init__(self, ec2: EC2Client) -> None:
        self.ec2 = ec2

    def raw_user_data(self, instance_id: str) -> bytes:
        """Return the instance's user data as EC2 holds it (bytes: it may be gzip'd)."""
        with translated(f"reading user data of {instance_id}"):
            reply = self.ec2.describe_instance_attribute(
                InstanceId=instance_id, Attribute="userData"
            )
        encoded = (reply.get("UserData") or {}).get("Value", "")
        return base64.b64decode(encoded) if encoded else b""

    def serial_console_access(self) -> bool | None:
        """Tell whether EC2 serial console access is on for the account (None: unknown)."""
        from botocore.exceptions import ClientError
        from botocore.parsers import ResponseParserError

        try:
            with translated("reading the serial console access setting"):
                try:
                    reply = self.ec2.get_serial_console_access_status()
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in _UNSUPPORTED:
                        raise
                    log.info("serial console access status not available: %s", exc)
                    return None
                except ResponseParserError as exc:  # moto_server's page for a missing call
                    log.info("serial console access status not readable: %s", exc)
                    return None
        except NotImplementedError as exc:  # in-process moto has no such call
            log.info("serial console access status not available: %s", exc)
            return None
        return bool(reply.get("SerialConsoleAccessEnabled"))
