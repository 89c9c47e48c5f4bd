"""OpenSSH client config for a gateway and the app hosts behind it (ProxyJump), and its files.

Rendering is pure: the same gateway and hosts give byte-identical text (no dates, sorted hosts).
Writing is careful: the generated file is replaced atomically; the user's own `~/.ssh/config`
gains exactly one `Include` line at its top (after a byte-exact backup, keeping its mode and
owner, through a symlink if it is one) and not one other byte changes.

Why each gateway option is there:

* `UserKnownHostsFile` + `HostKeyAlias` + `StrictHostKeyChecking yes`: only the key pinned at
  launch is accepted, filed under the alias, so a relaunch with a new address is no "host key
  changed" alarm and an unknown key is never trusted on first use.
* `UpdateHostKeys no`: ssh must never rewrite the pinned file itself.
* `IdentitiesOnly yes`: only the login key is offered (no agent keys, no ~/.ssh/id_*).
* `ForwardAgent no` everywhere: nothing on the gateway can use your agent.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

# The files side (sshconfig_files), re-exported for the callers of this module.
from bastion.adapters.sshconfig_files import BACKUP_SUFFIX as BACKUP_SUFFIX
from bastion.adapters.sshconfig_files import CONFIG_DIR_NAME
from bastion.adapters.sshconfig_files import FILE_PREFIX as FILE_PREFIX
from bastion.adapters.sshconfig_files import IncludeChange as IncludeChange
from bastion.adapters.sshconfig_files import ensure_include as ensure_include
from bastion.adapters.sshconfig_files import include_line as include_line
from bastion.adapters.sshconfig_files import user_host_names as user_host_names
from bastion.adapters.sshconfig_files import write_if_changed as write_if_changed
from bastion.domain import sshnames
from bastion.domain.errors import UsageError
from bastion.domain.sshnames import RefusedName as RefusedName
from bastion.domain.sshnames import UserHostName as UserHostName

APP_SSH_PORT = 22

_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
_INCLUDE_KEYWORD = re.compile(r"^\s*include(\s+|\s*=\s*)(?P<args>.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class GatewayEntry:
    """How the client reaches the gateway's forwarding-only login."""

    alias: str
    host: str
    port: int
    user: str
    identity_file: Path
    known_hosts: Path


@dataclass(frozen=True)
class AppHost:
    """An app instance behind the gateway, as EC2 describes it."""

    instance_id: str
    name: str | None
    address: str
    # The Ed25519 key its console printed: pinned strictly (under the instance id as alias).
    host_key: str | None = None


@dataclass(frozen=True)
class ClientConfig:
    """Everything the generated client config says."""

    gateway: GatewayEntry
    app_hosts: tuple[AppHost, ...] = ()
    patterns: tuple[str, ...] = ()
    pattern_source: str = ""
    app_user: str | None = None
    app_identity: Path | None = None
    app_known_hosts: Path | None = None
    # The Host and Match names of the operator's own config: never captured by this file.
    user_names: tuple[UserHostName, ...] = ()
    # The Host names of the other gateways' generated files (their address patterns may overlap).
    other_gateway_names: tuple[UserHostName, ...] = ()

    @property
    def namespace(self) -> str:
        """Return the namespace of this gateway's app host aliases, e.g. `default.bastion`."""
        return sshnames.namespace_for(self.gateway.alias)


@dataclass(frozen=True)
class HostBlock:
    """One app host's `Host` block: its aliases (in the gateway's namespace) and address."""

    aliases: tuple[str, ...]
    address: str
    instance_id: str
    pinned: bool = False
    name: str | None = None  # its Name tag, when that names it (what `bastion ssh NAME` maps)


def config_dir(home: Path) -> Path:
    """Return the folder holding bastion's generated client configs."""
    return home / ".ssh" / CONFIG_DIR_NAME


def config_path(home: Path, name: str) -> Path:
    """Return the generated client config of gateway `name`."""
    return config_dir(home) / f"{FILE_PREFIX}{name}"


