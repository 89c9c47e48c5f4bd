"""The installed `bastion` against moto_server and a real sshd booted from the user data."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import free_port, require

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def _wait_for_port(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class World:
    """moto_server, the sshd stand-in, and an environment for the bastion CLI."""

    def __init__(self, tmp: Path) -> None:
        self.moto_port = free_port()
        self.sshd_port = free_port()
        self.home = tmp / "bastion-home"
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}",
            "BASTION_HOME": str(self.home),
            "BASTION_REACH": f"127.0.0.1:{self.sshd_port}",
            "BASTION_ALLOW": "203.0.113.7/32",
            "BASTION_WAIT_TIMEOUT": "60",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.tmp = tmp
        # The stand-in writes each gateway's console here; moto_server answers from it.
        self.consoles = tmp / "consoles"
        self.app: Any = None

    @property
    def behind(self) -> str:
        """Return a target the login user may forward to: an sshd on 127.0.0.N port 22."""
        return f"{self.app.host}:{self.app.port}"

    def start(self) -> None:
        from bastion.testing.app_host import LocalAppHost

        key = self.tmp / "app_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.app = LocalAppHost(key.with_suffix(".pub").read_text()).start()
        moto = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion.testing.console",
                "moto-server",
                "-p",
                str(self.moto_port),
                "--console-dir",
                str(self.consoles),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        self.processes.append(moto)
        _wait_for_port(self.moto_port)
        log = (self.tmp / "stand-in.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bastion.testing.stand_in",
                    "--port",
                    str(self.sshd_port),
                    "--console-dir",
                    str(self.consoles),
                ],
                stdout=log,
                stderr=log,
                env=self.env,
            )
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=20)
        if self.app is not None:
            self.app.stop()

    def ec2(self) -> Any:
        return boto3.client("ec2", endpoint_url=self.env["AWS_ENDPOINT_URL"])

    def bastion_env(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "bastion"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def bastion(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "bastion"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ssh(self, *args: str, key: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        folder = self.home / "us-east-1" / "default"
        return subprocess.run(
            [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                str(key or folder / "login_ed25519"),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                f"UserKnownHostsFile={folder / 'known_hosts'}",
                "-o",
                "HostKeyAlias=bastion-default",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-p",
                str(self.sshd_port),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    require(shutil.which("ssh") is not None, "the OpenSSH client is missing")
    require(Path("/usr/sbin/sshd").exists(), "/usr/sbin/sshd is missing; install openssh-server")
    require(os.geteuid() == 0, "the sshd stand-in needs root (it switches to the gateway users)")
    require((BIN / "moto_server").exists(), "moto_server is missing; pip install 'moto[server]'")
    world = World(tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def _seed_app_group(ec2: Any) -> str:
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    return str(
        ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc["VpcId"])["GroupId"]
    )


def test_lifecycle_up_status_ssh_up_again_down_leaves_nothing(world: World) -> None:
    app = _seed_app_group(world.ec2())

    first = world.bastion("up", "--app-sg", "app", "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert created["status"]["drift"] == []
    assert any(a["kind"] == "verify" for a in created["plan"]["actions"])

    status = json.loads(world.bastion("status", "--app-sg", "app", "--json").stdout)
    assert status["caller_allowed"] is True
    sources = [(s["source"], s["is_gateway"]) for s in status["app_ssh_sources"]]
    assert sources == [(status["security_group"], True)]

    forwarded = world.ssh("-W", world.behind, "bastion@127.0.0.1")
    assert forwarded.stdout.startswith(b"SSH-2.0-"), forwarded.stderr
    shell = world.ssh("bastion@127.0.0.1", "id")
    assert shell.returncode != 0 and b"uid=" not in shell.stdout

    again = world.bastion("up", "--app-sg", "app", "--json")
    assert again.returncode == 0, again.stderr
    assert [a for a in json.loads(again.stdout)["plan"]["actions"] if a["mutating"]] == []

    gone = world.bastion("down", "--app-sg", "app")
    assert gone.returncode == 0, gone.stderr
    ec2 = world.ec2()
    live = [
        i
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert live == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert not [g for g in groups if g["GroupName"].startswith("bastion-")]
    app_rules = ec2.describe_security_groups(GroupIds=[app])["SecurityGroups"][0]["IpPermissions"]
    assert app_rules == []


def test_a_gateway_answering_with_another_host_key_fails_verification(world: World) -> None:
    assert world.bastion("up", "--json").returncode == 0
    pinned = world.home / "us-east-1" / "default" / "host_ed25519.pub"
    from bastion.adapters.keys import generate_key

    pinned.write_text(generate_key("impostor").public_line + "\n")

    result = world.bastion("up")

    assert result.returncode == 5, result.stderr
    assert "bastion: error:" in result.stderr and "Traceback" not in result.stderr


def test_burn_relaunches_a_gateway_that_only_the_new_keys_open(world: World) -> None:
    app = _seed_app_group(world.ec2())
    assert world.bastion("up", "--app-sg", "app").returncode == 0
    folder = world.home / "us-east-1" / "default"
    old_login = world.tmp / "old_login"
    shutil.copy(folder / "login_ed25519", old_login)
    old_known_hosts = (folder / "known_hosts").read_text()

    burnt = world.bastion("burn", "--app-sg", "app", "--reason", "e2e", "--json")

    assert burnt.returncode == 0, burnt.stderr
    record = json.loads(burnt.stdout)
    report = json.loads(Path(record["record"]).read_text())
    assert report["state"] == "closed" and report["timings"]["time_to_contain_s"] >= 0
    assert (folder / "known_hosts").read_text() != old_known_hosts
    # The stand-in swaps its sshd for the new instance's; the real client, strict checking.
    deadline = time.monotonic() + 30
    while True:
        forwarded = world.ssh("-W", world.behind, "bastion@127.0.0.1")
        if forwarded.stdout.startswith(b"SSH-2.0-") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert forwarded.stdout.startswith(b"SSH-2.0-"), forwarded.stderr
    stale = world.ssh("-W", world.behind, "bastion@127.0.0.1", key=old_login)
    assert not stale.stdout.startswith(b"SSH-2.0-")  # the burnt login key opens nothing
    assert b"Permission denied" in stale.stderr, stale.stderr
    sources = [
        pair["GroupId"]
        for p in world.ec2().describe_security_groups(GroupIds=[app])["SecurityGroups"][0][
            "IpPermissions"
        ]
        for pair in p["UserIdGroupPairs"]
    ]
    assert sources == [report["relaunch"]["security_group"]]


# --- an impostor at the gateway's address, and behind it ---------------------------------


def _impostor_gateway(world: World) -> Any:
    """Start a real sshd from the running gateway's own user data: same config, its own key."""
    import base64

    from bastion.testing.local_gateway import LocalGateway

    ec2 = world.ec2()
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:bastion:role", "Values": ["gateway"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    iid = reservations[0]["Instances"][0]["InstanceId"]
    value = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    user_data = base64.b64decode(value["UserData"]["Value"]).decode()
    return LocalGateway(user_data, install_keyctl=True).start()


