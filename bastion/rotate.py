"""Use case `rotate`: replace the gateway's keys without ever locking the operator out.

Three ways: the login key in place (default), the host key in place (`--host-key`), both over
the key-management channel; or a whole new generation, blue/green (`--relaunch`), which `burn`
reuses for its recovery half.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bastion.adapters import keys
from bastion.adapters.localstate import GatewayFiles
from bastion.domain.apply import apply_plan, wait_until
from bastion.domain.errors import ConflictError, HostKeyMismatchError, NotFoundError, SshError
from bastion.domain.model import (
    Action,
    GatewaySpec,
    InstanceInfo,
    LocalKeys,
    ObservedGateway,
    Plan,
    Ref,
    SecurityGroup,
)
from bastion.domain.plan import (
    Network,
    key_pair_name,
    plan_relaunch_switch,
    plan_rotate_host_key,
    plan_rotate_login,
    plan_up,
)
from bastion.domain.settings import Settings
from bastion.domain.tags import (
    TAG_GENERATION,
    TAG_HOST_KEY_CREATED_AT,
    TAG_HOST_KEY_FINGERPRINT,
    TAG_KEY_FINGERPRINT,
    TAG_RETIRING,
    TAG_STANDBY,
)
from bastion.gateway import (
    Context,
    Deps,
    UpHandlers,
    _journal,
    _referencing_app_group,
    _refresh_ssh_config,
    _tag_time,
    allowed_cidrs,
    base_tags,
    endpoint_for,
    open_context,
)
from bastion.inventory import observe

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
        for index, word in enumerate(fields[:-1]):
            if word.startswith(("ssh-", "sk-ssh-")):
                found.append(keys.fingerprint(f"{word} {fields[index + 1]}"))
                break
    return found


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
        admin_key = str(self.ctx.files.admin_key)

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
    alternates = []
    if ctx.files.next_host_key_pub.exists():
        alternates.append(ctx.files.next_host_key_pub.read_text().strip())
    gateway = Gateway(ctx, deps, instance, host, port, local.pinned_host_key, alternates)
    return gateway, observed


def _refuse_mid_relaunch(ctx: Context, observed: ObservedGateway) -> None:
    if observed.standby or observed.retiring or ctx.files.relaunch_dir.exists():
        raise ConflictError(
            f"a relaunch of gateway {ctx.settings.name!r} is half done; run "
            "`bastion rotate --relaunch` to finish it first"
        )


def rotate_login(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
) -> RotateResult:
    """Rotate the daily login key in place over the key-management channel."""
    ctx = open_context(settings, deps, lock_for=None if dry_run else "rotate")
    gateway, observed = connect(ctx, deps)
    _refuse_mid_relaunch(ctx, observed)
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
        ctx.ec2.key_pairs.import_key_pair(name, new.public_line, tags)

    def retag(self, action: Action, results: dict[str, Any]) -> None:
        """Point the instance's key-fingerprint tag at the new key."""
        self.gateway.ctx.ec2.compute.tag(
            self.gateway.instance.instance_id, {TAG_KEY_FINGERPRINT: self._next().fingerprint}
        )

    def delete_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Delete an EC2 key pair that no longer matches the gateway."""
        self.gateway.ctx.ec2.key_pairs.delete_key_pair(action.params["key_name"])

    def promote(self, action: Action, results: dict[str, Any]) -> None:
        """Swap the local files; the old private key is gone after this."""
        self.files.promote_next_login_key()


def _now(gateway: Gateway) -> str:
    return gateway.deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


# --- host key (`rotate --host-key`) ---------------------------------------------------------


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


def _not_due(
    since: datetime | None, now: datetime, threshold: timedelta | None, what: str
) -> str | None:
    if threshold is None or since is None:
        return None
    age = now - since
    return None if age >= threshold else f"{what} is {age.days} days old; not due yet"


def rotate_host_key(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
) -> RotateResult:
    """Rotate the gateway's host key in place; the client trusts both keys during the switch."""
    ctx = open_context(settings, deps, lock_for=None if dry_run else "rotate --host-key")
    gateway, observed = connect(ctx, deps)
    _refuse_mid_relaunch(ctx, observed)
    files = ctx.files
    staged_line = (
        files.next_host_key_pub.read_text().strip() if files.next_host_key_pub.exists() else None
    )
    if staged_line is None:
        skip = _not_due(
            _tag_time(gateway.instance, TAG_HOST_KEY_CREATED_AT),
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
        plan, handlers.table(), deps.reporter, _journal(files), before_each=deps.before_each
    )
    _refresh_ssh_config(ctx, deps)
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
                str(self.files.login_key),
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
                str(self.files.login_key),
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
        self.gateway.ctx.ec2.compute.tag(
            self.gateway.instance.instance_id,
            {
                TAG_HOST_KEY_FINGERPRINT: keys.fingerprint(self._new()),
                TAG_HOST_KEY_CREATED_AT: _now(self.gateway),
            },
        )

    def finish(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the half-done marker: the rotation is complete."""
        self.files.next_host_key_pub.unlink(missing_ok=True)


# --- relaunch (`rotate --relaunch`), blue/green ---------------------------------------------

# What `promote_local_keys` moves from the relaunch folder into the gateway folder.
RELAUNCH_FILES = (
    "login_ed25519.pub",
    "login_ed25519",
    "admin_ed25519.pub",
    "admin_ed25519",
    "host_ed25519.pub",
    "known_hosts",
)


def _generation(group: SecurityGroup) -> int:
    return int(group.tags.get(TAG_GENERATION, "1"))


def relaunch_gateway(
    settings: Settings,
    deps: Deps,
    dry_run: bool = False,
    if_older_than: timedelta | None = None,
    generation_floor: int = 0,
) -> RotateResult:
    """Replace the gateway with a new generation (new keys), blue/green; resumable by rerun.

    Generation N+1 is launched as a standby beside N and verified as `up` verifies; sg-app
    admits SSH from the new group before the old group's rule is revoked; N is marked retiring,
    N+1 promoted, the local keys swapped, and then N, its group and key pair are destroyed.
    """
    ctx = open_context(settings, deps, lock_for=None if dry_run else "rotate --relaunch")
    ec2 = ctx.ec2
    observed = observe(ec2, settings.name, None)
    current = observed.instance
    if current is None:
        raise NotFoundError(
            f"gateway {settings.name!r} has no live instance to replace; run `bastion up`"
        )
    staging = GatewayFiles(ctx.files.relaunch_dir, settings.name)
    staged_login = staging.read().login_fingerprint if staging.root.exists() else None
    # Promoted: the new generation is the gateway; the old one is retiring, or already gone
    # (then only the relaunch folder, whose keys are the current instance's, says so).
    promoted = bool(observed.retiring) or (
        observed.standby is None
        and staging.root.exists()
        and staged_login in (None, current.tags.get(TAG_KEY_FINGERPRINT))
    )
    new_instance: InstanceInfo | None
    if promoted:
        new_instance, old_instances = current, list(observed.retiring)
    else:
        new_instance, old_instances = observed.standby, [current]
    old = old_instances[0] if old_instances else current
    in_progress = promoted or new_instance is not None or staging.root.exists()
    if not in_progress:
        skip = _not_due(old.launch_time, deps.clock.now(), if_older_than, "the gateway")
        if skip:
            return RotateResult(Plan("rotate", settings.name, ()), [], skip)
    subnet = ec2.network.subnet(old.subnet_id or settings.subnet)
    app_sg = settings.app_sg or _referencing_app_group(ec2, observed)
    if app_sg:
        observed = observe(ec2, settings.name, app_sg, subnet.vpc_id)
    app_group = observed.app_group

    old_generation = max((i.generation for i in old_instances), default=0)
    groups = ([observed.group] if observed.group else []) + list(observed.stale_groups)
    new_generation = (
        new_instance.generation
        if new_instance
        else max(
            [_generation(g) for g in groups if _generation(g) > old_generation]
            + [old_generation + 1, generation_floor]
        )
    )
    new_group = next((g for g in groups if _generation(g) == new_generation), None)
    old_groups = [g for g in groups if g is not new_group and _generation(g) < new_generation]
    staged_local = staging.read() if staging.root.exists() else LocalKeys(None, None, None)
    new_login = (
        new_instance.tags.get(TAG_KEY_FINGERPRINT)
        if new_instance
        else staged_local.login_fingerprint
    )
    key_pairs = [k for k in (observed.key_pair, *observed.other_key_pairs) if k]
    new_key_pair = next((k for k in key_pairs if new_login and k.fingerprint == new_login), None)
    old_key_pairs = [k for k in key_pairs if k is not new_key_pair]

    port = old.port or settings.port
    spec = GatewaySpec(
        name=settings.name,
        port=port,
        allowed_cidrs=allowed_cidrs(settings, deps),
        instance_type=settings.instance_type,
        image=settings.image,
        subnet_id=subnet.subnet_id,
        app_sg=app_group.group_id if app_group else None,
        login_user=settings.login_user,
        admin_user=settings.admin_user,
        operator=ctx.operator,
    )
    now = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    network = Network(subnet.subnet_id, subnet.vpc_id, subnet.vpc_cidr)
    next_ctx = Context(settings, ec2, staging, ctx.operator)
    launch_actions: tuple[Action, ...] = ()
    observed_next = ObservedGateway(
        settings.name,
        key_pair=new_key_pair,
        group=new_group,
        instance=new_instance,
        app_group=app_group,
    )
    if not promoted:
        launch_actions = plan_up(
            spec, observed_next, staged_local, network, now, new_generation
        ).actions
    new_group_ref: str | Ref = new_group.group_id if new_group else Ref("new gateway group")
    new_authorized = bool(
        any(a.kind == "authorize_app_ssh" for a in launch_actions)
        or (
            app_group is not None
            and new_group is not None
            and any(r.source_group == new_group.group_id for r in app_group.ingress)
        )
    )
    switch = plan_relaunch_switch(
        settings.name,
        app_group,
        new_group_ref,
        new_authorized,
        old_groups,
        [i.instance_id for i in old_instances],
        [i.instance_id for i in old_instances if TAG_RETIRING in i.tags],
        promoted,
        old_key_pairs,
        local_swap=staging.root.exists() or not promoted,
    )
    finish = [Action("remove_relaunch_folder", "remove the relaunch folder")]
    plan = Plan(
        "rotate",
        settings.name,
        tuple(launch_actions) + tuple(switch) + (tuple(finish) if switch or in_progress else ()),
    )
    if dry_run:
        return RotateResult(plan, [])

    up_handlers = UpHandlers(next_ctx, deps, spec, observed_next, network, now)
    up_handlers.extra_tags = {TAG_STANDBY: "next"}
    if settings.restrict_forwarding:
        from bastion.access import permit_open_targets

        up_handlers.permit_open = permit_open_targets(
            ec2, app_group.group_id if app_group else None
        )
    switcher = RelaunchSwitch(ctx, deps, staging, up_handlers)
    table = {**up_handlers.table(), **switcher.table()}
    outcome = apply_plan(
        plan, table, deps.reporter, _journal(ctx.files), before_each=deps.before_each
    )
    _refresh_ssh_config(ctx, deps)
    return RotateResult(plan, outcome.done)


class RelaunchSwitch:
    """The side effects of moving from the old generation to the verified new one."""

    def __init__(
        self, ctx: Context, deps: Deps, staging: GatewayFiles, launched: UpHandlers
    ) -> None:
        self.ctx, self.deps, self.staging, self.launched = ctx, deps, staging, launched

    def table(self) -> dict[str, Any]:
        """Map action kinds to handlers."""
        return {
            "revoke_old_app_ssh": self.revoke_old_app_ssh,
            "retire_old_instance": self.retire,
            "promote_new_instance": self.promote,
            "promote_local_keys": self.promote_local_keys,
            "terminate_old_instance": self.terminate,
            "wait_old_terminated": self.wait_terminated,
            "delete_old_group": self.delete_group,
            "delete_old_key_pair": self.delete_key_pair,
            "remove_relaunch_folder": self.remove_folder,
        }

    def revoke_old_app_ssh(self, action: Action, results: dict[str, Any]) -> None:
        """Revoke sg-app's SSH rule for the old group (the new one is already admitted)."""
        self.ctx.ec2.groups.revoke(action.params["app_group_id"], action.params["rule_ids"], False)

    def retire(self, action: Action, results: dict[str, Any]) -> None:
        """Mark the old instance as retiring; it stays the gateway until the new is promoted."""
        self.ctx.ec2.compute.tag(action.params["instance_id"], {TAG_RETIRING: _stamp(self.deps)})

    def promote(self, action: Action, results: dict[str, Any]) -> None:
        """Make the new instance the gateway (observe now sees it, and the old as retiring)."""
        instance = self.launched.instance
        assert instance is not None
        self.ctx.ec2.compute.untag(instance.instance_id, [TAG_STANDBY])

    def promote_local_keys(self, action: Action, results: dict[str, Any]) -> None:
        """Move the new generation's keys and pins over the old ones (each file atomically)."""
        root = self.ctx.files.root
        keys.ensure_private_dir(root)
        for name in RELAUNCH_FILES:
            source = self.staging.root / name
            if source.exists():
                os.replace(source, root / name)
        # A login or host-key rotation of the old generation is moot now.
        self.ctx.files.discard_next_login_key()
        self.ctx.files.next_host_key_pub.unlink(missing_ok=True)

    def terminate(self, action: Action, results: dict[str, Any]) -> None:
        """Terminate the old instance."""
        if self.ctx.ec2.compute.instance_state(action.params["instance_id"]) != "terminated":
            self.ctx.ec2.compute.terminate_instance(action.params["instance_id"])

    def wait_terminated(self, action: Action, results: dict[str, Any]) -> None:
        """Wait (through the injected clock) until the old instance is gone."""
        iid = action.params["instance_id"]
        ec2 = self.ctx.ec2
        wait_until(
            lambda: ec2.compute.instance_state(iid) == "terminated",
            f"{iid} to terminate",
            self.deps.clock,
            self.deps.reporter,
            self.ctx.settings.wait_timeout,
        )

    def delete_group(self, action: Action, results: dict[str, Any]) -> None:
        """Delete the old generation's group."""
        self.ctx.ec2.groups.delete_group(action.params["group_id"])

    def delete_key_pair(self, action: Action, results: dict[str, Any]) -> None:
        """Delete the old login key pair."""
        self.ctx.ec2.key_pairs.delete_key_pair(action.params["key_name"])

    def remove_folder(self, action: Action, results: dict[str, Any]) -> None:
        """Remove the (now empty) relaunch folder."""
        if self.staging.root.exists():
            shutil.rmtree(self.staging.root)


def _stamp(deps: Deps) -> str:
    return deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
