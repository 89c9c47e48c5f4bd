"""Use case `sessions`: who connected, from where, when: sshd's log of certificate logins.

sshd (LogLevel VERBOSE) logs each certificate's key id (the operator's ARN) and serial;
`bastion-keyctl cert-log` returns only those lines (and disconnections) over the admin channel.
"""

from __future__ import annotations

from pathlib import Path

from bastion.domain.certs import Session, certificate_sessions
from bastion.domain.settings import Settings
from bastion.usecases.certs.admin import open_admin_channel
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import Context, open_context


def sessions(
    settings: Settings, deps: Deps, key: Path | None = None, ctx: Context | None = None
) -> list[Session]:
    """Return every certificate login the gateway's sshd logged, oldest first."""
    ctx = ctx or open_context(settings, deps)
    channel = open_admin_channel(ctx, deps, key)
    return certificate_sessions(channel.keyctl("cert-log"))
