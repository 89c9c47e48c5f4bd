"""The admin channel as one operator reaches it: their own key and an admin certificate.

On a gateway that takes certificates, every operator IAM allows gets a short-lived
`bastion-admin` certificate for their own key (the same rules as a login certificate), so no
admin key is shared or copied; the host key is pinned from the console on their own machine.
A key-mode gateway's creator keeps using the gateway folder's admin key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.domain.errors import ConflictError, NotFoundError
from bastion.domain.model import InstanceInfo
from bastion.domain.tags import TAG_CERTIFICATES
from bastion.usecases.certs.issue import issue_certificate
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context, endpoint_for
from bastion.usecases.shared.hostkey import pin_from_console
from bastion.usecases.shared.inventory import observe


@dataclass
class AdminChannel:
    """One running gateway's key-management channel, for this operator."""

    ctx: Context
    deps: Deps
    instance: InstanceInfo
    host: str
    port: int
    pinned: str
    key_path: Path

    def keyctl(self, command: str, stdin: str | None = None) -> str:
        """Run one bastion-keyctl request as the admin user."""
        settings = self.ctx.settings
        return self.deps.probe.keyctl(
            self.host,
            self.port,
            settings.admin_user,
            str(self.key_path),
            self.pinned,
            command,
            stdin,
        )


def open_admin_channel(ctx: Context, deps: Deps, key: Path | None = None) -> AdminChannel:
    """Find the running gateway, pin its host key (from the console if need be), pick a key."""
    instance = observe(ctx.aws, ctx.settings.name, None).instance
    if instance is None:
        raise NotFoundError(f"gateway {ctx.settings.name!r} has no live instance; run `bastion up`")
    if instance.state != "running":
        raise ConflictError(
            f"gateway {instance.instance_id} is {instance.state}; run `bastion up` to start it"
        )
    pin = ctx.files.host_key_pub
    pinned = pin.read_text().strip() if pin.exists() else ""
    if not pinned:
        pinned = pin_from_console(ctx, deps, instance, wait=False)
    if instance.tags.get(TAG_CERTIFICATES) == "true":
        issued = issue_certificate(ctx.settings, deps, key=key, admin=True, context=ctx)
        key_path = issued.identity
    elif ctx.files.admin_key.exists():
        key_path = ctx.files.admin_key
    else:
        raise ConflictError(
            f"gateway {instance.instance_id} takes no certificates and this machine has no admin"
            " key; run `bastion up --certificates` then `bastion rotate --relaunch` on the"
            " machine that made it"
        )
    host, port = endpoint_for(ctx.settings, instance, instance.port or ctx.settings.port)
    return AdminChannel(ctx, deps, instance, host, port, pinned, key_path)
