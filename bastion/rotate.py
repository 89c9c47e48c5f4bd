"""Use case `rotate`: replace the gateway's login key (or host key) without a lockout."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bastion import keys
from bastion.apply import apply_plan
from bastion.errors import ConflictError, NotFoundError, SshError
from bastion.gateway import Context, Deps, _journal, base_tags, endpoint_for, open_context
from bastion.inventory import observe
from bastion.model import TAG_KEY_FINGERPRINT, Action, InstanceInfo, Plan
from bastion.plan import key_pair_name, plan_rotate_login
from bastion.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RotateResult:
    """What `rotate` planned and did."""

    plan: Plan
    applied: list[Action]
    skipped_reason: str | None = None


def parse_authorized_fingerprints(listing: str) -> list[str]:
    """Return the fingerprints of the keys in `bastion-keyctl list` output."""
    found = []
    for line in listing.splitlines():
        fields = line.split()
        for index, field in enumerate(fields[:-1]):
            if field.startswith(("ssh-", "sk-ssh-")):
                found.append(keys.fingerprint(f"{field} {fields[index + 1]}"))
                break
    return found


@dataclass
class Gateway:
    """A running gateway reachable over SSH with the pinned host key."""

    ctx: Context
    deps: Deps
    instance: InstanceInfo
    host: str
    port: int
    pinned: str

    def keyctl(self, command: str) -> str:
        """Run a key-management request as the admin user."""
        settings = self.ctx.settings
        return self.deps.probe.keyctl(
            self.host,
            self.port,
            settings.admin_user,
            str(self.ctx.files.admin_key),
            self.pinned,
            command,
        )

    def login(self, key_path: str) -> str:
        """Log in as the daily user with `key_path`; return the host key fingerprint."""
        return self.deps.probe.verify_login(
            self.host, self.port, self.ctx.settings.login_user, key_path, self.pinned
        )


def connect(ctx: Context, deps: Deps) -> tuple[Gateway, Any]:
    """Find the running gateway and its pinned host key, or say what to run first."""
    observed = observe(ctx.ec2, ctx.settings.name, None)
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
    if local.pinned_host_key is None or local.login_fingerprint is None:
        raise ConflictError("this machine lacks the gateway's keys; run `bastion up` first")
    if local.admin_fingerprint is None:
        raise ConflictError(
            "the key-management key is missing, so keys cannot be changed in place; "
            "run `bastion rotate --relaunch`"
        )
    port = instance.port or ctx.settings.port
    host, port = endpoint_for(ctx.settings, instance, port)
    return Gateway(ctx, deps, instance, host, port, local.pinned_host_key), observed


def rotate_login(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
) -> RotateResult:
    """Rotate the daily login key in place over the key-management channel."""
    ctx = open_context(settings, deps)
    gateway, observed = connect(ctx, deps)
    files = ctx.files
    current = files.read().login_fingerprint
    assert current is not None
    rotating_in = files.next_login_fingerprint()
    if if_older_than is not None and rotating_in is None:
        created = observed.key_pair.created_at if observed.key_pair else None
        age = deps.clock.now() - created if created else None
        if age is not None and age < if_older_than:
            plan = Plan("rotate", settings.name, ())
            return RotateResult(plan, [], f"login key is {age.days} days old; not due yet")
    on_gateway = parse_authorized_fingerprints(gateway.keyctl("list"))
    key_pairs = [observed.key_pair, *observed.other_key_pairs] if observed.key_pair else []
    plan = plan_rotate_login(
        settings.name,
        current,
        rotating_in,
        on_gateway,
        key_pairs,
        gateway.instance.tags.get(TAG_KEY_FINGERPRINT),
    )
    for warning in plan.warnings:
        deps.reporter.warn(warning)
    if dry_run:
        return RotateResult(plan, [])
    handlers = LoginRotation(gateway, current, on_gateway)
    outcome = apply_plan(
        plan, handlers.table(), deps.reporter, _journal(files), before_each=deps.before_each
    )
    return RotateResult(plan, outcome.done)


class LoginRotation:
    """The side effects behind each step of a login-key rotation."""

    def __init__(self, gateway: Gateway, current: str, on_gateway: list[str]) -> None:
        self.gateway = gateway
        self.files = gateway.ctx.files
        self.current = current
        self.on_gateway = on_gateway
        # Keys this rotation put (or may have put) on the gateway: what a rollback removes.
        self.candidates: set[str] = set()

    def table(self) -> dict[str, Any]:
        """Map action kinds to handlers."""
        return {
            "make_next_login_key": self.make_next,
            "gateway_add_login": self.add,
            "verify_next_login": self.verify_next,
            "gateway_remove_login": self.remove_old,
            "verify_old_refused": self.verify_old_refused,
            "import_next_key_pair": self.import_key_pair,
            "retag_instance": self.retag,
            "delete_key_pair": self.delete_key_pair,
            "promote_local_key": self.promote,
        }

    def _next(self) -> keys.SshKey:
        return keys.load_key(self.files.next_login_key)

    def make_next(self, action: Action, results: dict[str, Any]) -> None:
        """Make the new key beside the old one; the old one stays until the very end."""
        key = keys.generate_key(f"bastion-{self.gateway.ctx.settings.name}-login")
        keys.save_key(self.files.next_login_key, key)
        results["new login key"] = key.fingerprint

    def add(self, action: Action, results: dict[str, Any]) -> None:
        """Authorize the new key on the gateway beside the old one."""
        new = self._next()
        self.candidates.add(new.fingerprint)
        self.gateway.keyctl(f"add-login {keys.public_key_body(new.public_line)}")

    def verify_next(self, action: Action, results: dict[str, Any]) -> None:
        """Prove the new key on a fresh connection; on failure, take it back out."""
        self.candidates.add(self._next().fingerprint)
        try:
            self.gateway.login(str(self.files.next_login_key))
        except SshError as exc:
            listed = parse_authorized_fingerprints(self.gateway.keyctl("list"))
            if self.current in listed:  # never take away the last key that works
                for fingerprint in listed:
                    if fingerprint in self.candidates and fingerprint != self.current:
                        self.gateway.keyctl(f"remove-login {fingerprint}")
            self.files.discard_next_login_key()
            raise SshError(
                f"the gateway refused the new login key ({exc.message}); rolled back: the new "
                f"key was removed again and the old key {self.current} still works"
            ) from exc

    def remove_old(self, action: Action, results: dict[str, Any]) -> None:
        """Revoke the old key on the gateway, now that the new one is proven."""
        self.gateway.keyctl(f"remove-login {action.params['fingerprint']}")

    def verify_old_refused(self, action: Action, results: dict[str, Any]) -> None:
        """Check that the old key no longer opens the gateway."""
        try:
            self.gateway.login(str(self.files.login_key))
        except SshError:
            return
        raise ConflictError(
            f"the gateway still accepts the old login key {self.current}; "
            "run `bastion rotate` again, or `bastion burn` if it keeps happening"
        )

    def import_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Record the new public key in EC2."""
        ctx = self.gateway.ctx
        new = self._next()
        name = key_pair_name(ctx.settings.name, new.fingerprint)
        tags = base_tags(ctx.settings.name, "login-key", ctx.operator, _now(self.gateway))
        tags[TAG_KEY_FINGERPRINT] = new.fingerprint
        ctx.ec2.import_key_pair(name, new.public_line, tags)

    def retag(self, action: Action, results: dict[str, Any]) -> None:
        """Point the instance's key-fingerprint tag at the new key."""
        self.gateway.ctx.ec2.tag(
            self.gateway.instance.instance_id, {TAG_KEY_FINGERPRINT: self._next().fingerprint}
        )

    def delete_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Delete an EC2 key pair that no longer matches the gateway."""
        self.gateway.ctx.ec2.delete_key_pair(action.params["key_name"])

    def promote(self, action: Action, results: dict[str, Any]) -> None:
        """Swap the local files; the old private key is gone after this."""
        self.files.promote_next_login_key()


def _now(gateway: Gateway) -> str:
    return gateway.deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
