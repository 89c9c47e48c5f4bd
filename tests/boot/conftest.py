"""The boot tier's world: moto_server, a real Debian 13 boot of each gateway, the installed CLI.

The image is built once (cached outside the repository, see bastion.testing.boot); each
module boots its own systems, for both machine-id variants, and shares them between its tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from bastion.testing.app_network import AppNetwork
from bastion.testing.boot import (
    DEBIAN_AMI_ID,
    BootedGateway,
    GatewayWatcher,
    MachineId,
    build_image,
    cleanup_stale,
    problems,
)
from tests.support import free_port, require

BIN = Path(sys.executable).parent
REGION = "us-east-1"
APP_USER = "bastion-boot-app"  # not the tests/ssh app user: no useradd race across workers


@pytest.fixture(scope="session")
def boot_image() -> Path:
    """Build (or reuse) the Debian 13 image, or skip the tier with the reason it cannot run."""
    found = problems()
    require(not found, "the boot tier cannot run here: " + "; ".join(found))
    cleanup_stale()  # what an earlier run that was killed left behind
    require((BIN / "bastion").exists(), "the bastion CLI is not installed in this venv")
    return build_image()


class BootWorld:
    """moto_server with Debian 13's image, a watcher that boots each gateway, the CLI's env."""

    def __init__(self, tmp: Path, machine_id: MachineId, verify: bool = True) -> None:
        self.tmp = tmp
        self.machine_id = machine_id
        self.moto_port = free_port()
        self.sshd_port = free_port()
        self.app_ip = ""  # app-1's private IP in moto: the app host listens there on port 22
        self.app_network: AppNetwork | None = None
        self.home = tmp / "bastion-home"
        self.user_home = tmp / "home"
        (self.user_home / ".ssh").mkdir(parents=True, mode=0o700)
        self.folder = self.home / REGION / "default"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.user_home),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(tmp / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}",
            "BASTION_HOME": str(self.home),
            "BASTION_REACH": f"127.0.0.1:{self.sshd_port}",
            "BASTION_ALLOW": "203.0.113.7/32",
            # A loaded 2-core CI machine: the first boot reached cloud-final after 180 s once
            # (the host keys were printed, late); a wrong host key still fails at once.
            "BASTION_WAIT_TIMEOUT": "300",
            "BASTION_IMAGE": "debian13",
        }
        for passthrough in ("PYTHONPATH", "BASTION_BOOT_CACHE"):
            if os.environ.get(passthrough):
                self.env[passthrough] = os.environ[passthrough]
        if not verify:
            self.env["BASTION_VERIFY"] = "false"
        self.app_key = tmp / "app_ed25519"
        self.app_known_hosts = tmp / "app_known_hosts"
        # Each guest's real console: the watcher writes it, moto_server answers GetConsoleOutput.
        self.consoles = tmp / "consoles"
        self.app_id = ""
        self._moto: subprocess.Popen[bytes] | None = None
        self._app: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.watcher: GatewayWatcher | None = None
        self.up: subprocess.CompletedProcess[str] | None = None

    def start(self) -> BootWorld:
        """Start moto_server, the app host and the watcher; seed the app group and app-1."""
        log = (self.tmp / "moto.log").open("wb")
        self._moto = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion.testing.boot",
                "moto-server",
                "-p",
                str(self.moto_port),
                "--console-dir",
                str(self.consoles),
            ],
            stdout=log,
            stderr=log,
            env=self.env,
        )
        log.close()
        _wait_for_port(self.moto_port)
        vpc_cidr = self._seed_app_group()
        self.app_network = AppNetwork(vpc_cidr).start()
        self._start_app_host()
        self.watcher = GatewayWatcher(
            self.ec2(),
            "default",
            self.sshd_port,
            machine_id=self.machine_id,
            console_dir=self.consoles,
            log=lambda line: print(line, file=sys.stderr, flush=True),
            app_network=self.app_network,
        )
        self._thread = threading.Thread(target=self.watcher.run, args=(self._stop,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Power the booted systems off and stop everything this world started."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._app is not None:
            self._app.stop()
        if self.app_network is not None:
            self.app_network.stop()
        if self._moto is not None:
            self._moto.terminate()
            self._moto.wait(timeout=20)

    def ec2(self) -> Any:
        """Return an EC2 client for moto_server."""
        return boto3.client(
            "ec2",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def gateway(self, other_than: str | None = None, timeout: float = 120) -> BootedGateway:
        """Return the booted system of the running gateway (one other than `other_than`)."""
        assert self.watcher is not None
        return self.watcher.wait_for_boot(other_than=other_than, timeout=timeout)

    def ready(self, other_than: str | None = None, timeout: float = 120) -> BootedGateway:
        """Return the booted system once its sshd answers on the gateway's loopback port."""
        assert self.watcher is not None
        return self.watcher.wait_for_boot(other_than=other_than, timeout=timeout, serving=True)

    def bastion(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the installed bastion CLI."""
        return subprocess.run(
            [str(BIN / "bastion"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def ssh(
        self,
        *options: str,
        command: str | None = None,
        key: Path | None = None,
        known_hosts: Path | None = None,
        user: str = "bastion",
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real OpenSSH client against the gateway, host key pinned, strict checking."""
        return subprocess.run(
            [
                *self.ssh_base(key=key, known_hosts=known_hosts),
                *options,
                f"{user}@127.0.0.1",
                *([command] if command is not None else []),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )

    def ssh_base(
        self, key: Path | None = None, known_hosts: Path | None = None, port: int | None = None
    ) -> list[str]:
        """Return `ssh` with this gateway's pinned key, login key and port, nothing else."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(key or self.folder / "login_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts or self.folder / 'known_hosts'}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "HostKeyAlias=bastion-default",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-p",
            str(port or self.sshd_port),
        ]

    def forward_banner(
        self,
        key: Path | None = None,
        known_hosts: Path | None = None,
        gateway: BootedGateway | None = None,
        target: str | None = None,
    ) -> str:
        """Return what `target` (default: the app host's sshd) says through a `-W` forward.

        The first line of the forwarded stream (`SSH-2.0-...`) when the forward worked, else
        what ssh printed on stderr.
        """
        port = gateway.port if gateway else self.sshd_port
        gateway = gateway or self.ready()
        result = subprocess.run(
            [
                *self.ssh_base(key=key, known_hosts=known_hosts, port=port),
                "-W",
                target or f"{self.app_ip}:22",
                "bastion@127.0.0.1",
            ],
            input="",
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
        )
        return result.stdout.splitlines()[0] if result.stdout else result.stderr.strip()

    def spare_ip(self) -> str:
        """Return an address of the VPC that neither app-1 nor a gateway instance uses."""
        assert self.app_network is not None
        return str(self.app_network.network[-10])

    def user_data(self) -> str:
        """Return the user data of the running gateway instance, as moto holds it."""
        import base64

        gateway = self.gateway()
        attribute = self.ec2().describe_instance_attribute(
            InstanceId=gateway.instance_id, Attribute="userData"
        )
        return base64.b64decode(attribute["UserData"]["Value"]).decode()

    def status(self) -> dict[str, Any]:
        """Return `bastion status --json`."""
        result = self.bastion("status", "--app-sg", "app", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def _seed_app_group(self) -> str:
        """Make the app group and app-1; return the VPC's CIDR."""
        ec2 = self.ec2()
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
        group = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc["VpcId"])
        subnets = ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
        app = ec2.run_instances(
            SubnetId=sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"],
            ImageId=DEBIAN_AMI_ID,
            MinCount=1,
            MaxCount=1,
            SecurityGroupIds=[group["GroupId"]],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "app-1"}]}
            ],
        )["Instances"][0]
        self.app_id = str(app["InstanceId"])
        self.app_ip = str(app["PrivateIpAddress"])
        return str(vpc["CidrBlock"])

    def _start_app_host(self) -> None:
        from bastion.testing.app_host import LocalAppHost

        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "boot-app",
                "-f",
                str(self.app_key),
            ],
            check=True,
        )
        assert self.app_network is not None
        # app-1 as the gateway sees it: a real sshd on port 22 of its private IP in the VPC.
        self._app = LocalAppHost(
            self.app_key.with_suffix(".pub").read_text(),
            user=APP_USER,
            host=self.app_network.add_host(self.app_ip),
            netns=self.app_network.name,
        ).start()
        self.app_known_hosts.write_text(self._app.known_hosts_line())
        # app-1's console shows the stand-in's key: `ssh-config` pins it strictly from there.
        self._app.publish_console(self.consoles, self.app_id)


def _wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def boot_world(
    tmp_path_factory: pytest.TempPathFactory, machine_id: MachineId, verify: bool = True
) -> Iterator[BootWorld]:
    """Yield a started world; stop it (and power its systems off) afterwards."""
    world = BootWorld(tmp_path_factory.mktemp(f"boot-{machine_id}"), machine_id, verify)
    try:
        yield world.start()
    finally:
        world.stop()
