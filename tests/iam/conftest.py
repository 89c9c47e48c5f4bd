"""The lifecycle as an IAM user holding only policy/bastion.json, under moto with IAM enforced.

EC2 is in-process moto; the gateway's side (its sshd and key channel) is `KeyedProbe`, the
tests/aws fake probe that also remembers which login keys each gateway trusts, so that
`rotate` can prove the new key opens it and the old one no longer does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from bastion.adapters.aws.client import Ec2
from bastion.adapters.keys import fingerprint
from bastion.domain.clock import FakeClock
from bastion.domain.errors import HostKeyMismatchError, SshError
from bastion.testing.iam import (
    ActionRecorder,
    IamUser,
    create_user,
    enforced,
    guard_answered_calls,
    load_policy,
)
from bastion.wiring import Deps
from tests.aws.conftest import FakeIp, FakeProbe
from tests.consoles import FakeConsoles

REGION = "us-east-1"
ADMINISTRATOR = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _body(public_line: str) -> str:
    return " ".join(public_line.split()[:2])


@dataclass
class KeyedProbe(FakeProbe):
    """A fake gateway that trusts the login key it first saw, and what keyctl adds or removes."""

    trusted: dict[str, set[str]] = field(default_factory=dict)  # host -> public key bodies
    # The host key the instance at an address made (its console's), to check the pin against.
    host_key_at: Callable[[str], str | None] = lambda host: None

    def _check_pin(self, host: str, pinned: str) -> None:
        served = self.host_key_at(host)
        if served and _body(served) != _body(pinned):
            raise HostKeyMismatchError(f"fake gateway {host}: host key mismatch")

    def _trust(self, host: str, login_pub: Path) -> set[str]:
        if host not in self.trusted:  # a fresh gateway trusts the key it was launched with
            self.trusted[host] = {_body(login_pub.read_text())} if login_pub.exists() else set()
        return self.trusted[host]

    def verify_login(self, host: str, port: int, user: str, key_path: str, pinned: str) -> str:
        presented = _body(Path(key_path + ".pub").read_text())
        if presented not in self._trust(host, Path(key_path + ".pub")):
            raise SshError(f"fake gateway {host}: the login key is refused")
        self._check_pin(host, pinned)
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
        self.keyctl_requests.append(command)
        self._check_pin(host, pinned)
        trusted = self._trust(host, Path(key_path).with_name("login_ed25519.pub"))
        verb, _, argument = command.partition(" ")
        if verb == "add-login":
            trusted.add(argument.strip())
        elif verb == "remove-login":
            trusted -= {b for b in trusted if fingerprint(b) == argument.strip()}
            return f"ended 0 session(s) of {argument.strip()}\n"
        elif verb == "list":
            return "".join(f"restrict,port-forwarding {b}\n" for b in sorted(trusted))
        return ""


@dataclass
class World:
    """moto with the seed's groups and an app host, an IAM user, and Deps acting as that user."""

    root: Any  # an EC2 client acting as an administrator (inspecting moto)
    app_sg: str
    user: IamUser
    policy: dict[str, Any]
    recorder: ActionRecorder
    deps: Deps
    probe: KeyedProbe
    runner: CliRunner = field(default_factory=CliRunner)

    def run(self, *args: str) -> Any:
        """Run `bastion ARGS` in-process as the IAM user; return typer's result."""
        from bastion.cli import app

        return self.runner.invoke(app, list(args), obj=self.deps)


