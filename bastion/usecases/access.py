"""Use cases `ssh-config` and `ssh`: reach app hosts through the gateway with OpenSSH ProxyJump."""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.adapters import sshconfig
from bastion.adapters.sshconfig import ClientConfig, IncludeChange, WrittenConfig
from bastion.domain.errors import NotFoundError, SshError, UsageError
from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.clientconfig import (
    RECORD_NAME,
    SshConfigOptions,
    build_client_config,
    name_warnings,
    read_record,
    unpinned_app_hosts,
    write_local_copy,
)
from bastion.usecases.shared.context import open_context

log = logging.getLogger(__name__)


@dataclass
class SshConfigResult:
    """The rendered config and, with `--write`, where it went."""

    text: str
    config: ClientConfig
    path: Path | None = None
    changed: bool = False
    include: IncludeChange | None = None
    warnings: tuple[str, ...] = ()


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
    home = home or Path.home()
    config = build_client_config(ctx, options, settings.app_sg, home=home, deps=deps)
    text = sshconfig.render_client_config(config)
    unpinned = unpinned_app_hosts(config)
    warnings = name_warnings(config) + ((unpinned,) if unpinned else ())
    for warning in warnings:
        deps.reporter.warn(warning)
    if not write:
        return SshConfigResult(text, config, warnings=warnings)
    write_local_copy(ctx, text)
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


def ssh_command(
    settings: Settings, deps: Deps, host: str | None, args: Sequence[str] = ()
) -> list[str]:
    """Return the `ssh` command line for HOST (or the gateway itself) with a fresh config."""
    if host is not None and (not host or host.startswith("-") or any(c.isspace() for c in host)):
        raise UsageError(
            f"{host!r} is not a host; name an app host, e.g. app-1, app-1.default.bastion or "
            "10.0.1.5"
        )
    binary = shutil.which("ssh")
    if binary is None:
        raise NotFoundError("the OpenSSH client `ssh` is not installed; install openssh-client")
    ctx = open_context(settings, deps)
    record = read_record(ctx)
    options = SshConfigOptions()
    if record is not None:
        options = SshConfigOptions(
            record.app_user,
            Path(record.app_identity) if record.app_identity else None,
            record.hosts,
        )
    app_sg = settings.app_sg or (record.app_sg if record else None)
    config = build_client_config(ctx, options, app_sg, deps=deps)
    text = sshconfig.render_client_config(config)
    local = write_local_copy(ctx, text)
    if record is not None:
        sshconfig.write_if_changed(record.path, text)
    if host is None:
        # The login user has no sessions at all (MaxSessions 0): hold the authenticated
        # connection open instead of asking for a shell it will never get.
        alias = config.gateway.alias
        return [binary, "-F", str(local), "-N", *connected_notice(alias), alias, *args]
    # The short Name tag (or instance id) maps to its alias in the gateway's namespace.
    return [binary, "-F", str(local), sshconfig.ssh_target(config, host), *args]


def connected_notice(alias: str) -> list[str]:
    """Return ssh options that say, on stderr and once logged in, what this session is."""
    # ssh runs LocalCommand once it is connected and authenticated: only then is "connected"
    # true. Fixed text without % or $, so ssh expands nothing in it.
    notice = (
        f"bastion: connected to {alias}; forwarding only (no shell, no command): "
        "it proves the gateway lets you in; press Ctrl-C to end it"
    )
    return ["-o", "PermitLocalCommand=yes", "-o", f"LocalCommand=echo {shlex.quote(notice)} >&2"]


def exec_ssh(argv: Sequence[str], deps: Deps) -> None:
    """Replace this process with `argv` (through the injected exec in tests)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        deps.execvp(argv[0], list(argv))
    except OSError as exc:
        raise SshError(f"cannot run {argv[0]}: {exc}") from exc


def _validated(options: SshConfigOptions) -> SshConfigOptions:
    sshconfig.validate_app_user(options.app_user)
    sshconfig.validate_patterns(options.hosts)
    identity = options.app_identity
    if identity is not None:
        identity = identity.expanduser().absolute()
        if not identity.is_file():
            raise UsageError(f"--app-identity {identity} does not exist; pass a private key file")
    return SshConfigOptions(options.app_user, identity, options.hosts)


__all__ = ["SshConfigOptions", "SshConfigResult", "exec_ssh", "ssh_command", "ssh_config"]
