"""The installed `bastion`, as an IAM user, against a moto_server that enforces IAM.

The helpers another test tier would use for its own users (`create_user` with a moto_server's
IAM client, `IamUser.env()`, `reset_auth`), and the real process's exit code and one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bastion.testing.iam import create_user, load_policy, reset_auth, without_action
from tests.support import free_port, require

BIN = Path(sys.executable).parent


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    require((BIN / "moto_server").exists(), "moto_server is missing; pip install 'moto[server]'")
    port = free_port()
    consoles = str(tmp_path / "consoles")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.testing.console",
            "moto-server",
            "-p",
            str(port),
            "--console-dir",
            consoles,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reset_auth(url, float("inf"))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _bastion(endpoint: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bastion"), *args],
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_user_without_describe_instances_gets_exit_4_and_one_line(endpoint: str) -> None:
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    policy = load_policy()
    allowed = create_user("carol", policy, iam)
    refused = create_user("dave", without_action(policy, "ec2:DescribeInstances"), iam)
    reset_auth(endpoint, 0)

    ok = _bastion(endpoint, allowed.env(), "status", "--json")
    assert ok.returncode == 0, ok.stderr

    denied = _bastion(endpoint, refused.env(), "status")
    assert denied.returncode == 4
    assert "Traceback" not in denied.stderr
    assert denied.stderr.strip().splitlines() == [
        f"bastion: error: AWS refused ec2:DescribeInstances for {refused.arn}: add it to the "
        "policy (policy/bastion.json); if it is there, the resource lacks bastion's tags"
    ]
