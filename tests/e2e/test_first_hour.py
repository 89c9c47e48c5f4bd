"""A new user's first hour, with the installed `bastion` against moto_server (no sshd needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.test_lifecycle import _wait_for_port
from tests.support import free_port, require

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


class Moto:
    """moto_server on a free port and an environment for the bastion CLI."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BASTION_"))},
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "aws-credentials"),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
            "AWS_REGION": "us-east-1",  # alone: the AWS CLI v2's and the SDKs' variable
            "HOME": str(tmp),
            "BASTION_ALLOW": "203.0.113.7/32",
        }

    def ec2(self) -> Any:
        return boto3.client(
            "ec2",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def bastion(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "bastion"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    require((BIN / "moto_server").exists(), "moto_server is missing; pip install 'moto[server]'")
    world = Moto(tmp_path)
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(world.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(world.port)
        yield world
    finally:
        server.terminate()
        server.wait(timeout=20)


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "Usage:" not in result.stderr
    return lines[0]


def test_a_new_user_on_a_non_default_vpc_gets_a_plan_in_the_app_groups_vpc(moto: Moto) -> None:
    ec2 = moto.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)

    plan = moto.bastion("up", "--app-sg", "app", "--dry-run")

    assert plan.returncode == 0, plan.stderr
    assert vpc in plan.stdout
    assert f"subnet {subnet} has no route to an internet gateway" in plan.stderr


def test_first_hour_mistakes_are_one_line_each_with_the_right_exit_code(moto: Moto) -> None:
    assert moto.bastion("--version").stdout.startswith("bastion ")
    typo = moto.bastion("up", "--dryrun")
    assert typo.returncode == 2 and "did you mean --dry-run?" in _one_error(typo)
    port = moto.bastion("up", "--port", "abc")
    assert port.returncode == 2 and "'--port'" in _one_error(port)
    image = moto.bastion("up", "--image", "ssm:/no/such", "--dry-run")
    assert image.returncode == 3 and "check --image" in _one_error(image)
    endpoint = moto.bastion("status", AWS_ENDPOINT_URL="notaurl")
    assert endpoint.returncode == 2 and "AWS_ENDPOINT_URL" in _one_error(endpoint)
    maybe = moto.bastion("up", "--dry-run", BASTION_RESTRICT_FORWARDING="maybe")
    assert maybe.returncode == 2 and "BASTION_RESTRICT_FORWARDING" in _one_error(maybe)
    Path(moto.env["HOME"], "file").write_text("")
    below = moto.bastion("up", BASTION_HOME=str(Path(moto.env["HOME"], "file", "bastion")))
    assert below.returncode == 1 and "not a folder" in _one_error(below)


def test_an_endpoint_where_nothing_listens_fails_at_once_and_names_aws_endpoint_url(
    moto: Moto,
) -> None:
    import time

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = moto.bastion("status", AWS_ENDPOINT_URL=url)
    elapsed = time.monotonic() - started
    line = _one_error(result)
    assert result.returncode == 7
    assert f"nothing answers at {url}" in line and "AWS_ENDPOINT_URL" in line, line
    assert "--region" not in line
    assert elapsed < 6, elapsed  # the start-up alone; retries with backoff took 7 to 16 s more


def test_first_hour_wording_says_each_thing_once(moto: Moto) -> None:
    anywhere = moto.bastion("up", "--allow", "0.0.0.0/0", "--allow-anywhere", "--dry-run")
    assert anywhere.returncode == 0, anywhere.stderr
    assert "bastion: warning: the gateway port will be reachable from 0.0.0.0/0" in anywhere.stderr
    assert "warning: WARNING" not in anywhere.stderr
    audit = moto.bastion("audit", "--fix", "--dry-run")
    assert "gateway '*'" not in audit.stdout + audit.stderr
