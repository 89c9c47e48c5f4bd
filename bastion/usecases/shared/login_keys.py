"""Read a gateway's authorized login keys over the admin channel, for `status` and `audit`.

Read-only and short: the gateway may be stopped, unreachable from here, or this machine may
lack its admin key; each of those is reported as "not checked" with the reason, never an error.
"""

from __future__ import annotations

import logging

from bastion.adapters.localstate import GatewayFiles
from bastion.domain.errors import BastionError, HostKeyMismatchError
from bastion.domain.login_keys import (
    LoginKeysReport,
    known_login_keys,
    login_keys_view,
    parse_authorized_keys,
    unknown_login_keys,
)
from bastion.domain.model import InstanceInfo, KeyPairInfo
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_KEY_FINGERPRINT
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import endpoint_for

log = logging.getLogger(__name__)


def read_login_keys(
    settings: Settings,
    deps: Deps,
    files: GatewayFiles,
    instance: InstanceInfo | None,
    key_pairs: list[KeyPairInfo],
) -> LoginKeysReport:
    """List the gateway's login keys with `bastion-keyctl list`, each flagged known or not."""
    if instance is None or instance.state != "running":
        return LoginKeysReport(False, "the gateway is not running")
    local = files.read()
    if local.admin_fingerprint is None or local.pinned_host_key is None:
        return LoginKeysReport(
            False, "this machine lacks the gateway's admin key or host pin", expected=False
        )
    try:
        host, port = endpoint_for(settings, instance, instance.port or settings.port)
    except BastionError as exc:
        return LoginKeysReport(False, exc.message)
    if not deps.probe.tcp_reachable(host, port):
        return LoginKeysReport(False, f"the gateway's sshd at {host}:{port} is not reachable")
    host_keys = [local.pinned_host_key]
    if files.next_host_key_pub.exists():  # mid host-key rotation, sshd may present the new one
        host_keys.append(files.next_host_key_pub.read_text().strip())
    listing: str | None = None
    for host_key in host_keys:
        try:
            listing = deps.probe.keyctl(
                host, port, settings.admin_user, str(files.admin_key), host_key, "list"
            )
            break
        except HostKeyMismatchError:
            continue
        except BastionError as exc:
            log.info("admin channel to %s:%s: %s", host, port, exc.message)
            return LoginKeysReport(False, f"the admin channel did not answer: {exc.message}")
    if listing is None:
        return LoginKeysReport(False, "the gateway presented a host key bastion did not pin")
    keys = parse_authorized_keys(listing)
    known = known_login_keys(
        local.login_fingerprint,
        files.next_login_fingerprint(),
        instance.tags.get(TAG_KEY_FINGERPRINT),
        key_pairs=(k.fingerprint for k in key_pairs),
    )
    unknown = unknown_login_keys([k.fingerprint for k in keys], known)
    return LoginKeysReport(True, None, login_keys_view(keys, known), unknown)


def unknown_keys_drift(unknown: list[str]) -> str:
    """Say what an unknown login key means and what to do."""
    return (
        f"the gateway trusts login key(s) bastion did not put there ({', '.join(unknown)}): "
        "whoever holds the admin key added them; run `bastion rotate` (it removes them and ends "
        "their sessions), and `bastion burn` if you did not add them"
    )
