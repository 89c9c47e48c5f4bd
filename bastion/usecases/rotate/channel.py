"""The key-management channel to a running gateway, and what every rotation checks first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bastion.domain.errors import ConflictError, HostKeyMismatchError, NotFoundError
from bastion.domain.login_keys import parse_authorized_keys
from bastion.domain.model import Action, InstanceInfo, ObservedGateway, Plan
from bastion.domain.tags import TAG_CERTIFICATES
from bastion.usecases.ports import Deps
from bastion.usecases.shared.certificates import issue_certificate, operator_key
from bastion.usecases.shared.context import Context, endpoint_for
from bastion.usecases.shared.hostkey import pin_from_console
from bastion.usecases.shared.identity import identify
from bastion.usecases.shared.inventory import observe


@dataclass
class RotateResult:
    """What `rotate` planned and did."""

    plan: Plan
    applied: list[Action]
    skipped_reason: str | None = None
    # Login keys bastion did not put there, removed by this rotation; sessions ended per key.
    removed_unknown: list[str] = field(default_factory=list)
    ended_sessions: dict[str, int] = field(default_factory=dict)


def parse_authorized_fingerprints(listing: str) -> list[str]:
    """Return the fingerprints of the keys in `bastion-keyctl list` output."""
    return [key.fingerprint for key in parse_authorized_keys(listing)]


def parse_host_keys(listing: str) -> dict[str, str]:
    """Return {"active": KEY, "staged": KEY} from `bastion-keyctl list-host-keys` output."""
    found: dict[str, str] = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] in ("active", "staged"):
            found[fields[0]] = f"{fields[1]} {fields[2]}"
    return found


@dataclass
class Gateway:
    """A running gateway reachable over SSH with the pinned host key.

    `alternates` are other host keys bastion itself made (a host key being rotated in): a
    connection tries the pinned key first, then those, and never learns any other key.
    """

    ctx: Context
    deps: Deps
    instance: InstanceInfo
    host: str
    port: int
    pinned: str
    alternates: list[str] = field(default_factory=list)
    # The folder's keys, or on a certificate gateway the operator's own key with certificates.
    admin_key_path: str = ""
    login_key_path: str = ""

    def _with_host_key(self, call: Callable[[str], str]) -> str:
        failure: HostKeyMismatchError | None = None
        for key in dict.fromkeys([self.pinned, *self.alternates]):
            try:
                result = call(key)
            except HostKeyMismatchError as exc:
                failure = exc
                continue
            if key != self.pinned:
                self.alternates.append(self.pinned)
                self.pinned = key
            return result
        assert failure is not None
        raise failure

    def keyctl(self, command: str, stdin: str | None = None) -> str:
        """Run a key-management request as the admin user (a secret goes on stdin only)."""
        settings = self.ctx.settings
        probe = self.deps.probe
        admin_key = self.admin_key_path or str(self.ctx.files.admin_key)

        def call(host_key: str) -> str:
            if stdin is None:
                return probe.keyctl(
                    self.host, self.port, settings.admin_user, admin_key, host_key, command
                )
            return probe.keyctl(
                self.host, self.port, settings.admin_user, admin_key, host_key, command, stdin
            )

        return self._with_host_key(call)

    def login(self, key_path: str) -> str:
        """Log in as the daily user with `key_path`; return the host key fingerprint."""
        user = self.ctx.settings.login_user
        return self._with_host_key(
            lambda host_key: self.deps.probe.verify_login(
                self.host, self.port, user, key_path, host_key
            )
        )


def connect(ctx: Context, deps: Deps, host_key: bool = False) -> tuple[Gateway, Any]:
    """Find the running gateway and its pinned host key, or say what to run first."""
    command = "rotate --host-key" if host_key else "rotate"
    observed = observe(ctx.aws, ctx.settings.name, None, only=identify(ctx, deps, command))
    instance = observed.instance
    if instance is None:
        raise NotFoundError(
            f"gateway {ctx.settings.name!r} has no live instance; run `bastion up` first"
        )
    if instance.state != "running":
        raise ConflictError(
            f"gateway {instance.instance_id} is {instance.state}; run `bastion up` to start it"
        )
    local = ctx.files.read()
    keys_here = local.login_fingerprint is not None and local.admin_fingerprint is not None
    if instance.tags.get(TAG_CERTIFICATES) == "true" and not keys_here:
        return _connect_with_certificates(ctx, deps, observed, instance)
    if local.pinned_host_key is None or local.login_fingerprint is None:
        raise ConflictError("this machine lacks the gateway's keys; run `bastion up` first")
    if local.admin_fingerprint is None:
        raise ConflictError(
            "the key-management key is missing, so keys cannot be changed in place; "
            "run `bastion rotate --relaunch`"
        )
    port = instance.port or ctx.settings.port
    host, port = endpoint_for(ctx.settings, instance, port)
    alternates = []
    if ctx.files.next_host_key_pub.exists():
        alternates.append(ctx.files.next_host_key_pub.read_text().strip())
    gateway = Gateway(ctx, deps, instance, host, port, local.pinned_host_key, alternates)
    return gateway, observed


def _connect_with_certificates(
    ctx: Context, deps: Deps, observed: ObservedGateway, instance: InstanceInfo
) -> tuple[Gateway, Any]:
    """Reach a certificate gateway as this operator: console pin, own key, own certificates."""
    pinned = ctx.files.read().pinned_host_key or pin_from_console(ctx, deps, instance, wait=False)
    key = operator_key(ctx)
    admin = issue_certificate(ctx.settings, deps, key=key, admin=True, context=ctx)
    login = issue_certificate(ctx.settings, deps, key=key, context=ctx)
    host, port = endpoint_for(ctx.settings, instance, instance.port or ctx.settings.port)
    gateway = Gateway(ctx, deps, instance, host, port, pinned, [], str(admin.identity))
    gateway.login_key_path = str(login.identity)
    return gateway, observed


def refuse_mid_relaunch(ctx: Context, observed: ObservedGateway) -> None:
    if observed.standby or observed.retiring or ctx.files.relaunch_dir.exists():
        raise ConflictError(
            f"a relaunch of gateway {ctx.settings.name!r} is half done; run "
            "`bastion rotate --relaunch` to finish it first"
        )


def not_due(
    since: datetime | None, now: datetime, threshold: timedelta | None, what: str
) -> str | None:
    if threshold is None or since is None:
        return None
    age = now - since
    return None if age >= threshold else f"{what} is {age.days} days old; not due yet"


def stamp(deps: Deps) -> str:
    """Return the current time as bastion writes it in tags."""
    return deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
