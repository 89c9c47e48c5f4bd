"""Render the gateway's sshd_config and its cloud-init user data (the only importer of jinja2).

Two users, two doors
--------------------
The gateway has exactly two SSH users, both system users with locked passwords, whose keys live
in root-owned files (``AuthorizedKeysFile /etc/ssh/bastion/authorized_keys/%u``) that neither
user can write:

``bastion`` (the daily login)
    Key options ``restrict,port-forwarding``; ``Match User`` gives it ``AllowTcpForwarding local``
    (the least that lets ``ssh -J``/``ssh -W`` work), ``MaxSessions 0``, ``PermitTTY no`` and
    ``ForceCommand /usr/sbin/nologin``; its shell is ``/usr/sbin/nologin``. It can open
    direct-tcpip channels to port 22 (``PermitOpen *:22``, or the app hosts) and nothing else;
    an owner rule on its uid (``adapters/egress.py``) keeps them to tcp/22 inside the VPC.

``bastion-admin`` (the key-management channel, used by ``bastion rotate``)
    Key options ``restrict,command="..."`` and ``Match User`` ``ForceCommand``
    ``sudo -n /usr/local/sbin/bastion-keyctl "$SSH_ORIGINAL_COMMAND"``; no forwarding, no TTY.
    sshd runs a forced command as ``<shell> -c <command>``, so this user's shell is ``/bin/sh``
    (with ``nologin`` the command could not run); the forced command is the only thing the shell
    ever runs. The request travels as one quoted argument because sudo's ``env_reset`` drops
    ``SSH_ORIGINAL_COMMAND``. A sudoers drop-in (``/etc/sudoers.d/bastion-keyctl``, 0440)
    allows exactly ``bastion-admin ALL=(root) NOPASSWD: /usr/local/sbin/bastion-keyctl``.

``bastion-keyctl`` (POSIX sh, ``templates/bastion-keyctl.sh``, installed 0755 root) understands:

* ``list`` - print the login user's authorized_keys lines;
* ``add-login ssh-ed25519 BASE64 [COMMENT]`` - authorize another Ed25519 login key
  (idempotent; the line gets ``restrict,port-forwarding``);
* ``remove-login SHA256:FP`` - revoke a login key (refuses, exit 8, to remove the last one),
  then end its sessions; ``sessions`` and ``end-sessions SHA256:FP`` list and end them;
* ``list-host-keys`` - print ``active KEY`` and, during a host-key rotation, ``staged KEY``;
* ``add-host-key ssh-ed25519 BASE64`` with the private key on stdin - stage a new host key
  (second ``HostKey`` file) after checking that the halves match, then reload sshd;
* ``activate-host-key SHA256:FP`` - swap the staged key into first place (sshd presents it);
* ``remove-host-key SHA256:FP`` - delete the staged key; the active one is never removed.

It rewrites the root-owned file atomically (temp file in the same directory, then ``mv``).
Rotation is therefore: add the new login key, verify it, remove the old one. A stolen daily
login key cannot reach this channel: that user has no shell, no sessions and a forced
``nologin``. A stolen admin key can change login and host keys, so it can add a login key of
its own and forward with that: ``status``/``audit`` flag such keys and ``rotate`` removes them
(``remove-login`` also ends the sessions the key opened). A host-key rotation stages the new
key as the second ``HostKey`` file (``<host_key_path>.next``), activates it, proves it, then
removes the old one.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import jinja2

from bastion.adapters.cloud_config import to_yaml
from bastion.adapters.egress import LOGIN_UID, login_egress_commands
from bastion.adapters.render_certs import (
    REVOKED_KEYS_PATH,
    TRUSTED_USER_CA_KEYS_PATH,
    CertificateTrust,
    certificate_files,
)
from bastion.domain.errors import UsageError

SSHD_CONFIG_PATH = "/etc/ssh/sshd_config"
KEYCTL_PATH = "/usr/local/sbin/bastion-keyctl"
SUDOERS_PATH = "/etc/sudoers.d/bastion-keyctl"
NOLOGIN_SHELL = "/usr/sbin/nologin"
ADMIN_SHELL = "/bin/sh"
LOGIN_KEY_OPTIONS = "restrict,port-forwarding"
# The request is one quoted argument because sudo's env_reset drops SSH_ORIGINAL_COMMAND.
KEYCTL_COMMAND = f'sudo -n {KEYCTL_PATH} "$SSH_ORIGINAL_COMMAND"'
IMAGE_FAMILIES = ("al2023", "debian13", "ubuntu24.04", "custom")
USER_DATA_LIMIT = 16 * 1024  # EC2 rejects larger user data (before base64).
# Where bastion-keyctl names the staged host key during a rotation (see the template).
STAGED_HOST_KEY_CONFIG_DIR = "/etc/ssh/bastion/sshd_config.d"
# The gateway users' home: root-owned and empty, so sshd can chdir there and nobody writes.
GATEWAY_HOME = "/var/lib/bastion"
# The login user forwards to SSH only, on any host: the egress rule says which hosts.
APP_SSH_ONLY = ("*:22",)
STRAY_HOST_KEYS_COMMAND = (
    "find /etc/ssh -maxdepth 1 -name 'ssh_host_*_key*' ! -name 'ssh_host_ed25519_key*' -delete"
)

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ED25519_PUBLIC_RE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]+={0,2}( [\x20-\x7e]*)?$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")
_PERMIT_OPEN_RE = re.compile(r"^(\*|[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(\*|[0-9]{1,5})$")


@dataclass(frozen=True)
class SshdParams:
    """Everything that varies in the gateway's sshd_config."""

    port: int
    login_user: str = "bastion"
    admin_user: str = "bastion-admin"
    host_key_path: str = "/etc/ssh/ssh_host_ed25519_key"
    authorized_keys_dir: str = "/etc/ssh/bastion/authorized_keys"
    post_quantum_kex: bool = False
    permit_open: tuple[str, ...] = APP_SSH_ONLY
    pid_file: str = "/run/sshd.pid"
    # OpenSSH >= 9.8 / >= 8.5 options; sshd_for_image() turns them on where the image has them.
    per_source_penalties: bool = False
    per_source_max_startups: bool = False
    staged_host_key_config_dir: str = STAGED_HOST_KEY_CONFIG_DIR
    # Set (render_certs) when the gateway takes certificates from its KMS CA.
    trusted_user_ca_keys: str = ""
    revoked_keys: str = REVOKED_KEYS_PATH


