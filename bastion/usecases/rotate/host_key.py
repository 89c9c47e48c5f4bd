"""`rotate --host-key`, in place (OpenSSH's UpdateHostKeys is the model): trust both, switch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.adapters import keys
from bastion.adapters.localstate import GatewayFiles
from bastion.domain.apply import apply_plan
from bastion.domain.errors import ConflictError, HostKeyMismatchError, SshError
from bastion.domain.model import Action, Plan
from bastion.domain.rotate_plan import plan_rotate_host_key
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_HOST_KEY_CREATED_AT, TAG_HOST_KEY_FINGERPRINT
from bastion.usecases.ports import Deps
from bastion.usecases.rotate.channel import (
    Gateway,
    RotateResult,
    connect,
    not_due,
    parse_host_keys,
    refuse_mid_relaunch,
    stamp,
)
from bastion.usecases.shared.clientconfig import refresh_written_config
from bastion.usecases.shared.context import journal_for, open_context, tag_time


def _body(public_line: str) -> str:
    return keys.public_key_body(public_line)


def _known_hosts_keys(files: GatewayFiles) -> list[str]:
    if not files.known_hosts.exists():
        return []
    return [
        " ".join(line.split()[1:3])
        for line in files.known_hosts.read_text().splitlines()
        if len(line.split()) >= 3 and not line.startswith("#")
    ]


def rotate_host_key(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
    instance: str | None = None,
) -> RotateResult:
    """Rotate the gateway's host key in place; the client trusts both keys during the switch."""
    ctx = open_context(
        settings, deps, lock_for=None if dry_run else "rotate --host-key", chosen_instance=instance
    )
    gateway, observed = connect(ctx, deps, host_key=True)
    refuse_mid_relaunch(ctx, observed)
    files = ctx.files
    staged_line = (
        files.next_host_key_pub.read_text().strip() if files.next_host_key_pub.exists() else None
    )
    if staged_line is None:
        skip = not_due(
            tag_time(gateway.instance, TAG_HOST_KEY_CREATED_AT),
            deps.clock.now(),
            if_older_than,
            "host key",
        )
        if skip:
            return RotateResult(Plan("rotate", settings.name, ()), [], skip)
    server = parse_host_keys(gateway.keyctl("list-host-keys"))
    pinned_line = gateway.ctx.files.read().pinned_host_key
    assert pinned_line is not None
    plan = plan_rotate_host_key(
        settings.name,
        _body(pinned_line),
        _body(staged_line) if staged_line else None,
        server.get("active"),
        server.get("staged"),
        _known_hosts_keys(files),
        gateway.instance.tags.get(TAG_HOST_KEY_FINGERPRINT),
    )
    for warning in plan.warnings:
        deps.reporter.warn(warning)
    if dry_run:
        return RotateResult(plan, [])
    staged_body = _body(staged_line) if staged_line else None
    old = pinned_line if _body(pinned_line) != staged_body else None
    handlers = HostKeyRotation(gateway, old)
    outcome = apply_plan(
        plan, handlers.table(), deps.reporter, journal_for(files), before_each=deps.before_each
    )
    refresh_written_config(ctx, deps)
    return RotateResult(plan, outcome.done)


