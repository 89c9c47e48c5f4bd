"""The OpenSSH client config of a gateway: built from AWS, and kept current once written.

`refresh_ssh_config` is the one function that keeps a written config current; `up` calls it
(and through `up`, `burn`'s relaunch), and `rotate` calls it after a key change.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from bastion.adapters import sshconfig
from bastion.adapters.sshconfig import AppHost, ClientConfig, GatewayEntry, WrittenConfig
from bastion.domain import sshnames
from bastion.domain.apply import Reporter
from bastion.domain.console import host_keys_from_console
from bastion.domain.errors import BastionError, ConflictError, NotFoundError, UsageError
from bastion.domain.fingerprints import fingerprint
from bastion.domain.model import InstanceInfo
from bastion.domain.plan import gateway_runner
from bastion.domain.rules import rule_owner
from bastion.domain.tags import TAG_CERTIFICATES, TAG_HOST_KEY_FINGERPRINT, TAG_LOGIN_USER
from bastion.usecases.ports import Cloud, Deps
from bastion.usecases.shared.certificates import identity_path, refresh_login_certificate
from bastion.usecases.shared.context import Context, endpoint_for
from bastion.usecases.shared.hostkey import pin_from_console
from bastion.usecases.shared.inventory import observe_with_app_group

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


@dataclass(frozen=True)
class Refreshed:
    """A written config that was brought up to date (or already was)."""

    path: Path
    changed: bool


def refresh_ssh_config(
    ctx: Context, reporter: Reporter | None = None, instance: InstanceInfo | None = None
) -> Refreshed | None:
    """Rewrite a config written by `ssh-config --write` for the gateway as it is now."""
    record = read_record(ctx)
    if record is None:
        return None
    options = SshConfigOptions(
        app_user=record.app_user,
        app_identity=Path(record.app_identity) if record.app_identity else None,
        hosts=record.hosts,
    )
    config = build_client_config(ctx, options, ctx.settings.app_sg or record.app_sg, instance)
    text = sshconfig.render_client_config(config)
    write_local_copy(ctx, text)
    changed = sshconfig.write_if_changed(record.path, text)
    if reporter is not None:
        how = "updated" if changed else "already current"
        reporter.step(f"ssh config {record.path} {how} (address, keys, known_hosts)")
        for warning in name_warnings(config):
            reporter.warn(warning)
    return Refreshed(record.path, changed)


def refresh_written_config(ctx: Context, deps: Deps) -> str | None:
    """Keep a config written by `bastion ssh-config --write` current (address, keys)."""
    try:
        refreshed = refresh_ssh_config(ctx, deps.reporter)
    except BastionError as exc:
        deps.reporter.warn(
            f"could not update the ssh config: {exc.message}; rerun `bastion ssh-config --write`"
        )
        return None
    return str(refreshed.path) if refreshed else None


def forget_ssh_config(ctx: Context) -> Path | None:
    """Delete the config `ssh-config --write` installed for this gateway (the Include stays)."""
    record = read_record(ctx)
    if record is None:
        return None
    record.path.unlink(missing_ok=True)
    return record.path


def build_client_config(
    ctx: Context,
    options: SshConfigOptions,
    app_sg: str | None,
    instance: InstanceInfo | None = None,
    home: Path | None = None,
    deps: Deps | None = None,
) -> ClientConfig:
    """Gather the gateway's address, keys, app hosts and the operator's own names.

    On a certificate gateway the identity is the operator's own key (`bastion cert` pointed at
    it), with a fresh certificate when `deps` is given; the host key is pinned again from the
    console when the instance's tag names another key than the pin (a relaunch elsewhere).
    """
    settings, aws, files = ctx.settings, ctx.aws, ctx.files
    observed = observe_with_app_group(aws, settings.name, app_sg)
    instance = instance or observed.instance
    if instance is None or instance.state != "running":
        state = f"is {instance.state}" if instance else "has no instance"
        raise NotFoundError(f"gateway {settings.name!r} {state}; run `bastion up`")
    identity = files.root.absolute() / files.login_key.name
    certified: Path | None = None
    if instance.tags.get(TAG_CERTIFICATES) == "true":
        pointer = identity_path(ctx, False)
        certified = (
            refresh_login_certificate(ctx, deps)
            if deps is not None
            else (pointer if pointer.is_symlink() else None)
        )
    if certified is not None:
        identity = certified.absolute()
    elif not files.login_key.exists():
        runner = gateway_runner(observed)
        if runner and runner != ctx.operator[-255:]:
            raise ConflictError(
                f"gateway {settings.name!r} is run by {rule_owner(runner)} and its login key is "
                f"not on this machine ({files.login_key}); ask {rule_owner(runner)} for it, or "
                "use a gateway of your own with `--name NAME`"
            )
        raise ConflictError(
            f"the login key of gateway {settings.name!r} is not on this machine "
            f"({files.login_key}); copy it from where you ran `bastion up`, or run `bastion burn`"
        )
    pinned = files.read().pinned_host_key
    tagged = instance.tags.get(TAG_HOST_KEY_FINGERPRINT)
    if pinned is None or (tagged and fingerprint(pinned) != tagged):
        pin_from_console(ctx, None, instance, wait=False)
    host, port = endpoint_for(settings, instance, instance.port or settings.port)
    group_ids = [g.group_id for g in (observed.group, *observed.stale_groups) if g]
    app_group_id = (
        observed.app_group.group_id
        if observed.app_group
        else (aws.groups.group_referencing(group_ids) if group_ids else None)
    )
    app_hosts = tuple(
        AppHost(i.instance_id, i.tags.get("Name"), i.private_ip, app_console_key(aws, i))
        for i in (aws.compute.running_in_group(app_group_id) if app_group_id else ())
        if i.private_ip and i.instance_id != instance.instance_id
    )
    pin_app_hosts(files.root / APP_KNOWN_HOSTS_NAME, app_hosts)
    if options.hosts:
        patterns, source = options.hosts, "--hosts"
    else:
        subnet = aws.network.subnet(instance.subnet_id) if instance.subnet_id else None
        patterns = sshconfig.cidr_patterns(subnet.vpc_cidr) if subnet else ()
        source = f"{subnet.vpc_id} {subnet.vpc_cidr}" if subnet else ""
    root = files.root.absolute()
    return ClientConfig(
        gateway=GatewayEntry(
            alias=files.alias,
            host=host,
            port=port,
            user=instance.tags.get(TAG_LOGIN_USER, settings.login_user),
            identity_file=identity,
            known_hosts=root / files.known_hosts.name,
        ),
        app_hosts=app_hosts,
        patterns=patterns,
        pattern_source=source,
        app_user=options.app_user,
        app_identity=options.app_identity,
        app_known_hosts=root / APP_KNOWN_HOSTS_NAME,
        user_names=operator_host_names(home or Path.home()),
        other_gateway_names=other_gateway_host_names(home or Path.home(), settings.name),
    )


def operator_host_names(home: Path) -> tuple[sshconfig.UserHostName, ...]:
    """Return the names the operator's own `~/.ssh/config` (and its Includes) use."""
    generated = tuple(sshconfig.config_dir(home).glob(f"{sshconfig.FILE_PREFIX}*"))
    return sshconfig.user_host_names(home / ".ssh" / "config", skip=generated)