@dataclass(frozen=True)
class UserDataParams:
    """Everything that goes into the gateway's cloud-init user data."""

    sshd: SshdParams
    image_family: str
    login_public_key: str
    admin_public_key: str
    # The VPC's CIDRs (IPv4 and any IPv6): where the login user's forwards may go on tcp/22.
    vpc_cidrs: tuple[str, ...]
    certificates: CertificateTrust | None = None


@dataclass(frozen=True)
class ImageNeeds:
    """How one image family runs sshd and what a custom port needs there."""

    ssh_service: str
    # The OpenSSH release the family ships: which sshd options the config may use.
    openssh: tuple[int, int]
    socket_activated: bool = False
    selinux: bool = False
    # How bootcmd gets iptables where the image lacks it (the login user's egress rule).
    iptables_install: str = ""


_DNF_IPTABLES = "dnf -q -y install iptables-nft"
_IMAGE_NEEDS: Mapping[str, ImageNeeds] = {
    # AL2023 ships no iptables (nor nft); dnf fetches iptables-nft over root's 443 egress.
    "al2023": ImageNeeds("sshd", (8, 7), selinux=True, iptables_install=_DNF_IPTABLES),
    # Socket activation is systemd's first-boot default on Debian's generic images
    # (machine-id "uninitialized"); the official EC2 image boots with ssh.service.
    "debian13": ImageNeeds(ssh_service="ssh", openssh=(10, 0), socket_activated=True),
    "ubuntu24.04": ImageNeeds(ssh_service="ssh", openssh=(9, 6), socket_activated=True),
    "custom": ImageNeeds(ssh_service="", openssh=(8, 0)),
}


