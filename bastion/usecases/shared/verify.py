"""Prove a launched gateway: sshd reachable, the pinned host key presented, the login key taken."""

from __future__ import annotations

import logging

from bastion.domain.apply import wait_until
from bastion.domain.errors import ConflictError, GatewayUnavailable, TimeoutExpired
from bastion.domain.model import InstanceInfo
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context, endpoint_for

log = logging.getLogger(__name__)


def verify_gateway(ctx: Context, deps: Deps, instance: InstanceInfo, port: int) -> str:
    """Wait for sshd, then log in pinned to the host key; return the verified fingerprint."""
    pinned = ctx.files.read().pinned_host_key
    if pinned is None:
        raise ConflictError("no pinned host key for this gateway; rerun `bastion up`")
    host, port = endpoint_for(ctx.settings, instance, port)
    probe = deps.probe
    wait_until(
        lambda: probe.tcp_reachable(host, port),
        f"sshd on {host}:{port}",
        deps.clock,
        deps.reporter,
        ctx.settings.wait_timeout,
        hint="the instance may still be booting (rerun `bastion up`), or your IP is not "
        "allowed (see `bastion status`)",
    )
    failures: list[GatewayUnavailable | TimeoutExpired] = []
    verified: list[str] = []

    def logged_in() -> bool:
        # A booting gateway may close its port for a moment (an image that restarts sshd):
        # retry what a retry can mend; a wrong host key or a refused key fails at once.
        try:
            verified.append(
                probe.verify_login(
                    host, port, ctx.settings.login_user, str(ctx.files.login_key), pinned
                )
            )
            return True
        except (GatewayUnavailable, TimeoutExpired) as exc:
            log.info("login to %s:%s not yet possible: %s", host, port, exc)
            failures.append(exc)
            return False

    try:
        wait_until(
            logged_in,
            f"a login on {host}:{port}",
            deps.clock,
            deps.reporter,
            ctx.settings.wait_timeout,
            interval=2.0,
        )
    except TimeoutExpired as exc:
        last = failures[-1].message if failures else "no answer"
        raise TimeoutExpired(f"{exc.message}; last attempt: {last}") from exc
    return verified[-1]