def _gateway(world: World) -> str:
    found = world.root.describe_instances(
        Filters=[
            {"Name": "tag:bastion:role", "Values": ["gateway"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    assert len(ids) == 1, ids
    return str(ids[0])


def stop_the_gateway(world: World) -> None:
    """Someone stopped it (so that `up` starts it)."""
    world.root.stop_instances(InstanceIds=[_gateway(world)])


def loosen_imds(world: World) -> None:
    """Someone allowed IMDSv1 on it (so that `audit --fix` requires IMDSv2 again)."""
    world.root.modify_instance_metadata_options(InstanceId=_gateway(world), HttpTokens="optional")


def give_it_an_elastic_ip(world: World) -> None:
    """The operator gave it an Elastic IP (so that `burn` detaches it and moves it over)."""
    allocation = world.root.allocate_address(Domain="vpc")["AllocationId"]
    world.root.associate_address(AllocationId=allocation, InstanceId=_gateway(world))


@dataclass(frozen=True)
class Step:
    """One command of the lifecycle, what happens to the gateway before it, its good exits."""

    args: tuple[str, ...]
    before: Callable[[World], None] | None = None
    ok: tuple[int, ...] = (0,)


LIFECYCLE: list[Step] = [
    Step(("up", "--app-sg", "{app_sg}", "--allow", "203.0.113.7")),
    Step(("status", "--json")),
    Step(("ssh-config", "--app-sg", "{app_sg}")),
    Step(("allow", "198.51.100.0/24", "--label", "office", "--for", "8h")),
    Step(("allow", "198.51.100.0/24", "--label", "office", "--for", "1d")),  # renewed in place
    Step(("allow", "--list")),
    Step(("allow", "--revoke", "office")),
    Step(("allow", "--prune")),
    Step(("rotate",)),
    Step(("up", "--app-sg", "{app_sg}", "--allow", "203.0.113.7"), before=stop_the_gateway),
    Step(("up", "--app-sg", "{app_sg}", "--allow", "203.0.113.7", "--restrict-forwarding")),
    # The audit may still fail on what it does not fix (exit 9); never for want of permission.
    Step(("audit", "--fix", "--app-sg", "{app_sg}"), before=loosen_imds, ok=(0, 9)),
    Step(("rotate", "--relaunch", "--app-sg", "{app_sg}")),
    Step(("burn", "--reason", "iam test", "--app-sg", "{app_sg}"), before=give_it_an_elastic_ip),
    Step(("burn", "--reason", "iam test again", "--keep-instance", "--no-relaunch")),
    Step(("down",)),
]
"""Every command of a gateway's life, in order (`{app_sg}` is the seeded app group)."""


def run_step(world: World, step: Step) -> Any:
    """Prepare the gateway as the step says, then run its command as the IAM user."""
    if step.before is not None:
        step.before(world)
    return world.run(*(a.replace("{app_sg}", world.app_sg) for a in step.args))


def _seed(root: Any) -> str:
    vpc = root.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    elb = root.create_security_group(GroupName="sg-elb", Description="elb", VpcId=vpc["VpcId"])
    app = root.create_security_group(GroupName="sg-app", Description="app", VpcId=vpc["VpcId"])
    root.authorize_security_group_ingress(
        GroupId=app["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "UserIdGroupPairs": [{"GroupId": elb["GroupId"]}],
            }
        ],
    )
    image = root.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    root.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[app["GroupId"]],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "app-1"}]}
        ],
    )
    return str(app["GroupId"])


def make_world(policy: dict[str, Any], enforce: Callable[[], Any] = enforced) -> Iterator[World]:
    """Yield a World whose Deps act as a user holding only `policy`, with IAM enforced."""
    with mock_aws():
        root = boto3.client("ec2", region_name=REGION)
        app_sg = _seed(root)
        user = create_user("operator", policy)
        # Inspecting moto while IAM is enforced takes a caller moto knows: an administrator.
        admin = create_user("admin", ADMINISTRATOR)
        root = admin.session(REGION).client("ec2")
        recorder = ActionRecorder()
        consoles = FakeConsoles()

        def host_key_at(host: str) -> str | None:
            found = root.describe_instances(Filters=[{"Name": "ip-address", "Values": [host]}])
            ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
            return consoles.keys.get(ids[0]) if ids else None

        probe = KeyedProbe(host_key_at=host_key_at)

        def attach(ec2: Ec2) -> None:
            consoles.attach(ec2)
            # FakeConsoles answers GetConsoleOutput before moto sees it: check IAM for moto.
            guard_answered_calls(ec2.ec2, lambda: policy, user.arn, ["GetConsoleOutput"])

        deps = Deps(
            session_factory=lambda profile, region: recorder.attach(user.session(region or REGION)),
            clock=FakeClock(),
            fetch=FakeIp(),
            probe=probe,
            on_ec2=attach,
        )
        world = World(root, app_sg, user, policy, recorder, deps, probe)
        with enforce():
            yield world


@pytest.fixture
def documented_policy() -> dict[str, Any]:
    return load_policy()


def dump(result: Any) -> str:
    return json.dumps({"exit": result.exit_code, "stderr": result.stderr[-2000:]})