def image_needs(image_family: str) -> ImageNeeds:
    """Return how the given image family runs sshd."""
    try:
        return _IMAGE_NEEDS[image_family]
    except KeyError:
        raise UsageError(
            f"unknown image family {image_family!r}; use one of {', '.join(IMAGE_FAMILIES)}"
        ) from None


def sshd_for_image(params: SshdParams, image_family: str) -> SshdParams:
    """Return `params` with the OpenSSH features the image family's sshd supports."""
    openssh = image_needs(image_family).openssh
    return replace(
        params,
        post_quantum_kex=params.post_quantum_kex or openssh >= (9, 9),
        per_source_penalties=openssh >= (9, 8),
        per_source_max_startups=openssh >= (8, 5),
    )


def boot_commands(image_family: str, port: int, vpc_cidrs: Sequence[str]) -> tuple[str, ...]:
    """Return the shell commands cloud-init runs early, before sshd starts (bootcmd)."""
    needs = image_needs(image_family)
    commands = [f"install -d -m 0755 -o root -g root {GATEWAY_HOME}"]
    commands += login_egress_commands(vpc_cidrs, install=needs.iptables_install)
    if needs.selinux:
        # Permissive by default on AL2023, but an enforcing image would refuse the port.
        commands.append(
            "if command -v semanage >/dev/null; then"
            f" semanage port -a -t ssh_port_t -p tcp {port}"
            f" || semanage port -m -t ssh_port_t -p tcp {port}; fi"
        )
    if needs.socket_activated:
        # ssh.socket listens on 22 and ignores Port: close it before the custom port is
        # needed; runcmd starts ssh.service once cloud-init has written its config.
        commands.append(
            "if systemctl is-enabled --quiet ssh.socket"
            " || systemctl is-active --quiet ssh.socket; then"
            " systemctl disable --now --no-block ssh.socket && systemctl enable ssh.service; fi"
        )
    return tuple(commands)


def port_commands(image_family: str, port: int) -> tuple[str, ...]:
    """Return the shell commands that make sure sshd serves the rendered config (runcmd).

    sshd starts after cloud-init has written its config and host key on the known images, so
    it is only started when it is not running, never restarted: a restart closes the port for
    a moment, and a login in that moment fails. Only unknown images get a restart.
    """
    needs = image_needs(image_family)
    check = f"/usr/sbin/sshd -t -f {SSHD_CONFIG_PATH}"
    if needs.ssh_service:
        service = needs.ssh_service
        start = f"systemctl is-active --quiet {service} || systemctl start {service}"
        return (f"{check} && {{ {start}; }}",)
    return (f"{check} && (systemctl restart ssh || systemctl restart sshd)",)


def render_sshd_config(params: SshdParams) -> str:
    """Render the complete /etc/ssh/sshd_config for the gateway."""
    _validate_sshd(params)
    return (
        _environment()
        .get_template("sshd_config.j2")
        .render(
            port=params.port,
            login_user=params.login_user,
            admin_user=params.admin_user,
            host_key_path=params.host_key_path,
            authorized_keys_dir=params.authorized_keys_dir,
            post_quantum_kex=params.post_quantum_kex,
            permit_open=params.permit_open,
            pid_file=params.pid_file,
            per_source_penalties=params.per_source_penalties,
            per_source_max_startups=params.per_source_max_startups,
            staged_host_key_config_dir=params.staged_host_key_config_dir,
            keyctl_command=KEYCTL_COMMAND,
            trusted_user_ca_keys=params.trusted_user_ca_keys,
            revoked_keys=params.revoked_keys,
        )
    )


