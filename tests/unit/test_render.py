"""render.py: the gateway's sshd_config and cloud-init user data, without running anything."""

from __future__ import annotations

import base64
import gzip
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
    sshd_for_image,
)
from bastion.domain.errors import UsageError


def key_pair(comment: str) -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


_, LOGIN_PUBLIC = key_pair("alice@laptop")
_, ADMIN_PUBLIC = key_pair("alice-admin")


def user_data_params(image_family: str = "debian13", **sshd: Any) -> UserDataParams:
    return UserDataParams(
        sshd=SshdParams(**{"port": 2222, **sshd}),
        image_family=image_family,
        login_public_key=LOGIN_PUBLIC,
        admin_public_key=ADMIN_PUBLIC,
        vpc_cidrs=("10.0.0.0/16",),
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
    assert not any(line.startswith("Subsystem") for line in lines)
    # The only Include is bastion's own folder for a staged host key, never the image's drop-ins.
    assert [line for line in lines if line.startswith("Include")] == [
        "Include /etc/ssh/bastion/sshd_config.d/*.conf"
    ]
    assert "UsePAM no" in lines
    assert "Compression no" in lines
    assert sum(line.startswith("Port ") for line in lines) == 1
    # By default the login user forwards to port 22 on any host (the egress rule says which).
    assert [line for line in lines if line.startswith("PermitOpen")] == ["PermitOpen *:22"]


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


def test_user_data_carries_no_host_key_the_instance_makes_and_prints_its_own() -> None:
    text = render_user_data(user_data_params())
    config = cloud_config(user_data_params())
    assert "PRIVATE KEY" not in text
    assert "ssh_keys" not in config
    assert config["ssh_genkeytypes"] == ["ed25519"]
    assert config["ssh"] == {"emit_keys_to_console": True}
    assert config["ssh_deletekeys"] is True
    assert config["disable_root"] is True
    assert config["ssh_pwauth"] is False


def test_user_data_creates_two_passwordless_system_users_with_a_root_owned_home() -> None:
    config = cloud_config(user_data_params())
    users = {user["name"]: user for user in config["users"]}
    assert set(users) == {"bastion", "bastion-admin"}
    assert users["bastion"]["shell"] == "/usr/sbin/nologin"
    assert users["bastion-admin"]["shell"] == "/bin/sh"
    # "*" matches no password; "!" (lock_passwd) would be refused by sshd without PAM.
    assert all(user["system"] and user["hashed_passwd"] == "*" for user in users.values())
    assert not any(user["lock_passwd"] for user in users.values())
    assert {user["homedir"] for user in users.values()} == {"/var/lib/bastion"}
    assert "install -d -m 0755 -o root -g root /var/lib/bastion" in config["bootcmd"]


def test_user_data_keeps_the_ec2_key_pair_out_of_every_authorized_keys_file() -> None:
    assert cloud_config(user_data_params())["allow_public_ssh_keys"] is False


def test_user_data_writes_config_keys_and_keyctl() -> None:
    params = user_data_params()
    files = written_files(cloud_config(params))
    rendered = render_sshd_config(sshd_for_image(params.sshd, params.image_family))
    written = files["/etc/ssh/sshd_config"]["content"]
    assert directives(written) == directives(rendered)
    assert written.splitlines()[0] == rendered.splitlines()[0]  # the header names the template
    assert files["/etc/ssh/sshd_config"]["permissions"] == "0600"
    login = files["/etc/ssh/bastion/authorized_keys/bastion"]
    assert login["content"] == f"restrict,port-forwarding {LOGIN_PUBLIC}\n"
    assert login["owner"] == "root:root"
    admin = files["/etc/ssh/bastion/authorized_keys/bastion-admin"]["content"]
    assert admin == (
        'restrict,command="sudo -n /usr/local/sbin/bastion-keyctl \\"$SSH_ORIGINAL_COMMAND\\"" '
        f"{ADMIN_PUBLIC}\n"
    )
    keyctl = files["/usr/local/sbin/bastion-keyctl"]
    assert keyctl["permissions"] == "0755"
    assert keyctl["encoding"] == "gz+b64"  # the bulk of the user data, packed (16 KB cap)
    script = gzip.decompress(base64.b64decode(keyctl["content"])).decode()
    assert script.startswith("#!/bin/sh\n")
    keyctl_params = sshd_for_image(params.sshd, params.image_family)
    assert script == render._without_comments(render.render_keyctl(keyctl_params))
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


START_ONLY = (
    "/usr/sbin/sshd -t -f /etc/ssh/sshd_config && {{ systemctl is-active --quiet {0}"
    " || systemctl start {0}; }}"
)
SOCKET_OFF = (
    "if systemctl is-enabled --quiet ssh.socket || systemctl is-active --quiet ssh.socket; then"
    " systemctl disable --now --no-block ssh.socket && systemctl enable ssh.service; fi"
)


@pytest.mark.parametrize(
    ("image_family", "bootcmd", "runcmd"),
    [
        (
            "al2023",
            [
                "if command -v semanage >/dev/null; then"
                " semanage port -a -t ssh_port_t -p tcp 2222"
                " || semanage port -m -t ssh_port_t -p tcp 2222; fi"
            ],
            [START_ONLY.format("sshd")],
        ),
        ("debian13", [SOCKET_OFF], [START_ONLY.format("ssh")]),
        ("ubuntu24.04", [SOCKET_OFF], [START_ONLY.format("ssh")]),
        (
            "custom",
            [],
            [
                "/usr/sbin/sshd -t -f /etc/ssh/sshd_config"
                " && (systemctl restart ssh || systemctl restart sshd)"
            ],
        ),
    ],
)
def test_known_images_start_sshd_once_and_never_restart_it(
    image_family: str, bootcmd: list[str], runcmd: list[str]
) -> None:
    config = cloud_config(user_data_params(image_family))
    assert [c for c in config["bootcmd"][1:] if "tables" not in c] == bootcmd
    assert config["runcmd"][:-1] == runcmd
    assert config["runcmd"][-1] == render.STRAY_HOST_KEYS_COMMAND


@pytest.mark.parametrize(
    ("image_family", "pq", "penalties", "per_source"),
    [
        ("al2023", False, False, True),
        ("ubuntu24.04", False, False, True),
        ("debian13", True, True, True),
        ("custom", False, False, False),
    ],
)
def test_sshd_options_follow_the_images_openssh(
    image_family: str, pq: bool, penalties: bool, per_source: bool
) -> None:
    config = written_files(cloud_config(user_data_params(image_family)))["/etc/ssh/sshd_config"]
    lines = directives(config["content"])
    assert any(line.startswith("KexAlgorithms mlkem768x25519-sha256,") for line in lines) is pq
    assert any(line.startswith("PerSourcePenalties ") for line in lines) is penalties
    assert ("PerSourceMaxStartups 6" in lines) is per_source


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


@pytest.mark.parametrize("field", ["login_public_key", "admin_public_key"])
@pytest.mark.parametrize(
    "bad_key", ["ssh-rsa AAAAB3NzaC1yc2E x", "ssh-ed25519", "ssh-ed25519 AAAA\nrunuser", "AAAA"]
)
def test_non_ed25519_public_key_is_a_usage_error(field: str, bad_key: str) -> None:
    with pytest.raises(UsageError, match="ssh-ed25519"):
        render_user_data(replace(user_data_params(), **{field: bad_key}))


def test_user_data_drops_the_host_keys_sshd_does_not_serve_after_sshd_starts() -> None:
    runcmd = cloud_config(user_data_params())["runcmd"]
    assert runcmd[-1] == render.STRAY_HOST_KEYS_COMMAND
    assert "! -name 'ssh_host_ed25519_key*' -delete" in runcmd[-1]


def test_user_data_that_would_carry_a_private_key_is_refused() -> None:
    smuggled = replace(
        user_data_params(), login_public_key=LOGIN_PUBLIC + " -----BEGIN OPENSSH PRIVATE KEY-----"
    )
    with pytest.raises(UsageError, match="private key"):
        render_user_data(smuggled)


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


def test_an_empty_permit_open_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="PermitOpen"):
        render_sshd_config(SshdParams(port=2222, permit_open=()))