def _user_data_private_keys(world: World) -> list[int]:
    import base64

    ec2 = world.ec2()
    counts = []
    for reservation in ec2.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            value = ec2.describe_instance_attribute(
                InstanceId=instance["InstanceId"], Attribute="userData"
            )
            text = base64.b64decode(value["UserData"]["Value"]).decode()
            counts.append(text.count("PRIVATE KEY"))
    return counts


def test_an_impostor_sshd_with_another_host_key_is_refused_by_up_ssh_rotate_and_after_burn(
    world: World,
) -> None:
    app = _seed_app_group(world.ec2())
    assert world.bastion("up", "--app-sg", "app").returncode == 0
    folder = world.home / "us-east-1" / "default"
    console = next(world.consoles.glob("*.console")).read_text()
    console_key = " ".join(console.split("-----BEGIN SSH HOST KEY KEYS-----")[1].split()[:2])
    assert (folder / "host_ed25519.pub").read_text().split()[:2] == console_key.split()

    def refused_everywhere(label: str) -> None:
        impostor = _impostor_gateway(world)
        try:
            at = {"BASTION_REACH": f"127.0.0.1:{impostor.port}"}
            up = world.bastion_env(at, "up", "--app-sg", "app")
            assert up.returncode == 5, f"{label}: {up.stderr}"
            assert "bastion: error:" in up.stderr and "Traceback" not in up.stderr
            rotated = world.bastion_env(at, "rotate")
            assert rotated.returncode == 5, f"{label}: {rotated.stderr}"
            ssh = world.bastion_env(at, "ssh", "--", "-o", "BatchMode=yes")
            assert ssh.returncode != 0, f"{label}: bastion ssh reached the impostor"
            assert "Host key verification failed" in ssh.stderr, f"{label}: {ssh.stderr}"
        finally:
            impostor.stop()

    refused_everywhere("after up")
    burnt = world.bastion("burn", "--app-sg", "app", "--reason", "impostor test")
    assert burnt.returncode == 0, burnt.stderr
    refused_everywhere("after burn")
    assert _user_data_private_keys(world) == [0, 0]
    assert app