def render_keyctl(params: SshdParams) -> str:
    """Render the bastion-keyctl script for the gateway's login user."""
    _validate_sshd(params)
    return (
        _environment()
        .get_template("bastion-keyctl.sh")
        .render(
            login_user=params.login_user,
            authorized_keys_dir=params.authorized_keys_dir,
            host_key_path=params.host_key_path,
            pid_file=params.pid_file,
            staged_host_key_config_dir=params.staged_host_key_config_dir,
            revoked_keys=params.revoked_keys,
        )
    )


def _without_comments(script: str) -> str:
    """Drop full-line comments but the first line (#!, or the header naming the template).

    User data is capped at 16 KB; the comments live in the templates.
    """
    head, _, body = script.partition("\n")
    kept = [line for line in body.splitlines() if not line.lstrip().startswith("#")]
    return head + "\n" + "\n".join(kept) + "\n"


def render_user_data(params: UserDataParams) -> str:
    """Render the gateway's #cloud-config user data."""
    _validate_user_data(params)
    sshd = sshd_for_image(params.sshd, params.image_family)
    if params.certificates is not None:
        sshd = replace(sshd, trusted_user_ca_keys=TRUSTED_USER_CA_KEYS_PATH)
    keys_dir = sshd.authorized_keys_dir
    forced = KEYCTL_COMMAND.replace("\\", "\\\\").replace('"', '\\"')
    admin_line = f'restrict,command="{forced}" {params.admin_public_key.strip()}'
    config: dict[str, object] = {
        # No private key travels in user data: the instance makes its own Ed25519 host key at
        # first boot and prints it on its console, where bastion reads it through the EC2 API
        # (GetConsoleOutput) and pins it before the first connection.
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh": {"emit_keys_to_console": True},
        "disable_root": True,
        # The EC2 key pair's public key stays out of every authorized_keys file (cloud-init
        # would write it for root, where `bastion rotate` never looks): bastion's own files
        # name every key that may log in.
        "allow_public_ssh_keys": False,
        "ssh_pwauth": False,
        # Listing users without "default" means no image default user (ec2-user, admin, ubuntu).
        "users": [
            {
                "name": sshd.login_user,
                "gecos": "bastion ProxyJump login",
                "system": True,
                "no_create_home": True,
                "homedir": GATEWAY_HOME,
                "shell": NOLOGIN_SHELL,
                # Fixed, because bootcmd's egress rule names it before this user exists.
                "uid": LOGIN_UID,
                # "*" matches no password yet is not "locked" ("!"), which sshd without PAM
                # would refuse; passwords are off in sshd anyway.
                "lock_passwd": False,
                "hashed_passwd": "*",
            },
            {
                "name": sshd.admin_user,
                "gecos": "bastion key management",
                "system": True,
                "no_create_home": True,
                "homedir": GATEWAY_HOME,
                # A forced command runs as `shell -c command`; nologin would refuse to run it.
                "shell": ADMIN_SHELL,
                "lock_passwd": False,
                "hashed_passwd": "*",
            },
        ],
        "write_files": [
            _file(SSHD_CONFIG_PATH, _without_comments(render_sshd_config(sshd)), "0600"),
            _file(
                f"{keys_dir}/{sshd.login_user}",
                f"{LOGIN_KEY_OPTIONS} {params.login_public_key.strip()}\n",
                "0644",
            ),
            _file(f"{keys_dir}/{sshd.admin_user}", f"{admin_line.strip()}\n", "0644"),
            _packed_file(KEYCTL_PATH, _without_comments(render_keyctl(sshd)), "0755"),
            _file(SUDOERS_PATH, f"{sshd.admin_user} ALL=(root) NOPASSWD: {KEYCTL_PATH}\n", "0440"),
            *(certificate_files(params.certificates) if params.certificates else []),
        ],
        "bootcmd": list(boot_commands(params.image_family, sshd.port, params.vpc_cidrs)),
        # sshd -t guards every start, so a bad config never takes the running sshd down.
        "runcmd": [
            *port_commands(params.image_family, sshd.port),
            # After sshd is up: the keys a first boot's `ssh-keygen -A` (sshd-keygen) adds, which
            # sshd does not serve, go, so the console and /etc/ssh name only the Ed25519 key
            # (keys_to_console runs after runcmd).
            STRAY_HOST_KEYS_COMMAND,
        ],
    }
    text = "#cloud-config\n" + to_yaml(config)
    if "PRIVATE KEY" in text:  # never: a key in user data outlives the instance's whole life
        raise UsageError("the user data would carry a private key; refusing to launch it")
    size = len(text.encode())
    if size > USER_DATA_LIMIT:
        raise UsageError(
            f"user data is {size} bytes, over EC2's {USER_DATA_LIMIT}; shorten permit_open"
        )
    return text


