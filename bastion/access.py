"""Use cases `ssh-config` and `ssh`: reach app hosts through the gateway with OpenSSH ProxyJump.

`refresh_ssh_config` is the one function that keeps a written config current; `up` calls it
(and through `up`, `burn`'s relaunch), and `rotate` calls it after a key change.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.adapters import sshconfig
from bastion.adapters.sshconfig import (
    AppHost,
    ClientConfig,
    GatewayEntry,
    IncludeChange,
    WrittenConfig,
)
from bastion.domain.errors import ConflictError, NotFoundError, SshError, UsageError
from bastion.domain.model import InstanceInfo
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_LOGIN_USER
from bastion.gateway import Context, Deps, endpoint_for, open_context, recover_pin
from bastion.inventory import observe

if TYPE_CHECKING:
    from bastion.adapters.aws.client import Ec2
    from bastion.domain.apply import Reporter

log = logging.getLogger(__name__)

RECORD_NAME = "ssh_config.json"
LOCAL_CONFIG_NAME = "ssh_config"
APP_KNOWN_HOSTS_NAME = "app_known_hosts"


@dataclass(frozen=True)
class SshConfigOptions:
    """What the user chose for the app hosts' side of the config."""

    app_user: str | None = None
    app_identity: Path | None = None
    hosts: tuple[str, ...] = ()


@dataclass
class SshConfigResult:
    """The rendered config and, with `--write`, where it went."""

    text: str
    config: ClientConfig
    path: Path | None = None
    changed: bool = False
    include: IncludeChange | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refreshed:
    """A written config that was brought up to date (or already was)."""

    path: Path
    changed: bool


def ssh_config(
    settings: Settings,
    deps: Deps,
    options: SshConfigOptions | None = None,
    write: bool = False,
    home: Path | None = None,
) -> SshConfigResult:
    """Render the gateway's client config; with `write`, install it and Include it once."""
    options = _validated(options or SshConfigOptions())
    ctx = open_context(settings, deps)
    config = build_client_config(ctx, options, settings.app_sg)
    text = sshconfig.render_client_config(config)
    warnings = tuple(
        f"several app hosts are named {n!r}; reach them by instance id"
        for n in sshconfig.ambiguous_names(config)
    )
    for warning in warnings:
        deps.reporter.warn(warning)
    if not write:
        return SshConfigResult(text, config, warnings=warnings)
    _write_local_copy(ctx, text)
    home = home or Path.home()
    path = sshconfig.config_path(home, settings.name)
    deps.reporter.step(f"write {path}")
    changed = sshconfig.write_if_changed(path, text)
    include = sshconfig.ensure_include(home / ".ssh" / "config", sshconfig.config_dir(home))
    record = WrittenConfig(
        path=path,
        app_user=options.app_user,
        app_identity=str(options.app_identity) if options.app_identity else None,
        hosts=options.hosts,
        app_sg=settings.app_sg,
    )
    sshconfig.write_if_changed(ctx.files.root / RECORD_NAME, record.to_json())
    return SshConfigResult(text, config, path, changed, include, warnings)


def refresh_ssh_config(
    ctx: Context, reporter: Reporter | None = None, instance: InstanceInfo | None = None
) -> Refreshed | None:
    """Rewrite a config written by `ssh-config --write` for the gateway as it is now."""
    record = _record(ctx)
    if record is None:
        return None
    options = SshConfigOptions(
        app_user=record.app_user,
        app_identity=Path(record.app_identity) if record.app_identity else None,
        hosts=record.hosts,
    )
    config = build_client_config(ctx, options, ctx.settings.app_sg or record.app_sg, instance)
    text = sshconfig.render_client_config(config)
    _write_local_copy(ctx, text)
    changed = sshconfig.write_if_changed(record.path, text)
    if reporter is not None:
        how = "updated" if changed else "already current"
        reporter.step(f"ssh config {record.path} {how} (address, keys, known_hosts)")
    return Refreshed(record.path, changed)


def forget_ssh_config(ctx: Context) -> Path | None:
    """Delete the config `ssh-config --write` installed for this gateway (the Include stays)."""
    record = _record(ctx)
    if record is None:
        return None
    record.path.unlink(missing_ok=True)
    return record.path


def ssh_command(
    settings: Settings, deps: Deps, host: str | None, args: Sequence[str] = ()
) -> list[str]:
    """Return the `ssh` command line for HOST (or the gateway itself) with a fresh config."""
    if host is not None and (not host or host.startswith("-") or any(c.isspace() for c in host)):
        raise UsageError(f"{host!r} is not a host; name an app host, e.g. app-1 or 10.0.1.5")
    binary = shutil.which("ssh")
    if binary is None:
        raise NotFoundError("the OpenSSH client `ssh` is not installed; install openssh-client")
    ctx = open_context(settings, deps)
    record = _record(ctx)
    options = SshConfigOptions()
    if record is not None:
        options = SshConfigOptions(
            record.app_user,
            Path(record.app_identity) if record.app_identity else None,
            record.hosts,
        )
    app_sg = settings.app_sg or (record.app_sg if record else None)
    config = build_client_config(ctx, options, app_sg)
    text = sshconfig.render_client_config(config)
    local = _write_local_copy(ctx, text)
    if record is not None:
        sshconfig.write_if_changed(record.path, text)
    if host is None:
        # The login user has no sessions at all (MaxSessions 0): hold the authenticated
        # connection open instead of asking for a shell it will never get.
        return [binary, "-F", str(local), "-N", config.gateway.alias, *args]
    return [binary, "-F", str(local), host, *args]