def cidr_patterns(cidr: str) -> tuple[str, ...]:
    """Return OpenSSH `Host` patterns matching exactly the IPv4 addresses of `cidr`."""
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise UsageError(f"{cidr!r} is not a CIDR block") from exc
    if network.version != 4 or network.prefixlen < 8:
        return ()
    octets = str(network.network_address).split(".")
    whole, rest = divmod(network.prefixlen, 8)
    if whole == 4:
        return (str(network.network_address),)
    if rest == 0:
        return (".".join([*octets[:whole], "*"]),)
    # Patterns have no ranges: spell out each value of the partly fixed octet.
    first = int(octets[whole])
    values = [str(first + i) for i in range(2 ** (8 - rest))]
    if whole == 3:
        return tuple(".".join([*octets[:3], v]) for v in values)
    return tuple(".".join([*octets[:whole], v, "*"]) for v in values)


def validate_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Return `patterns` if each names app hosts by a network prefix, else raise a usage error."""
    for pattern in patterns:
        reason = sshnames.pattern_refusal(pattern)
        if reason is not None:
            raise UsageError(
                f"--hosts {pattern!r} would route other hosts through the gateway ({reason}); "
                "use e.g. '10.0.*' or '*.ec2.internal'"
            )
    if patterns and all(p.startswith("!") for p in patterns):
        raise UsageError("--hosts needs one pattern that is not negated, e.g. '10.0.*'")
    return patterns


def validate_app_user(user: str | None) -> str | None:
    """Return `user` if it can be a login name on the app hosts, else raise a usage error."""
    if user is not None and not _USER_RE.match(user):
        raise UsageError(f"--app-user {user!r} is not a user name; use e.g. ec2-user or ubuntu")
    return user


def host_blocks(config: ClientConfig) -> tuple[HostBlock, ...]:
    """Name each app host `INSTANCE_ID.NS`, and `NAME.NS` unless its Name tag is refused."""
    refused = {r.name.lower() for r in refused_names(config)}
    blocks = []
    for host in config.app_hosts:
        name = host.name.lower() if host.name and host.name.lower() not in refused else None
        labels = (name, host.instance_id) if name else (host.instance_id,)
        aliases = tuple(sshnames.app_alias(label, config.namespace) for label in labels)
        pinned = host.host_key is not None
        blocks.append(HostBlock(aliases, host.address, host.instance_id, pinned, name))
    return tuple(sorted(blocks, key=lambda b: (b.name is None, b.name or "", b.instance_id)))


def refused_names(config: ClientConfig) -> tuple[RefusedName, ...]:
    """Return the app hosts' Name tags that name no alias (each host keeps its instance id's)."""
    names = {h.instance_id: h.name for h in config.app_hosts}
    return sshnames.refused_names(names, config.gateway.alias, config.user_names)


def address_patterns(config: ClientConfig) -> tuple[str, ...]:
    """Return the app network's patterns, each of the operator's own names excluded (`!name`)."""
    return (*config.patterns, *sshnames.exclusions(config.patterns, config.user_names))


def ssh_target(config: ClientConfig, host: str) -> str:
    """Return the alias `bastion ssh HOST` means: an app host's Name tag or id maps to it."""
    wanted = host.lower()
    for block in host_blocks(config):
        if wanted in (block.name, block.instance_id):
            return block.aliases[0] if wanted == block.name else block.aliases[-1]
    for refused in refused_names(config):
        if refused.name.lower() == wanted:
            ids, first = ", ".join(refused.instance_ids), refused.instance_ids[0]
            raise UsageError(
                f"app host name {host!r} ({ids}) names no host in the ssh config "
                f"({refused.reason}); use its instance id, e.g. `bastion ssh {first}`"
            )
    return host


def render_client_config(config: ClientConfig) -> str:
    """Render the OpenSSH client config: gateway block, app host blocks, app network pattern."""
    gateway = config.gateway
    lines = [
        f"# OpenSSH client config for bastion gateway {gateway.alias}; generated by",
        "# `bastion ssh-config` and kept current by `bastion up`. Edits here are overwritten.",
        "",
        "# The gateway: its forwarding-only login, pinned host key, nothing forwarded back.",
        f"Host {gateway.alias}",
        f"    HostName {_value(gateway.host, 'gateway address')}",
        f"    Port {int(gateway.port)}",
        f"    User {_value(gateway.user, 'login user')}",
        f"    IdentityFile {_path(gateway.identity_file)}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {_path(gateway.known_hosts)}",
        "    GlobalKnownHostsFile /dev/null",
        f"    HostKeyAlias {gateway.alias}",
        "    HostKeyAlgorithms ssh-ed25519",
        "    StrictHostKeyChecking yes",
        "    UpdateHostKeys no",
        "    ForwardAgent no",
        "    ForwardX11 no",
    ]
    app_options = _app_options(config)
    blocks = host_blocks(config)
    if blocks:
        lines += [
            "",
            f"# App hosts (running in the app group), as NAME.{config.namespace} and",
            f"# INSTANCE_ID.{config.namespace}: no Name tag can take a name outside it.",
        ]
    for block in blocks:
        lines += [
            "",
            f"Host {' '.join(block.aliases)}",
            f"    HostName {_value(block.address, 'app host address')}",
            *(_pinned_app_options(config, block) if block.pinned else app_options),
        ]
    if config.patterns:
        source = f" ({config.pattern_source})" if config.pattern_source else ""
        patterns = address_patterns(config)
        lines += ["", f"# Any other app host by its address{source}."]
        if len(patterns) > len(config.patterns):
            lines.append("# Hosts your own ~/.ssh/config names (!) are left to it.")
        lines += [
            f"Host {' '.join(_value(p, 'host pattern') for p in patterns)}",
            *app_options,
        ]
    return "\n".join(lines) + "\n"