def _file(path: str, content: str, permissions: str) -> dict[str, object]:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


def _packed_file(path: str, content: str, permissions: str) -> dict[str, object]:
    # The keyctl script is the bulk of the user data (EC2 caps it at 16 KB): gzip, mtime 0 so
    # the same script always renders the same bytes; cloud-init unpacks it (gz+b64).
    packed = base64.b64encode(gzip.compress(content.encode(), mtime=0)).decode()
    return {**_file(path, packed, permissions), "encoding": "gz+b64"}


def _with_newline(text: str) -> str:
    return text.strip() + "\n"


def _templates_dir() -> Traversable:
    packaged = resources.files("bastion") / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def _load_template(name: str) -> str:
    return (_templates_dir() / name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - renders config files, never HTML
    )


def _validate_sshd(params: SshdParams) -> None:
    port = params.port
    valid_port = isinstance(port, int) and not isinstance(port, bool)
    if not valid_port or not (port == 22 or 1024 <= port <= 65535):
        raise UsageError(f"SSH port {port!r} is not allowed; use 22 or a port from 1024 to 65535")
    for role, name in (("login", params.login_user), ("admin", params.admin_user)):
        if not _USER_RE.match(name):
            raise UsageError(
                f"{role} user name {name!r} is not valid; use lowercase letters, digits, _ or -"
                " (at most 32, starting with a letter or _)"
            )
    if params.login_user == params.admin_user:
        raise UsageError("login and admin user must differ; the admin user manages login keys")
    for what, path in (
        ("host key path", params.host_key_path),
        ("authorized keys dir", params.authorized_keys_dir),
        ("pid file", params.pid_file),
        ("staged host key config dir", params.staged_host_key_config_dir),
        ("revoked keys file", params.revoked_keys),
    ):
        if not _PATH_RE.match(path) or "/../" in f"{path}/":
            raise UsageError(f"{what} {path!r} must be an absolute path of A-Z a-z 0-9 . _ - /")
    if not params.permit_open:
        raise UsageError("the login user's forwarding needs PermitOpen targets (default *:22)")
    for target in params.permit_open:
        match = _PERMIT_OPEN_RE.match(target)
        if not match or (match.group(2) != "*" and not 1 <= int(match.group(2)) <= 65535):
            raise UsageError(
                f"permit-open target {target!r} is not host:port"
                " (e.g. 10.0.1.5:22 or db.internal:5432)"
            )


def _validate_user_data(params: UserDataParams) -> None:
    _validate_sshd(params.sshd)
    image_needs(params.image_family)
    for what, key in (
        ("login public key", params.login_public_key),
        ("admin public key", params.admin_public_key),
    ):
        if not _ED25519_PUBLIC_RE.match(key.strip()):
            raise UsageError(
                f"{what} must be one line starting with 'ssh-ed25519 '"
                " (an OpenSSH Ed25519 public key)"
            )
    if params.login_public_key.split()[:2] == params.admin_public_key.split()[:2]:
        raise UsageError("login and admin keys must differ; generate a separate admin key")