class HostKeyRotation:
    """The side effects behind each step of a host-key rotation.

    The new private key exists only in this process's memory and on the gateway: it goes over
    the admin channel's stdin and is never written locally, logged or put on a command line.
    """

    def __init__(self, gateway: Gateway, old: str | None) -> None:
        self.gateway = gateway
        self.files = gateway.ctx.files
        self.old = old  # the host key pinned when this run began, unless already the new one
        self.key: keys.SshKey | None = None

    def table(self) -> dict[str, Any]:
        """Map action kinds to handlers."""
        return {
            "make_next_host_key": self.make_next,
            "trust_both_host_keys": self.trust_both,
            "gateway_add_host_key": self.add,
            "gateway_activate_host_key": self.activate,
            "verify_next_host_key": self.verify_next,
            "pin_next_host_key": self.pin_next,
            "gateway_remove_host_key": self.remove_old,
            "verify_old_host_key_gone": self.verify_old_gone,
            "trust_only_next_host_key": self.trust_only_next,
            "retag_host_key": self.retag,
            "finish_host_key_rotation": self.finish,
        }

    def _new(self) -> str:
        return self.files.next_host_key_pub.read_text().strip()

    def _trust(self, lines: list[str]) -> None:
        alias = self.files.alias
        unique = list(dict.fromkeys(_body(line) for line in lines))
        text = "".join(keys.known_hosts_line(alias, body) for body in unique)
        keys.write_public_text(self.files.known_hosts, text)

    def make_next(self, action: Action, results: dict[str, Any]) -> None:
        """Make the new host key; only its public half is written (the half-done marker)."""
        self.key = keys.generate_key(f"bastion-{self.gateway.ctx.settings.name}-host")
        keys.write_public_text(self.files.next_host_key_pub, self.key.public_line + "\n")
        self.gateway.alternates.append(self.key.public_line)
        results["new host key"] = self.key.fingerprint

    def trust_both(self, action: Action, results: dict[str, Any]) -> None:
        """Accept the current and the new host key locally (UpdateHostKeys' model)."""
        pinned = self.files.read().pinned_host_key
        assert pinned is not None
        self._trust([pinned, self._new()])

    def add(self, action: Action, results: dict[str, Any]) -> None:
        """Stage the new key on the gateway; the private half travels on stdin only."""
        if self.key is None or _body(self.key.public_line) != _body(self._new()):
            raise ConflictError(
                "the staged host key's private half is gone; run `bastion rotate --host-key` again"
            )
        self.gateway.keyctl(
            f"add-host-key {_body(self.key.public_line)}", stdin=self.key.private_openssh
        )

    def activate(self, action: Action, results: dict[str, Any]) -> None:
        """Make sshd present the new key (the old one stays staged until proven unneeded)."""
        self.gateway.keyctl(f"activate-host-key {keys.fingerprint(self._new())}")

    def verify_next(self, action: Action, results: dict[str, Any]) -> None:
        """Log in on a fresh connection pinned only to the new key; roll back on failure."""
        gateway = self.gateway
        new = self._new()
        try:
            gateway.deps.probe.verify_login(
                gateway.host,
                gateway.port,
                gateway.ctx.settings.login_user,
                gateway.login_key_path or str(self.files.login_key),
                new,
            )
        except SshError as exc:
            rolled_back = self._roll_back()
            raise SshError(
                f"the gateway did not prove the new host key {keys.fingerprint(new)} "
                f"({exc.message}); "
                + (
                    f"rolled back: the gateway presents the old host key "
                    f"{keys.fingerprint(rolled_back)} again and the new one is removed"
                    if rolled_back
                    else "run `bastion rotate --host-key` again"
                )
            ) from exc

    def _roll_back(self) -> str | None:
        old = self.old
        if old is None:
            return None
        server = parse_host_keys(self.gateway.keyctl("list-host-keys"))
        if _body(old) not in server.values():
            return None
        if server.get("active") != _body(old):
            self.gateway.keyctl(f"activate-host-key {keys.fingerprint(old)}")
        for body in parse_host_keys(self.gateway.keyctl("list-host-keys")).values():
            if body != _body(old):
                self.gateway.keyctl(f"remove-host-key {keys.fingerprint(body)}")
        self.files.pin_host_key(old)
        self.files.next_host_key_pub.unlink(missing_ok=True)
        self.gateway.pinned = old
        return old

    def pin_next(self, action: Action, results: dict[str, Any]) -> None:
        """Pin the proven key for bastion (known_hosts keeps both until the old one is gone)."""
        new = self._new()
        keys.write_public_text(self.files.host_key_pub, new + "\n")
        self.gateway.pinned = new

    def remove_old(self, action: Action, results: dict[str, Any]) -> None:
        """Delete the old host key from the gateway and reload sshd."""
        self.gateway.keyctl(f"remove-host-key {action.params['fingerprint']}")

    def verify_old_gone(self, action: Action, results: dict[str, Any]) -> None:
        """Check that the gateway holds and presents only the new key."""
        new = _body(self._new())
        held = parse_host_keys(self.gateway.keyctl("list-host-keys"))
        if set(held.values()) != {new}:
            raise ConflictError(
                f"the gateway still holds other host keys ({len(held)} in all); "
                "run `bastion rotate --host-key` again"
            )
        if self.old is None or _body(self.old) == new:
            return
        gateway = self.gateway
        try:
            gateway.deps.probe.verify_login(
                gateway.host,
                gateway.port,
                gateway.ctx.settings.login_user,
                gateway.login_key_path or str(self.files.login_key),
                self.old,
            )
        except HostKeyMismatchError:
            return
        raise ConflictError("the gateway still presents the old host key; rerun the rotation")

    def trust_only_next(self, action: Action, results: dict[str, Any]) -> None:
        """Trust only the new key in known_hosts and the paramiko pin."""
        self.files.pin_host_key(self._new())

    def retag(self, action: Action, results: dict[str, Any]) -> None:
        """Record the new host key's fingerprint and age in the instance's tags."""
        self.gateway.ctx.aws.compute.tag(
            self.gateway.instance.instance_id,
            {
                TAG_HOST_KEY_FINGERPRINT: keys.fingerprint(self._new()),
                TAG_HOST_KEY_CREATED_AT: stamp(self.gateway.deps),
            },
        )

    def finish(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the half-done marker: the rotation is complete."""
        self.files.next_host_key_pub.unlink(missing_ok=True)