def _pinned_app_options(config: ClientConfig, block: HostBlock) -> list[str]:
    # Its console showed its key: pinned under the instance id (an address may be reused),
    # and nothing else is accepted.
    options = [o for o in _app_options(config) if "StrictHostKeyChecking" not in o]
    at = next(i for i, o in enumerate(options) if o.strip().startswith("ForwardAgent"))
    return [
        *options[:at],
        f"    HostKeyAlias {_value(block.instance_id, 'instance id')}",
        "    StrictHostKeyChecking yes",
        *options[at:],
    ]


def app_known_hosts_text(existing: str, hosts: tuple[AppHost, ...]) -> str:
    """Return app_known_hosts with each console-pinned host's line (keyed by instance id).

    Lines for those instance ids are replaced; every other line (keys learned on first use for
    hosts whose console shows none) is kept as it is.
    """
    pinned = {h.instance_id: h.host_key for h in hosts if h.host_key}
    kept = [line for line in existing.splitlines() if line.split(" ", 1)[0] not in pinned]
    added = [f"{iid} {' '.join(str(key).split()[:2])}" for iid, key in sorted(pinned.items())]
    return "".join(f"{line}\n" for line in kept + added)


def _app_options(config: ClientConfig) -> list[str]:
    options = [f"    ProxyJump {config.gateway.alias}"]
    if config.app_user:
        options.append(f"    User {_value(config.app_user, 'app user')}")
    if config.app_identity:
        options += [f"    IdentityFile {_path(config.app_identity)}", "    IdentitiesOnly yes"]
    if config.app_known_hosts:
        # A host whose console shows no key: learn it once (over the pinned gateway) and refuse
        # a changed one. Kept per gateway, away from the user's own known_hosts.
        options += [
            f"    UserKnownHostsFile {_path(config.app_known_hosts)}",
            "    StrictHostKeyChecking accept-new",
        ]
    options.append("    ForwardAgent no")
    return options


def _value(text: str, what: str) -> str:
    if not text or any(ch.isspace() or ch in "\"'#%\\" for ch in text):
        raise UsageError(f"{what} {text!r} cannot go into an ssh config; it has blanks or quotes")
    return text


def _path(path: Path) -> str:
    text = str(path)
    if not path.is_absolute() or any(ch in text for ch in '"\n\r\t'):
        raise UsageError(f"path {text!r} must be absolute, without quotes or control characters")
    # Paths go through %-token expansion in ssh; quote them when they hold spaces.
    text = text.replace("%", "%%")
    return f'"{text}"' if " " in text else text


@dataclass(frozen=True)
class WrittenConfig:
    """Where a config was written and with which options."""

    path: Path
    app_user: str | None = None
    app_identity: str | None = None
    hosts: tuple[str, ...] = ()
    app_sg: str | None = None

    def to_json(self) -> str:
        """Serialize for the gateway folder."""
        return (
            json.dumps(
                {
                    "path": str(self.path),
                    "app_user": self.app_user,
                    "app_identity": self.app_identity,
                    "hosts": list(self.hosts),
                    "app_sg": self.app_sg,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> WrittenConfig:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        return cls(
            path=Path(data["path"]),
            app_user=data.get("app_user"),
            app_identity=data.get("app_identity"),
            hosts=tuple(data.get("hosts") or ()),
            app_sg=data.get("app_sg"),
        )
