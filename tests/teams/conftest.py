"""A team on one gateway: separate HOMEs, separate IAM users (moto, IAM enforced), a real sshd.

`team` boots the gateway's real sshd from the instance's own user data (as tests/ssh do) when
its console is first read, and gives each operator (alice, bob, carol) a HOME, an Ed25519 key of
their own and IAM credentials. alice and bob may do everything; carol's policy lacks `kms:Sign`.
IAM users and enforcement come from bastion/testing/iam.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.authorization import disable_iam_authentication
from typer.testing import CliRunner

from bastion.adapters.aws.client import make_session
from bastion.adapters.keys import generate_key, save_key
from bastion.adapters.probe import OpenSshProbe
from bastion.domain.clock import FakeClock
from bastion.testing.app_host import LocalAppHost
from bastion.testing.iam import create_user, enforced
from bastion.testing.local_gateway import LocalGateway, sshd_binary
from bastion.testing.stand_in import running_gateway
from bastion.wiring import Deps
from tests.aws.conftest import (  # noqa: F401  (fixtures for the moto-only tests here)
    FakeIp,
    FakeProbe,
    aws,
    consoles,
    counter,
    deps,
    fake_ip,
    probe,
)
from tests.consoles import FakeConsoles
from tests.support import free_port, require

EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
WITHOUT_SIGN = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:*",
                "ssm:*",
                "sts:*",
                "dynamodb:*",
                "kms:DescribeKey",
                "kms:GetPublicKey",
            ],
            "Resource": "*",
        }
    ],
}
POLICIES = {"alice": EVERYTHING, "bob": EVERYTHING, "carol": WITHOUT_SIGN}
# Each operator connects from their own loopback address (their allow rule's /32).
ADDRESSES = {"alice": "127.0.0.1", "bob": "127.0.0.2", "carol": "127.0.0.3"}


@dataclass
class BootingProbe(OpenSshProbe):
    """The real probe, plus EC2's boot: a local sshd from the running instance's user data."""

    ec2: Any = None
    port: int = 0
    booted: dict[str, LocalGateway] = field(default_factory=dict)

    def boot(self, instance_id: str) -> str | None:
        with disable_iam_authentication():  # EC2's own view, not an operator's
            found = running_gateway(self.ec2, "default")
        if not found or found[0] != instance_id:
            return None
        for old in self.booted.values():
            old.stop()
        gateway = LocalGateway(found[1], port=self.port, install_keyctl=True).start()
        self.booted = {instance_id: gateway}
        return gateway.host_public_key

    @property
    def gateway(self) -> LocalGateway:
        return next(iter(self.booted.values()))

    def stop(self) -> None:
        for gateway in self.booted.values():
            gateway.stop()


@dataclass
class Operator:
    """One person: their HOME, their own SSH key, their IAM user's credentials."""

    name: str
    home: Path
    arn: str
    access_key: str
    secret_key: str

    @property
    def key(self) -> Path:
        return self.home / ".ssh" / "id_ed25519"

    @property
    def address(self) -> str:
        return ADDRESSES[self.name]

    def folder(self, name: str = "default") -> Path:
        return self.home / ".local" / "share" / "bastion" / "us-east-1" / name

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_CONFIG_FILE": str(self.home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "aws-credentials"),
        }


@dataclass
class Team:
    probe: BootingProbe
    deps: Deps
    clock: FakeClock
    operators: dict[str, Operator]
    ec2: Any
    app: LocalAppHost
    runner: CliRunner = field(default_factory=CliRunner)

    def run(self, who: str, *args: str, env: dict[str, str] | None = None) -> Any:
        """Run `bastion ARGS` as `who` (their HOME and credentials), in-process."""
        from bastion.cli import app

        operator = self.operators[who]
        return self.runner.invoke(
            app, list(args), obj=self.deps, env={**operator.env(), **(env or {})}
        )

    def ssh(
        self, who: str, *options: str, certificate: Path | None = None, source: str = ""
    ) -> Any:
        """Forward through the gateway with the real `ssh`, as `who` from their address."""
        operator = self.operators[who]
        cert = certificate or operator.folder() / "login_identity-cert.pub"
        known = operator.home / "gw_known_hosts"
        known.write_text(f"[127.0.0.1]:{self.probe.port} {self.probe.gateway.host_public_key}\n")
        command = [
            "ssh",
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"CertificateFile={cert}",
            "-i",
            str(operator.key),
            "-b",
            source or operator.address,
            "-p",
            str(self.probe.port),
            *options,
            "-W",
            f"{self.app.host}:22",
            "bastion@127.0.0.1",
        ]
        return subprocess.run(
            command, input="", capture_output=True, text=True, timeout=30, check=False
        )

    def certify(self, who: str, *options: str) -> dict[str, Any]:
        """Run `bastion cert --json` as `who` with their own key; return what it printed."""
        key = str(self.operators[who].key) + ".pub"
        issued = self.run(who, "cert", "--key", key, "--json", *options)
        assert issued.exit_code == 0, issued.output
        return dict(json.loads(issued.stdout))


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    """alice, bob and carol, each on their own machine, one moto account with IAM enforced."""
    require(sshd_binary() is not None and os.geteuid() == 0, "needs root and openssh-server")
    require(shutil.which("ssh") is not None, "needs the OpenSSH client")
    with mock_aws():
        with disable_iam_authentication():
            iam = boto3.client("iam", region_name="us-east-1")
            operators = {}
            for name in POLICIES:
                user = create_user(name, POLICIES[name], iam)
                arn, access, secret = user.arn, user.access_key_id, user.secret_access_key
                home = tmp_path / f"home-{name}"
                (home / ".ssh").mkdir(parents=True, mode=0o700)
                save_key(home / ".ssh" / "id_ed25519", generate_key(f"{name}@laptop"))
                operators[name] = Operator(name, home, arn, access, secret)
            admin_ec2 = boto3.client("ec2", region_name="us-east-1")
            admin_ec2.describe_vpcs()  # load the backend while nothing is enforced
        port = free_port()
        probe = BootingProbe(ec2=admin_ec2, port=port)
        consoles = FakeConsoles(boot=probe.boot)
        clock = FakeClock(current=datetime.now(UTC).replace(microsecond=0))
        deps = Deps(
            session_factory=make_session,
            clock=clock,
            probe=probe,
            fetch=lambda url, timeout: "127.0.0.1",
            on_ec2=consoles.attach,
        )
        monkeypatch.setenv("BASTION_REACH", f"127.0.0.1:{port}")
        try:
            app = LocalAppHost(generate_key("app").public_line, user="bastion-app")
            with app, enforced():
                yield Team(probe, deps, clock, operators, admin_ec2, app)
        finally:
            probe.stop()
