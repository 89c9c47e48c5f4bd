"""The gateway's lock held in AWS, so two machines never change one gateway at the same time.

Taken after the local lock (adapters.lock), by a conditional write that only succeeds when no
live lease stands (see adapters.aws.lock); renewed between steps (each progress step or wait of
a command holding it renews a lease older than a third of its term, through the injected clock);
released at the end (only if still ours). A holder that dies leaves its lease, which anyone may
take over once it has run out, never before. `up` takes it only when its plan changes something;
`burn` never waits for it: it contains first, then breaks the lock (see `break_lock`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from bastion.adapters.localstate import GatewayFiles
from bastion.domain.apply import Reporter
from bastion.domain.clock import Clock
from bastion.domain.errors import BastionError, ConflictError
from bastion.domain.lease import RENEW_AFTER_SECONDS, Lease, new_lease
from bastion.domain.settings import Settings
from bastion.usecases.ports import Cloud, Deps, Locks

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0


class Context(Protocol):
    """What the lock needs of a gateway's context (shared.context.Context, which opens it)."""

    settings: Settings
    aws: Cloud
    files: GatewayFiles

    @property
    def operator(self) -> str: ...


@dataclass
class _Held:
    locks: Locks
    lease: Lease
    clock: Clock
    renewed_at: float


# Leases this process holds, by gateway folder: a process never waits for itself (`burn` runs
# `up` inside); two folders are two machines, even in one test process.
_held: dict[str, _Held] = {}
_guard = threading.RLock()


def holds_aws_lock(ctx: Context) -> bool:
    """Tell whether this process already holds the gateway's AWS lock."""
    return _key(ctx) in _held


def hold_aws_lock(ctx: Context, deps: Deps, command: str) -> None:
    """Take the gateway's AWS lock, waiting up to `lock_wait` seconds for a live holder."""
    if holds_aws_lock(ctx):
        return
    clock, locks, name = deps.clock, ctx.aws.locks, ctx.settings.name
    token = secrets.token_hex(8)
    deadline = clock.monotonic() + ctx.settings.lock_wait
    said = False
    while True:
        mine = new_lease(name, ctx.operator, command, clock.now(), token)
        standing = locks.take(mine, clock.now())
        if standing is not None and standing.token == token:
            break
        if clock.monotonic() >= deadline:
            if standing is None:
                raise ConflictError(
                    f"the lock on gateway {name!r} could not be taken yet (its table is being "
                    "created); run this again in a minute"
                )
            raise ConflictError(
                f"gateway {name!r} is being changed by {standing.describe()}; let it finish, "
                "then run this again (a holder that died loses the lock when its lease ends)"
            )
        if not said and standing is not None:
            deps.reporter.step(f"waiting for {standing.describe()}")
            said = True
        clock.sleep(POLL_SECONDS)
    _register(ctx, deps, mine)


def break_lock(ctx: Context, deps: Deps, command: str) -> Lease | None:
    """Take the gateway's AWS lock whoever holds it; return the other holder's lease, if any.

    For `burn` only, once containment is done: the holder it replaces fails its next renewal
    and stops before its next step, so nothing undoes the containment.
    """
    if holds_aws_lock(ctx):
        return None
    mine = new_lease(
        ctx.settings.name, ctx.operator, command, deps.clock.now(), secrets.token_hex(8)
    )
    old = ctx.aws.locks.break_lock(mine)
    _register(ctx, deps, mine)
    return old if old is not None and old.token != mine.token else None


def renew_due(keys: set[str]) -> None:
    """Renew each of these leases that is older than a third of its term."""
    with _guard:
        for key in sorted(keys & _held.keys()):
            held = _held[key]
            if held.clock.monotonic() - held.renewed_at < RENEW_AFTER_SECONDS:
                continue
            renewed = held.lease.renewed(held.clock.now())
            if not held.locks.renew(renewed):
                del _held[key]
                standing = held.locks.read(renewed.gateway)
                by = f" to {standing.describe()}" if standing else ""
                raise ConflictError(
                    f"lost the lock on gateway {renewed.gateway!r}{by}; stopped before the next "
                    "step; run `bastion status`, then this command again"
                )
            held.lease, held.renewed_at = renewed, held.clock.monotonic()


def release_aws_locks() -> None:
    """Release every lease this process holds (each only if still ours)."""
    with _guard:
        held = list(_held.values())
        _held.clear()
    for one in held:
        try:
            if not one.locks.release(one.lease):
                log.warning("the lock on gateway %r was no longer ours", one.lease.gateway)
        except BastionError as exc:  # the lease runs out by itself
            log.warning("could not release the lock on gateway %r: %s", one.lease.gateway, exc)


def forget_aws_locks() -> None:
    """Forget the leases this process holds without a call, as a killed process would."""
    with _guard:
        _held.clear()


class RenewingReporter:
    """The command's reporter, renewing the leases the command holds at each step and wait."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.leases: set[str] = set()

    def step(self, message: str) -> None:
        """Renew what is due, then report the step."""
        renew_due(self.leases)
        self.inner.step(message)

    def wait(self, message: str) -> None:
        """Renew what is due, then report the wait."""
        renew_due(self.leases)
        self.inner.wait(message)

    def warn(self, message: str) -> None:
        """Report a warning."""
        self.inner.warn(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _register(ctx: Context, deps: Deps, lease: Lease) -> None:
    with _guard:
        _held[_key(ctx)] = _Held(ctx.aws.locks, lease, deps.clock, deps.clock.monotonic())
    if not isinstance(deps.reporter, RenewingReporter):
        deps.reporter = RenewingReporter(deps.reporter)
    deps.reporter.leases.add(_key(ctx))
    log.info("holding the AWS lock on gateway %r until %s", lease.gateway, lease.expires)


def _key(ctx: Context) -> str:
    return f"{ctx.files.root.expanduser().absolute()}|{ctx.aws.region}|{ctx.settings.name}"