def other_gateway_host_names(home: Path, name: str) -> tuple[sshconfig.UserHostName, ...]:
    """Return the Host names of the other gateways' generated files."""
    own = sshconfig.config_path(home, name)
    others = sorted(sshconfig.config_dir(home).glob(f"{sshconfig.FILE_PREFIX}*"))
    return tuple(n for p in others if p != own for n in sshconfig.user_host_names(p))


def name_warnings(config: ClientConfig) -> tuple[str, ...]:
    """Say, one warning each, which Name tags name no alias and which own names are excluded."""
    warnings = []
    refused = sshconfig.refused_names(config)
    if refused:
        listed = "; ".join(
            f"{r.name!r} on {', '.join(r.instance_ids)} ({r.reason})" for r in refused
        )
        warnings.append(
            f"app host names left out of the ssh config (reach those hosts as "
            f"INSTANCE_ID.{config.namespace}): {listed}"
        )
    excluded = sshconfig.address_patterns(config)[len(config.patterns) :]
    if excluded:
        where = {f"!{u.pattern}": u.where for u in config.user_names}
        listed = ", ".join(f"{p} ({where.get(p, 'your config')})" for p in excluded)
        warnings.append(
            f"the app address patterns leave the hosts your own ssh config names to it: {listed}"
        )
    gateway = config.gateway.alias
    mine = [
        u.where
        for u in config.user_names
        if not sshnames.is_catch_all(u.pattern) and sshnames.glob_match(u.pattern, gateway)
    ]
    if mine:
        warnings.append(
            f"your own ssh config names {gateway} too ({', '.join(mine)}): bastion's block, "
            "Included first, wins for that name; rename or remove yours"
        )
    shared = [
        f"{n.pattern} ({n.where})"
        for n in config.other_gateway_names
        if not sshnames.is_catch_all(n.pattern)
        and any(sshnames.globs_overlap(p, n.pattern) for p in config.patterns if p[:1] != "!")
    ]
    if shared:
        warnings.append(
            f"another gateway's ssh config routes the same addresses: {', '.join(shared)}; ssh "
            "takes those through the gateway whose file comes first, so give one of them "
            "`bastion ssh-config --write --hosts PATTERN`"
        )
    return tuple(warnings)