def exec_ssh(argv: Sequence[str], deps: Deps) -> None:
    """Replace this process with `argv` (through the injected exec in tests)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        deps.execvp(argv[0], list(argv))
    except OSError as exc:
        raise SshError(f"cannot run {argv[0]}: {exc}") from exc


def build_client_config(
    ctx: Context,
    options: SshConfigOptions,
    app_sg: str | None,
    instance: InstanceInfo | None = None,
) -> ClientConfig:
    """Gather the gateway's address, keys and app hosts into a `ClientConfig`."""
    settings, ec2, files = ctx.settings, ctx.ec2, ctx.files
    observed = observe(ec2, settings.name, app_sg)
    instance = instance or observed.instance
    if instance is None or instance.state != "running":
        state = f"is {instance.state}" if instance else "has no instance"
        raise NotFoundError(f"gateway {settings.name!r} {state}; run `bastion up`")
    if not files.login_key.exists():
        raise ConflictError(
            f"the login key of gateway {settings.name!r} is not on this machine "
            f"({files.login_key}); copy it from where you ran `bastion up`, or run `bastion burn`"
        )
    if files.read().pinned_host_key is None:
        recover_pin(ctx, instance)
    host, port = endpoint_for(settings, instance, instance.port or settings.port)
    group_ids = [g.group_id for g in (observed.group, *observed.stale_groups) if g]
    app_group_id = (
        observed.app_group.group_id
        if observed.app_group
        else (ec2.groups.group_referencing(group_ids) if group_ids else None)
    )
    app_hosts = tuple(
        AppHost(i.instance_id, i.tags.get("Name"), i.private_ip)
        for i in (ec2.compute.running_in_group(app_group_id) if app_group_id else ())
        if i.private_ip and i.instance_id != instance.instance_id
    )
    if options.hosts:
        patterns, source = options.hosts, "--hosts"
    else:
        subnet = ec2.network.subnet(instance.subnet_id) if instance.subnet_id else None
        patterns = sshconfig.cidr_patterns(subnet.vpc_cidr) if subnet else ()
        source = f"{subnet.vpc_id} {subnet.vpc_cidr}" if subnet else ""
    root = files.root.absolute()
    return ClientConfig(
        gateway=GatewayEntry(
            alias=files.alias,
            host=host,
            port=port,
            user=instance.tags.get(TAG_LOGIN_USER, settings.login_user),
            identity_file=root / files.login_key.name,
            known_hosts=root / files.known_hosts.name,
        ),
        app_hosts=app_hosts,
        patterns=patterns,
        pattern_source=source,
        app_user=options.app_user,
        app_identity=options.app_identity,
        app_known_hosts=root / APP_KNOWN_HOSTS_NAME,
    )


def permit_open_targets(ec2: Ec2, app_group_id: str | None) -> tuple[str, ...]:
    """Return `IP:22` for every running app host: what `--restrict-forwarding` permits."""
    if app_group_id is None:
        raise UsageError(
            "--restrict-forwarding needs to know the app hosts; pass --app-sg with their group"
        )
    addresses = {i.private_ip for i in ec2.compute.running_in_group(app_group_id) if i.private_ip}
    if not addresses:
        raise UsageError(
            f"--restrict-forwarding: no running instance in {app_group_id} to permit; start "
            "the app hosts first, or drop the flag"
        )
    ordered = sorted(addresses, key=ipaddress.ip_address)
    return tuple(f"{address}:{sshconfig.APP_SSH_PORT}" for address in ordered)


def permit_open_in(user_data: str) -> tuple[str, ...]:
    """Return the PermitOpen targets of the sshd_config inside a gateway's user data."""
    for line in user_data.splitlines():
        words = line.split()
        if words and words[0] == "PermitOpen":
            return tuple(words[1:])
    return ()


def stale_permit_open(ec2: Ec2, instance: InstanceInfo, wanted: tuple[str, ...]) -> str | None:
    """Say which app hosts a running gateway's PermitOpen does not let through, if any."""
    current = permit_open_in(ec2.compute.user_data(instance.instance_id))
    missing = [t for t in wanted if t not in current]
    if not missing:
        return None
    return (
        f"the running gateway {instance.instance_id} permits forwarding only to "
        f"{' '.join(current) or 'any host'}; {', '.join(missing)} become reachable only after "
        "a relaunch (`bastion burn`, or `bastion down` then `bastion up --restrict-forwarding`)"
    )


def _validated(options: SshConfigOptions) -> SshConfigOptions:
    sshconfig.validate_app_user(options.app_user)
    sshconfig.validate_patterns(options.hosts)
    identity = options.app_identity
    if identity is not None:
        identity = identity.expanduser().absolute()
        if not identity.is_file():
            raise UsageError(f"--app-identity {identity} does not exist; pass a private key file")
    return SshConfigOptions(options.app_user, identity, options.hosts)


def _record(ctx: Context) -> WrittenConfig | None:
    path = ctx.files.root / RECORD_NAME
    try:
        return WrittenConfig.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise ConflictError(
            f"{path} is unreadable ({exc}); rerun `bastion ssh-config --write`"
        ) from exc


def _write_local_copy(ctx: Context, text: str) -> Path:
    path = ctx.files.root / LOCAL_CONFIG_NAME
    sshconfig.write_if_changed(path, text)
    return path
