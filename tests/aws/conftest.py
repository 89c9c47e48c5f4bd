"""moto-backed AWS, fake SSH probe and fake IP lookup for use-case tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bastion.adapters.aws.client import Ec2, make_session
from bastion.adapters.config import load_settings
from bastion.domain.calls import is_mutating
from bastion.domain.clock import FakeClock
from bastion.domain.settings import Settings
from bastion.wiring import Deps
from tests.consoles import FakeConsoles

CALLER_IP = "203.0.113.7"


@dataclass
class FakeProbe:
    """Pretends the gateway's sshd answers with the key its console printed (or an impostor's)."""

    reachable: bool = True
    host_key_override: str | None = None
    calls: list[tuple[str, int]] = field(default_factory=list)
    # What `bastion-keyctl list` answers (None: the local login key alone).
    login_listing: str | None = None
    admin_channel: bool = True
    keyctl_requests: list[str] = field(default_factory=list)
    consoles: FakeConsoles | None = None

    def tcp_reachable(self, host: str, port: int) -> bool:
        self.calls.append((host, port))
        return self.reachable

    def verify_login(self, host: str, port: int, user: str, key_path: str, pinned: str) -> str:
        from bastion.adapters.keys import fingerprint
        from bastion.domain.errors import HostKeyMismatchError

        served = self.host_key_override or (self.consoles.latest if self.consoles else None)
        if served and served.split()[:2] != pinned.split()[:2]:
            raise HostKeyMismatchError("host key mismatch")
        return fingerprint(pinned)

    def keyctl(
        self,
        host: str,
        port: int,
        user: str,
        key_path: str,
        pinned: str,
        command: str,
        stdin: str | None = None,
    ) -> str:
        """Answer `list` as a gateway trusting exactly bastion's login key (or `login_listing`)."""
        from pathlib import Path

        from bastion.domain.errors import GatewayUnavailable

        self.keyctl_requests.append(command)
        if not self.admin_channel:
            raise GatewayUnavailable("fake probe: the admin channel does not answer")
        if self.login_listing is not None:
            return self.login_listing
        own = Path(key_path).with_name("login_ed25519.pub")
        return f"restrict,port-forwarding {own.read_text().strip()}\n" if own.exists() else ""


@dataclass
class CallCounter:
    """Counts EC2 calls by operation name through botocore events."""

    calls: Counter[str] = field(default_factory=Counter)
    sequence: list[str] = field(default_factory=list)
    lock_calls: Counter[str] = field(default_factory=Counter)  # DynamoDB: the AWS lock
    every_call: list[str] = field(default_factory=list)  # EC2 and lock calls, in order

    def attach(self, ec2: Ec2) -> None:
        ec2.on_call(self.record)

    def record(self, model: Any, **_: Any) -> None:
        self.every_call.append(model.name)
        if model.service_model.service_name == "dynamodb":
            self.lock_calls[model.name] += 1
            return
        self.calls[model.name] += 1
        self.sequence.append(model.name)

    @property
    def mutating(self) -> dict[str, int]:
        return {op: n for op, n in self.calls.items() if is_mutating(op)}

    @property
    def mutating_sequence(self) -> list[str]:
        return [op for op in self.sequence if is_mutating(op)]

    def reset(self) -> None:
        self.calls.clear()
        self.sequence.clear()
        self.lock_calls.clear()
        self.every_call.clear()


class FakeIp:
    """An injected caller-IP lookup: every echo service answers `address`."""

    def __init__(self, address: str = CALLER_IP) -> None:
        self.address = address

    def __call__(self, url: str, timeout: float) -> str:
        return self.address + "\n"


@pytest.fixture
def aws() -> Iterator[None]:
    """Run the test against a fresh in-process moto backend."""
    with mock_aws():
        yield


@pytest.fixture
def counter() -> CallCounter:
    return CallCounter()


@pytest.fixture
def probe() -> FakeProbe:
    return FakeProbe()


@pytest.fixture
def fake_ip() -> FakeIp:
    return FakeIp()


@pytest.fixture
def consoles() -> FakeConsoles:
    return FakeConsoles()


@pytest.fixture
def deps(
    aws: None, counter: CallCounter, probe: FakeProbe, fake_ip: FakeIp, consoles: FakeConsoles
) -> Deps:
    if isinstance(probe, FakeProbe) and probe.consoles is None:
        probe.consoles = consoles

    def attach(ec2: Ec2) -> None:
        counter.attach(ec2)
        consoles.attach(ec2)

    return Deps(
        session_factory=make_session,
        clock=FakeClock(),
        fetch=fake_ip,
        probe=probe,
        on_ec2=attach,
    )


@pytest.fixture
def ec2_client(aws: None) -> Any:
    return boto3.client("ec2", region_name="us-east-1")


@pytest.fixture
def app_sg(ec2_client: Any) -> str:
    """The seed's sg-app in the default VPC, with 80/443 from sg-elb."""
    vpc = ec2_client.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    elb = ec2_client.create_security_group(
        GroupName="sg-elb", Description="elb", VpcId=vpc["VpcId"]
    )
    app = ec2_client.create_security_group(
        GroupName="sg-app", Description="app", VpcId=vpc["VpcId"]
    )
    for port in (80, 443):
        ec2_client.authorize_security_group_ingress(
            GroupId=app["GroupId"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": elb["GroupId"]}],
                }
            ],
        )
    return str(app["GroupId"])


def make_settings(**flags: Any) -> Settings:
    return load_settings(flags, env={})
