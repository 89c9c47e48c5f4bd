"""Pin a gateway's host key from its console output: the instance's own word, via the EC2 API.

The gateway makes its host key at first boot and cloud-init prints it on the console; the
console is read through `GetConsoleOutput` (AWS credentials, not the network), so nobody on the
path to the gateway can put another key there. Every launch path (up, relaunch after a
termination, `rotate --relaunch`, `burn`) and pin recovery go through `pin_from_console`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bastion.domain.apply import wait_until
from bastion.domain.console import host_keys_from_console
from bastion.domain.errors import ConflictError, HostKeyMismatchError
from bastion.domain.fingerprints import fingerprint
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_HOST_KEY_FINGERPRINT
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context

log = logging.getLogger(__name__)

CONSOLE_POLL_SECONDS = 5.0
# An instance younger than this may still be booting: wait for its console, never longer.
BOOT_WINDOW = timedelta(minutes=30)


def booted_lately(instance: InstanceInfo, now: datetime) -> bool:
    """Tell whether the instance launched recently enough that its console may still fill."""
    return instance.launch_time is None or now - instance.launch_time < BOOT_WINDOW


def console_host_key(ctx: Context, deps: Deps | None, instance_id: str, wait: bool = True) -> str:
    """Return the Ed25519 host key the instance printed on its console (waiting for it)."""
    found: list[str] = []

    def printed() -> bool:
        keys = host_keys_from_console(ctx.aws.evidence.console_output(instance_id))
        if keys.contradicts():
            raise HostKeyMismatchError(
                f"the console of {instance_id} names several different Ed25519 host keys; "
                "nothing was pinned: treat the instance as suspect and run `bastion burn`"
            )
        key = keys.key_of_type("ssh-ed25519")
        if key is not None:
            found.append(key)
        return key is not None

    if wait and deps is not None:
        wait_until(
            printed,
            f"the host key on the console of {instance_id}",
            deps.clock,
            deps.reporter,
            ctx.settings.wait_timeout,
            interval=CONSOLE_POLL_SECONDS,
            hint="cloud-init prints it near the end of the first boot; rerun `bastion up` "
            "(or raise --timeout)",
        )
    elif not printed():
        raise ConflictError(
            f"the console of {instance_id} shows no host key (it keeps only its last 64 KB); "
            "copy host_ed25519.pub from the machine that made the gateway, or run "
            "`bastion rotate --relaunch`"
        )
    return found[-1]


def pin_from_console(
    ctx: Context, deps: Deps | None, instance: InstanceInfo, wait: bool = True
) -> str:
    """Pin the host key the console shows; check (or set) the fingerprint tag; return the key.

    A tag that names another key refuses the pin: either someone else rotated the host key
    (`rotate --host-key`, whose new key never reaches the console) or the tag was tampered with.
    """
    iid = instance.instance_id
    public = console_host_key(ctx, deps, iid, wait=wait)
    printed = fingerprint(public)
    tagged = instance.tags.get(TAG_HOST_KEY_FINGERPRINT)
    if tagged and tagged != printed:
        raise HostKeyMismatchError(
            f"the console of {iid} shows host key {printed}, but its tag says {tagged}; nothing "
            "was pinned: if the host key was rotated elsewhere copy that machine's "
            "host_ed25519.pub, otherwise treat the gateway as suspect and run `bastion burn`"
        )
    if not tagged:
        # So that another machine (and a later recovery here) can check the console against it.
        ctx.aws.compute.tag(iid, {TAG_HOST_KEY_FINGERPRINT: printed})
    ctx.files.pin_host_key(public)
    log.info("pinned host key %s from the console output of %s", printed, iid)
    return public
