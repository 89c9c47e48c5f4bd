"""render.py: the gateway's sshd_config and cloud-init user data, without running anything."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jinja2
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from bastion.adapters import render
from bastion.adapters.render import (
    IMAGE_FAMILIES,
    SshdParams,
    UserDataParams,
    image_needs,
    render_sshd_config,
    render_user_data,
)
from bastion.domain.errors import UsageError


def key_pair(comment: str) -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


HOST_PRIVATE, HOST_PUBLIC = key_pair("host")
_, LOGIN_PUBLIC = key_pair("alice@laptop")
_, ADMIN_PUBLIC = key_pair("alice-admin")


def user_data_params(image_family: str = "debian13", **sshd: Any) -> UserDataParams:
    return UserDataParams(
        sshd=SshdParams(**{"port": 2222, **sshd}),
        image_family=image_family,
        host_private_key=HOST_PRIVATE,
        host_public_key=HOST_PUBLIC,
        login_public_key=LOGIN_PUBLIC,
        admin_public_key=ADMIN_PUBLIC,
    )


def cloud_config(params: UserDataParams) -> dict[str, Any]:
    text = render_user_data(params)
    assert text.startswith("#cloud-config\n")
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def written_files(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["path"]: entry for entry in config["write_files"]}


def directives(config_text: str) -> list[str]:
    return [
        line.strip()
        for line in config_text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_sshd_config_has_the_hardening_lines() -> None:
    lines = directives(render_sshd_config(SshdParams(port=2222)))
    for expected in [
        "Port 2222",
        "AddressFamily any",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "PermitEmptyPasswords no",
        "AuthenticationMethods publickey",
        "AuthorizedKeysFile /etc/ssh/bastion/authorized_keys/%u",
        "AllowUsers bastion bastion-admin",
        "LogLevel VERBOSE",
        "MaxAuthTries 3",
        "LoginGraceTime 20",
        "MaxStartups 10:30:60",
        "ClientAliveInterval 300",
        "ClientAliveCountMax 2",
        "UseDNS no",
        "PermitUserEnvironment no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "AllowStreamLocalForwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "Banner none",
        "PidFile /run/sshd.pid",
        "HostKeyAlgorithms ssh-ed25519",
        "PubkeyAcceptedAlgorithms ssh-ed25519,sk-ssh-ed25519@openssh.com",
        "KexAlgorithms sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"
        "curve25519-sha256,curve25519-sha256@libssh.org",
        "Match User bastion",
        "AllowTcpForwarding local",
        "ForceCommand /usr/sbin/nologin",
        "PermitTTY no",
        "Match User bastion-admin",
        'ForceCommand sudo -n /usr/local/sbin/bastion-keyctl "$SSH_ORIGINAL_COMMAND"',
    ]:
        assert expected in lines, expected
    assert not any(line.startswith(("Include", "Subsystem")) for line in lines)
    assert sum(line.startswith("Port ") for line in lines) == 1
    assert not any("PermitOpen" in line for line in lines)


def test_login_match_block_comes_before_admin_block_and_ends_the_global_section() -> None:
    lines = directives(render_sshd_config(SshdParams(port=2222)))
    login = lines.index("Match User bastion")
    admin = lines.index("Match User bastion-admin")
    assert login < admin
    assert lines[login + 1 : admin].count("AllowTcpForwarding local") == 1
    assert "AllowTcpForwarding no" in lines[admin:]


def test_post_quantum_kex_goes_first_only_when_asked() -> None:
    assert "mlkem768x25519-sha256" not in render_sshd_config(SshdParams(port=2222))
    config = render_sshd_config(SshdParams(port=2222, post_quantum_kex=True))
    assert "KexAlgorithms mlkem768x25519-sha256,sntrup761x25519-sha512," in config


def test_permit_open_restricts_only_the_login_user() -> None:
    lines = directives(
        render_sshd_config(SshdParams(port=2222, permit_open=("10.0.1.5:22", "db.internal:5432")))
    )
    assert "PermitOpen 10.0.1.5:22 db.internal:5432" in lines
    assert lines.index("Match User bastion") < lines.index(
        "PermitOpen 10.0.1.5:22 db.internal:5432"
    )
    assert lines.index("PermitOpen 10.0.1.5:22 db.internal:5432") < lines.index(
        "Match User bastion-admin"
    )


def test_port_22_is_allowed() -> None:
    assert "Port 22\n" in render_sshd_config(SshdParams(port=22))


@pytest.mark.parametrize("port", [0, 21, 1023, 65536, -1, True, "2222"])
def test_bad_port_is_a_usage_error(port: Any) -> None:
    with pytest.raises(UsageError, match="port"):
        render_sshd_config(SshdParams(port=port))


@pytest.mark.parametrize(
    "name", ["Root", "9lives", "a b", "x" * 33, "", "bastion\nAllowUsers root"]
)
def test_bad_user_name_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="user name"):
        render_sshd_config(SshdParams(port=2222, login_user=name))


def test_same_login_and_admin_user_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="must differ"):
        render_sshd_config(SshdParams(port=2222, admin_user="bastion"))


@pytest.mark.parametrize(
    "target", ["10.0.0.0/8:22", "host", "host:99999", "a b:22", "h:22\nPermitOpen any"]
)
def test_bad_permit_open_target_is_a_usage_error(target: str) -> None:
    with pytest.raises(UsageError, match="permit-open"):
        render_sshd_config(SshdParams(port=2222, permit_open=(target,)))


@pytest.mark.parametrize(
    "path", ["relative/key", "/etc/ssh/key with space", "/etc/ssh/../../tmp/k"]
)
def test_bad_path_is_a_usage_error(path: str) -> None:
    with pytest.raises(UsageError, match="absolute path"):
        render_sshd_config(SshdParams(port=2222, host_key_path=path))


def test_missing_template_variable_raises() -> None:
    template = render._environment().get_template("sshd_config.j2")
    with pytest.raises(jinja2.UndefinedError):
        template.render(port=2222)


def test_user_data_seeds_the_host_key_and_disables_passwords() -> None:
    config = cloud_config(user_data_params())
    assert config["ssh_keys"] == {
        "ed25519_private": HOST_PRIVATE.strip() + "\n",
        "ed25519_public": HOST_PUBLIC,
    }
    assert config["ssh_deletekeys"] is True
    assert config["disable_root"] is True
    assert config["ssh_pwauth"] is False


def test_user_data_creates_two_locked_system_users() -> None:
    users = {user["name"]: user for user in cloud_config(user_data_params())["users"]}
    assert set(users) == {"bastion", "bastion-admin"}
    assert users["bastion"]["shell"] == "/usr/sbin/nologin"
    assert users["bastion-admin"]["shell"] == "/bin/sh"
    assert all(user["system"] and user["lock_passwd"] for user in users.values())


def test_user_data_writes_config_keys_and_keyctl() -> None:
    params = user_data_params()
    files = written_files(cloud_config(params))
    assert files["/etc/ssh/sshd_config"]["content"] == render_sshd_config(params.sshd)
    assert files["/etc/ssh/sshd_config"]["permissions"] == "0600"
    login = files["/etc/ssh/bastion/authorized_keys/bastion"]
    assert login["content"] == f"restrict,port-forwarding {LOGIN_PUBLIC}\n"
    assert login["owner"] == "root:root"
    admin = files["/etc/ssh/bastion/authorized_keys/bastion-admin"]["content"]
    assert admin == (
        'restrict,command="sudo -n /usr/local/sbin/bastion-keyctl \\"$SSH_ORIGINAL_COMMAND\\"" '
        f"{ADMIN_PUBLIC}\n"
    )
    assert files["/usr/local/sbin/bastion-keyctl"]["permissions"] == "0755"
    assert files["/usr/local/sbin/bastion-keyctl"]["content"].startswith("#!/bin/sh\n")
    assert files["/etc/sudoers.d/bastion-keyctl"] == {
        "path": "/etc/sudoers.d/bastion-keyctl",
        "owner": "root:root",
        "permissions": "0440",
        "content": "bastion-admin ALL=(root) NOPASSWD: /usr/local/sbin/bastion-keyctl\n",
    }


def test_key_comments_survive_yaml_unchanged() -> None:
    _, awkward = key_pair("a: \"b\" #c 'd' {e} [f] & *g ! |h > %i @j")
    params = replace(user_data_params(), login_public_key=awkward)
    files = written_files(cloud_config(params))
    assert files["/etc/ssh/bastion/authorized_keys/bastion"]["content"].endswith(f" {awkward}\n")


@pytest.mark.parametrize(
    ("image_family", "expected"),
    [
        (
            "al2023",
            [
                "semanage port -a -t ssh_port_t -p tcp 2222"
                " || semanage port -m -t ssh_port_t -p tcp 2222",
                "/usr/sbin/sshd -t -f /etc/ssh/sshd_config && systemctl restart sshd",
            ],
        ),
        ("debian13", ["/usr/sbin/sshd -t -f /etc/ssh/sshd_config && systemctl restart ssh"]),
        (
            "ubuntu24.04",
            [
                "systemctl disable --now ssh.socket",
                "systemctl enable ssh.service",
                "/usr/sbin/sshd -t -f /etc/ssh/sshd_config && systemctl restart ssh.service",
            ],
        ),
        (
            "custom",
            [
                "/usr/sbin/sshd -t -f /etc/ssh/sshd_config"
                " && (systemctl restart ssh || systemctl restart sshd)"
            ],
        ),
    ],
)
def test_runcmd_checks_the_config_then_restarts_the_image_service(
    image_family: str, expected: list[str]
) -> None:
    assert cloud_config(user_data_params(image_family))["runcmd"] == expected


def test_every_image_family_has_needs() -> None:
    assert {family: image_needs(family).ssh_service for family in IMAGE_FAMILIES} == {
        "al2023": "sshd",
        "debian13": "ssh",
        "ubuntu24.04": "ssh",
        "custom": "",
    }


def test_unknown_image_family_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="image family"):
        render_user_data(user_data_params("windows"))


@pytest.mark.parametrize("field", ["host_public_key", "login_public_key", "admin_public_key"])
@pytest.mark.parametrize(
    "bad_key", ["ssh-rsa AAAAB3NzaC1yc2E x", "ssh-ed25519", "ssh-ed25519 AAAA\nrunuser", "AAAA"]
)
def test_non_ed25519_public_key_is_a_usage_error(field: str, bad_key: str) -> None:
    with pytest.raises(UsageError, match="ssh-ed25519"):
        render_user_data(replace(user_data_params(), **{field: bad_key}))


def test_private_key_must_be_openssh_pem() -> None:
    with pytest.raises(UsageError, match="OPENSSH PRIVATE KEY"):
        render_user_data(
            replace(user_data_params(), host_private_key="-----BEGIN RSA PRIVATE KEY-----")
        )


def test_reusing_the_login_key_for_admin_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="must differ"):
        render_user_data(replace(user_data_params(), admin_public_key=LOGIN_PUBLIC))


def test_user_data_fits_ec2s_limit_with_post_quantum_and_permit_open() -> None:
    params = user_data_params(
        post_quantum_kex=True, permit_open=tuple(f"10.0.{i}.1:22" for i in range(50))
    )
    assert len(render_user_data(params).encode()) < 16 * 1024


def test_oversized_user_data_is_a_usage_error() -> None:
    targets = tuple(f"host-number-{i}.internal.example:22" for i in range(500))
    with pytest.raises(UsageError, match="16384"):
        render_user_data(user_data_params(permit_open=targets))