def test_an_app_host_is_pinned_from_its_console_and_an_impostor_app_sshd_is_refused(
    world: World,
) -> None:
    from bastion.testing.app_host import LocalAppHost

    ec2 = world.ec2()
    app = _seed_app_group(ec2)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "app-1"}]}]
    app_id = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SecurityGroupIds=[app], TagSpecifications=tags
    )["Instances"][0]["InstanceId"]
    tags2 = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "app-2"}]}]
    ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SecurityGroupIds=[app], TagSpecifications=tags2
    )
    key = world.tmp / "app_console_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    real = LocalAppHost(key.with_suffix(".pub").read_text(), user="bastion-e2e-app").start()
    impostor = LocalAppHost(key.with_suffix(".pub").read_text(), user="bastion-e2e-app").start()
    try:
        real.publish_console(world.consoles, app_id)  # app-1's console shows its key
        assert world.bastion("up", "--app-sg", "app").returncode == 0
        written = world.bastion(
            "ssh-config", "--app-sg", "app", "--write", "--app-user", "bastion-e2e-app",
            "--app-identity", str(key),
        )  # fmt: skip
        assert written.returncode == 0, written.stderr
        assert "app-2" in written.stderr and "shows no host key" in written.stderr
        assert written.stderr.count("shows no host key") == 1
        config = Path(world.env["HOME"]) / ".ssh" / "config"

        def reach(target: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", f"HostName={target.host}",
                 "-o", f"Port={target.port}", "app-1.default.bastion", "echo reached"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                env=world.env, check=False,
            )  # fmt: skip

        good = reach(real)
        assert good.stdout.strip() == "reached", good.stderr
        bad = reach(impostor)
        assert bad.returncode != 0 and "reached" not in bad.stdout
        assert "Host key verification failed" in bad.stderr, bad.stderr
        folder = world.home / "us-east-1" / "default"
        pins = (folder / "app_known_hosts").read_text()
        assert burnt_keeps(world, folder, pins)
        assert reach(real).stdout.strip() == "reached"
    finally:
        real.stop()
        impostor.stop()


def burnt_keeps(world: World, folder: Path, pins: str) -> bool:
    """Burn the gateway and tell whether the app hosts' pins survived it."""
    burnt = world.bastion("burn", "--app-sg", "app", "--reason", "app pins")
    assert burnt.returncode == 0, burnt.stderr
    return (folder / "app_known_hosts").read_text() == pins
