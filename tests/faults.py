"""Fault injection for botocore: answer chosen operations with an EC2 error before sending."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse

from bastion.adapters.aws.client import Ec2


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def ec2_error(code: str, status: int, message: str = "injected") -> AWSResponse:
    """Build the HTTP response EC2 sends for an error."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "</Errors><RequestID>fault-injected</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.fault.invalid/", status, {}, _Raw(body))


@dataclass
class Fault:
    """Fail the first `times` calls of `operation` with `code` (HTTP `status`)."""

    operation: str
    code: str
    status: int = 400
    times: int = 1_000_000
    seen: int = field(default=0)

    def attach(self, ec2: Ec2) -> None:
        ec2.ec2.meta.events.register_first(f"before-send.ec2.{self.operation}", self.handle)

    def handle(self, request: Any = None, **_: Any) -> AWSResponse | None:
        if self.seen >= self.times:
            return None
        self.seen += 1
        # botocore still runs every before-send handler: point the request elsewhere so that
        # in-process moto does not also carry it out.
        if request is not None:
            request.url = "https://fault.invalid/"
        return ec2_error(self.code, self.status)
