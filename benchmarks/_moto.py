"""A moto_server on a free loopback port with the seed's layout, for benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _print_consoles(endpoint: str, directory: Path, stop: threading.Event) -> None:
    """Stand in for each gateway's first boot: print a host key on its console (no sshd)."""
    import boto3

    from bastion.adapters.keys import generate_key
    from bastion.testing.console import console_path, host_key_block, publish

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
    while not stop.wait(0.05):
        with contextlib.suppress(Exception):
            reservations = ec2.describe_instances(
                Filters=[{"Name": "tag:bastion:role", "Values": ["gateway"]}]
            )["Reservations"]
            for instance in [i for r in reservations for i in r["Instances"]]:
                if not console_path(directory, instance["InstanceId"]).exists():
                    key = generate_key("").public_line
                    publish(directory, instance["InstanceId"], host_key_block([key]))


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto_server (with the console seam), point the AWS environment at it, yield it."""
    port = free_port()
    home = tempfile.mkdtemp(prefix="bastion-bench-")
    consoles = Path(home) / "consoles"
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.testing.console", "moto-server", "-p", str(port),
         "--console-dir", str(consoles)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106  (moto accepts any)
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=f"{home}/aws-config",
        AWS_SHARED_CREDENTIALS_FILE=f"{home}/aws-credentials",
        BASTION_HOME=f"{home}/bastion",
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        stop = threading.Event()
        printer = threading.Thread(
            target=_print_consoles, args=(endpoint, consoles, stop), daemon=True
        )
        printer.start()
        yield endpoint
        stop.set()
    finally:
        process.terminate()
        process.wait(timeout=10)


def seed_layout(ec2: Any) -> dict[str, str]:
    """Create the seed's groups (elb, app admitting 80/443 from elb, rds 3306 from app)."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]

    def group(name: str) -> str:
        return str(
            ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
        )

    def allow(target: str, port: int, source: str) -> None:
        ec2.authorize_security_group_ingress(
            GroupId=target,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": source}],
                }
            ],
        )

    elb, app, rds = group("elb"), group("app"), group("rds")
    allow(app, 80, elb)
    allow(app, 443, elb)
    allow(rds, 3306, app)
    return {"vpc": vpc, "elb": elb, "app": app, "rds": rds}
