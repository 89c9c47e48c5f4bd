"""Run bastion's use cases against a fresh moto backend, with faults, and compare end states."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import boto3
from moto import mock_aws

from bastion.adapters.aws.client import Ec2, make_session
from bastion.adapters.config import load_settings
from bastion.domain.calls import is_mutating
from bastion.domain.clock import FakeClock
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_GENERATION, TAG_NAME
from bastion.usecases.burn import burn
from bastion.usecases.down import down
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import FakeIp, FakeProbe
from tests.consoles import FakeConsoles
from tests.faults import ec2_error

ALLOW = "203.0.113.7/32"
Command = Callable[[Settings, Deps], object]


def run_up(settings: Settings, deps: Deps) -> object:
    return up(settings, deps)


def run_down(settings: Settings, deps: Deps) -> object:
    return down(settings, deps)


def run_burn(settings: Settings, deps: Deps) -> object:
    return burn(settings, deps, reason="reliability test")


@dataclass
class FailNth:
    """Answer the `nth` call (0-based) of `operation` with a non-retryable error."""

    operation: str
    nth: int
    code: str = "UnauthorizedOperation"
    status: int = 403
    seen: int = 0
    fired: bool = False

    def attach(self, ec2: Ec2) -> None:
        ec2.ec2.meta.events.register_first(f"before-send.ec2.{self.operation}", self.handle)

    def handle(self, request: Any = None, **_: Any) -> Any:
        index, self.seen = self.seen, self.seen + 1
        if index != self.nth:
            return None
        self.fired = True
        if request is not None:  # keep in-process moto from also carrying it out
            request.url = "https://fault.invalid/"
        return ec2_error(self.code, self.status)


@dataclass
class Throttle:
    """Answer the first `times` calls of every operation with a retryable error."""

    code: str = "RequestLimitExceeded"
    status: int = 503
    times: int = 2
    seen: Counter[str] = field(default_factory=Counter)

    def attach(self, ec2: Ec2) -> None:
        ec2.ec2.meta.events.register_first("before-send.ec2.*", self.handle)

    def handle(self, request: Any = None, event_name: str = "", **_: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        if self.seen[operation] >= self.times:
            return None
        self.seen[operation] += 1
        request.url = "https://fault.invalid/"
        return ec2_error(self.code, self.status)


@dataclass
class World:
    """One moto account with the seed's sg-app and a data folder of its own."""

    app_sg: str
    data_dir: Path
    mutating: list[str] = field(default_factory=list)
    consoles: FakeConsoles = field(default_factory=FakeConsoles)

    def settings(self) -> Settings:
        return load_settings(
            {"app_sg": self.app_sg, "allow": (ALLOW,), "verify": False},
            env={"BASTION_HOME": str(self.data_dir)},
        )

    def deps(self, *hooks: Callable[[Ec2], None]) -> Deps:
        def on_ec2(ec2: Ec2) -> None:
            ec2.on_call(
                lambda model, **_: (
                    self.mutating.append(model.name)
                    if is_mutating(model.name) and model.service_model.service_name == "ec2"
                    else None
                )
            )
            self.consoles.attach(ec2)
            for hook in hooks:
                hook(ec2)

        return Deps(
            session_factory=make_session,
            clock=FakeClock(),
            fetch=FakeIp(),
            probe=cast(Any, FakeProbe()),  # rotate is not run here: no keyctl needed
            on_ec2=on_ec2,
        )

    def run(self, command: Command, *hooks: Callable[[Ec2], None]) -> object:
        return command(self.settings(), self.deps(*hooks))


@contextmanager
def world(data_dir: Path) -> Iterator[World]:
    """A fresh in-process moto backend with sg-app (80/443 from sg-elb) in the default VPC."""
    with mock_aws():
        client = boto3.client("ec2", region_name="us-east-1")
        vpc = client.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
        elb = client.create_security_group(
            GroupName="sg-elb", Description="elb", VpcId=vpc["VpcId"]
        )
        app = client.create_security_group(
            GroupName="sg-app", Description="app", VpcId=vpc["VpcId"]
        )
        for port in (80, 443):
            client.authorize_security_group_ingress(
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
        yield World(str(app["GroupId"]), data_dir)


def snapshot(data_dir: Path) -> dict[str, Any]:
    """Describe what exists, without ids or times, so two runs' end states compare equal."""
    client = boto3.client("ec2", region_name="us-east-1")
    groups = client.describe_security_groups()["SecurityGroups"]
    names = {g["GroupId"]: g["GroupName"] for g in groups}

    def rules(permissions: Any) -> list[str]:
        out = []
        for p in permissions:
            port = f"{p.get('IpProtocol')}/{p.get('FromPort', '')}-{p.get('ToPort', '')}"
            out += [f"{port} {r['CidrIp']}" for r in p.get("IpRanges", [])]
            out += [f"{port} {r['CidrIpv6']}" for r in p.get("Ipv6Ranges", [])]
            out += [
                f"{port} {names.get(r['GroupId'], r['GroupId'])}"
                for r in p.get("UserIdGroupPairs", [])
            ]
        return sorted(out)

    instances = []
    for reservation in client.describe_instances()["Reservations"]:
        for i in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            if i["State"]["Name"] != "terminated":
                groups_of = sorted(
                    names.get(g["GroupId"], "?") for g in i.get("SecurityGroups", [])
                )
                instances.append(
                    (tags.get(TAG_NAME), tags.get(TAG_GENERATION), i["State"]["Name"], groups_of)
                )
    acl_entries = sorted(
        (e["RuleNumber"], e["Egress"], e["RuleAction"], e.get("CidrBlock"))
        for acl in client.describe_network_acls()["NetworkAcls"]
        for e in acl["Entries"]
        if e["RuleNumber"] < 32767
    )
    gateway_dir = data_dir / "us-east-1" / "default"
    return {
        "instances": sorted(instances, key=str),
        "groups": {
            g["GroupName"]: {
                "in": rules(g["IpPermissions"]),
                "out": rules(g["IpPermissionsEgress"]),
            }
            for g in groups
            if g["GroupName"] != "default"
        },
        # Key pair names end in a random suffix: compare the stems.
        "key_pairs": sorted(
            k["KeyName"].rsplit("-", 1)[0] for k in client.describe_key_pairs()["KeyPairs"]
        ),
        "acl_entries": acl_entries,
        "addresses": len(client.describe_addresses()["Addresses"]),
        "local_keys": sorted(
            p.name
            for p in (gateway_dir.iterdir() if gateway_dir.exists() else [])
            if p.name.endswith("_ed25519") or p.name == "host_ed25519.pub"
        ),
    }