def rules_of(bootcmd: list[str], tool: str) -> list[list[str]]:
    """Return the `tool` commands of the egress rule in bootcmd, each as its arguments."""
    (line,) = [c for c in bootcmd if c.startswith(f"if command -v {tool} ")]
    body = line.split("; then ", 1)[1].rsplit("; else ", 1)[0]
    return [part.split()[2:] for part in body.replace(" || ", "; ").split("; ")]


def test_the_login_user_may_reach_only_ssh_in_the_vpc_from_boot_on() -> None:
    bootcmd = cloud_config(
        replace(user_data_params(), vpc_cidrs=("10.0.0.0/16", "10.1.0.0/16", "2600:1f18::/56"))
    )["bootcmd"]

    v4 = rules_of(bootcmd, "iptables")
    v6 = rules_of(bootcmd, "ip6tables")

    chain = "BASTION-LOGIN"
    jump = ["OUTPUT", "1", "-m", "owner", "--uid-owner", "200222", "-j", chain]
    for rules in (v4, v6):
        # A fresh chain every boot, hooked into OUTPUT once, for the login user's uid only.
        assert rules[:2] == [["-N", chain, "2>/dev/null"], ["-F", chain]]
        assert rules[-2:] == [["-C", *jump[0:1], *jump[2:], "2>/dev/null"], ["-I", *jump]]
        body = [r[2:] for r in rules if r[:2] == ["-A", chain]]
        # The loopback (the gateway's own addresses too) is refused before anything is allowed.
        loopback = body.index(["-o", "lo", "-j", "REJECT"])
        assert body[-1] == ["-j", "REJECT"]
        allowed = [r for r in body if r[-1] == "ACCEPT"]
        assert all(body.index(r) > loopback for r in allowed if "53" not in r)
    assert [r for r in v4 if "ACCEPT" in r and "22" in r] == [
        ["-A", chain, "-d", cidr, "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]
        for cidr in ("10.0.0.0/16", "10.1.0.0/16")
    ]
    assert [r for r in v6 if "ACCEPT" in r] == [
        ["-A", chain, "-d", "2600:1f18::/56", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"]
    ]
    # Only name lookups through systemd-resolved's stub, over UDP, besides SSH in the VPC.
    assert [r for r in v4 if "ACCEPT" in r and "53" in r] == [
        ["-A", chain, "-d", "127.0.0.53", "-p", "udp", "--dport", "53", "-j", "ACCEPT"]
    ]
    text = "\n".join(bootcmd)
    assert "169.254" not in text and "fd00:ec2" not in text  # refused by the final REJECT
    assert "--uid-owner 0 " not in text and "root" not in text.replace("-o root -g root", "")


def test_without_an_ipv6_cidr_the_login_user_reaches_nothing_over_ipv6() -> None:
    bootcmd = cloud_config(user_data_params())["bootcmd"]

    body = [r[2:] for r in rules_of(bootcmd, "ip6tables") if r[:1] == ["-A"]]

    assert body == [["-o", "lo", "-j", "REJECT"], ["-j", "REJECT"]]


def test_the_egress_rule_runs_before_anything_starts_sshd_and_names_the_login_uid() -> None:
    config = cloud_config(user_data_params())
    (login,) = [u for u in config["users"] if u["name"] == "bastion"]

    assert login["uid"] == 200222
    assert "bootcmd" in config and all("sshd" not in c for c in config["bootcmd"][:3])
    assert any("iptables" in c for c in config["bootcmd"])


def test_amazon_linux_installs_iptables_first_and_every_image_warns_when_it_has_none() -> None:
    al2023 = cloud_config(user_data_params("al2023"))["bootcmd"]
    debian = cloud_config(user_data_params("debian13"))["bootcmd"]

    install = al2023.index(
        "command -v iptables >/dev/null || dnf -q -y install iptables-nft || true"
    )
    assert install < next(i for i, c in enumerate(al2023) if c.startswith("if command -v ipt"))
    assert not any("dnf" in c for c in debian)
    for bootcmd in (al2023, debian):
        assert any("confined by PermitOpen only' >/dev/console" in c for c in bootcmd)


@pytest.mark.parametrize("cidrs", [(), ("2600:1f18::/56",), ("10.0.0.0/33",), ("vpc",)])
def test_the_egress_rule_needs_a_valid_ipv4_vpc_cidr(cidrs: tuple[str, ...]) -> None:
    with pytest.raises(UsageError, match="CIDR"):
        render_user_data(replace(user_data_params(), vpc_cidrs=cidrs))