def app_console_key(aws: Cloud, instance: InstanceInfo) -> str | None:
    """Return the Ed25519 host key an app instance printed on its console, if it printed one.

    A console naming two different keys counts as none: that host is not pinned.
    """
    found = host_keys_from_console(aws.evidence.console_output(instance.instance_id))
    if found.contradicts():
        log.warning("%s: its console names several Ed25519 keys; not pinned", instance.instance_id)
        return None
    return found.key_of_type("ssh-ed25519")


def pin_app_hosts(path: Path, hosts: tuple[AppHost, ...]) -> None:
    """Write the console-pinned app host keys into the per-gateway app known_hosts."""
    if not any(h.host_key for h in hosts):
        return
    try:
        existing = path.read_text()
    except FileNotFoundError:
        existing = ""
    sshconfig.write_if_changed(path, sshconfig.app_known_hosts_text(existing, hosts), 0o644)


def unpinned_app_hosts(config: ClientConfig) -> str | None:
    """Name, in one warning, the app hosts whose console shows no key (trusted on first use)."""
    loose = [h for h in config.app_hosts if not h.host_key]
    if not loose:
        return None
    names = ", ".join(
        f"{_shown(h.name)} ({h.instance_id})" if h.name else h.instance_id for h in loose
    )
    return (
        f"the console of {names} shows no host key: their keys are learned on first use "
        "(accept-new, only over the pinned gateway); every other app host is pinned strictly"
    )


def _shown(name: str) -> str:
    # A Name tag is anyone's text: quoted, escapes and all, unless it is plainly printable.
    return name if name.isprintable() and " " not in name else repr(name)


def permit_open_targets(aws: Cloud, app_group_id: str | None) -> tuple[str, ...]:
    """Return `IP:22` for every running app host: what `--restrict-forwarding` permits."""
    if app_group_id is None:
        raise UsageError(
            "--restrict-forwarding needs to know the app hosts; pass --app-sg with their group"
        )
    addresses = {i.private_ip for i in aws.compute.running_in_group(app_group_id) if i.private_ip}
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


def stale_permit_open(aws: Cloud, instance: InstanceInfo, wanted: tuple[str, ...]) -> str | None:
    """Say which app hosts a running gateway's PermitOpen does not let through, if any."""
    current = permit_open_in(aws.compute.user_data(instance.instance_id))
    missing = [t for t in wanted if current and not any(_permits(c, t) for c in current)]
    loose = [c for c in current or ("*:*",) if c not in wanted]
    if not missing and not loose:
        return None
    relaunch = (
        "takes effect only at a relaunch (`bastion burn`, or `bastion down` then "
        "`bastion up --restrict-forwarding`)"
    )
    reach = ", ".join(_describe_permit(c) for c in current or ("*:*",))
    if missing:
        return (
            f"the running gateway {instance.instance_id} lets the login forward only to {reach}, "
            f"so {', '.join(missing)} cannot be reached; the new list {relaunch}"
        )
    return (
        f"the running gateway {instance.instance_id} lets the login forward to {reach}, not just "
        f"the app hosts ({', '.join(wanted) or 'none run'}); the narrower list {relaunch}"
    )


def _describe_permit(entry: str) -> str:
    """Say what one PermitOpen entry lets through, in words (`*:22`: port 22 of any host)."""
    host, _, port = entry.rpartition(":")
    if host == "*":
        return "any host and port" if port == "*" else f"port {port} of any host ({entry})"
    return f"any port of {host}" if port == "*" else entry


def _permits(rule: str, target: str) -> bool:
    """Tell whether the PermitOpen entry `rule` lets `target` (host:port) through."""
    rule_host, _, rule_port = rule.rpartition(":")
    host, _, port = target.rpartition(":")
    return rule_host in ("*", host) and rule_port in ("*", port)


def read_record(ctx: Context) -> WrittenConfig | None:
    path = ctx.files.root / RECORD_NAME
    try:
        return WrittenConfig.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise ConflictError(
            f"{path} is unreadable ({exc}); rerun `bastion ssh-config --write`"
        ) from exc


def write_local_copy(ctx: Context, text: str) -> Path:
    path = ctx.files.root / LOCAL_CONFIG_NAME
    sshconfig.write_if_changed(path, text)
    return path
