"""`rotate` (the login key, in place): add the new key, prove it, remove the old, swap files."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.adapters import keys
from bastion.domain.apply import apply_plan
from bastion.domain.errors import ConflictError, SshError
from bastion.domain.login_keys import ended_sessions, known_login_keys, unknown_login_keys
from bastion.domain.model import Action, Plan
from bastion.domain.rotate_plan import plan_rotate_login
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_KEY_FINGERPRINT, base_tags, key_pair_name
from bastion.usecases.ports import Deps
from bastion.usecases.rotate.channel import (
    Gateway,
    RotateResult,
    connect,
    parse_authorized_fingerprints,
    refuse_mid_relaunch,
    stamp,
)
from bastion.usecases.shared.context import journal_for, open_context


def rotate_login(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
    instance: str | None = None,
) -> RotateResult:
    """Rotate the daily login key in place over the key-management channel."""
    ctx = open_context(
        settings, deps, lock_for=None if dry_run else "rotate", chosen_instance=instance
    )
    gateway, observed = connect(ctx, deps)
    refuse_mid_relaunch(ctx, observed)
    files = ctx.files
    current = files.read().login_fingerprint
    if current is None:  # a certificate gateway reached with this operator's own key
        raise ConflictError(
            "this machine holds no login key of the gateway: operators log in with their own"
            " keys and certificates; use `bastion rotate --host-key`, `--relaunch`, or"
            " `bastion revoke`"
        )
    rotating_in = files.next_login_fingerprint()
    on_gateway = parse_authorized_fingerprints(gateway.keyctl("list"))
    key_pairs = [observed.key_pair, *observed.other_key_pairs] if observed.key_pair else []
    tagged = gateway.instance.tags.get(TAG_KEY_FINGERPRINT)
    known = known_login_keys(
        current, rotating_in, tagged, key_pairs=(k.fingerprint for k in key_pairs)
    )
    # A login key bastion did not put there makes the rotation due, whatever the key's age.
    if (
        if_older_than is not None
        and rotating_in is None
        and not unknown_login_keys(on_gateway, known)
    ):
        created = observed.key_pair.created_at if observed.key_pair else None
        age = deps.clock.now() - created if created else None
        if age is not None and age < if_older_than:
            plan = Plan("rotate", settings.name, ())
            return RotateResult(plan, [], f"login key is {age.days} days old; not due yet")
    plan = plan_rotate_login(
        settings.name,
        current,
        rotating_in,
        on_gateway,
        key_pairs,
        tagged,
    )
    for warning in plan.warnings:
        deps.reporter.warn(warning)
    if dry_run:
        return RotateResult(plan, [])
    handlers = LoginRotation(gateway, current, on_gateway)
    outcome = apply_plan(
        plan, handlers.table(), deps.reporter, journal_for(files), before_each=deps.before_each
    )
    return RotateResult(
        plan,
        outcome.done,
        removed_unknown=list(outcome.results.get("removed unknown keys", [])),
        ended_sessions=dict(outcome.results.get("ended sessions", {})),
    )


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
        """Revoke a key on the gateway (the old one, or one bastion did not put there), now
        that the new one is proven; keyctl also ends the sessions that key opened."""
        fingerprint = action.params["fingerprint"]
        if fingerprint == self._next().fingerprint:  # never the key just proven
            return
        output = self.gateway.keyctl(f"remove-login {fingerprint}")
        ended = ended_sessions(output).get(fingerprint, 0)
        results.setdefault("ended sessions", {})[fingerprint] = ended
        if action.params.get("unknown"):
            results.setdefault("removed unknown keys", []).append(fingerprint)
            self.gateway.deps.reporter.warn(
                f"removed login key {fingerprint}, which bastion did not put there "
                f"(ended {ended} open session(s) made with it)"
            )

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
        tags = base_tags(ctx.settings.name, "login-key", ctx.operator, stamp(self.gateway.deps))
        tags[TAG_KEY_FINGERPRINT] = new.fingerprint
        ctx.aws.key_pairs.import_key_pair(name, new.public_line, tags)

    def retag(self, action: Action, results: dict[str, Any]) -> None:
        """Point the instance's key-fingerprint tag at the new key."""
        self.gateway.ctx.aws.compute.tag(
            self.gateway.instance.instance_id, {TAG_KEY_FINGERPRINT: self._next().fingerprint}
        )

    def delete_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Delete an EC2 key pair that no longer matches the gateway."""
        self.gateway.ctx.aws.key_pairs.delete_key_pair(action.params["key_name"])

    def promote(self, action: Action, results: dict[str, Any]) -> None:
        """Swap the local files; the old private key is gone after this."""
        self.files.promote_next_login_key()
