"""Use case `status`: describe the gateway and its drift from what bastion expects (reads only)."""

from __future__ import annotations

from typing import Any

from bastion.domain.settings import Settings
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import open_context
from bastion.usecases.shared.inventory import observe_with_app_group
from bastion.usecases.shared.login_keys import read_login_keys, unknown_keys_drift
from bastion.usecases.shared.report import gateway_report


def status(settings: Settings, deps: Deps, check_login_keys: bool = True) -> dict[str, Any]:
    """Describe the gateway: instance, addresses, who may connect, keys, sg-app, drift.

    With `check_login_keys`, the gateway's authorized login keys are listed over the admin
    channel (one short SSH request); an unreachable gateway is reported, never an error.
    """
    ctx = open_context(settings, deps)
    observed = observe_with_app_group(ctx.aws, settings.name, settings.app_sg)
    data = gateway_report(settings, deps, ctx, observed=observed)
    if not check_login_keys:
        data["login_keys"] = {"checked": False, "reason": "not asked", "keys": [], "unknown": []}
        return data
    # Through the public address the gateway group decides; a VPN or port forward (--reach) may
    # reach sshd whatever the caller's public IP.
    if data["caller_allowed"] is False and settings.reach == "public":
        reason = "your IP is not allowed on the gateway group, so the gateway was not asked"
        data["login_keys"] = {"checked": False, "reason": reason, "keys": [], "unknown": []}
        return data
    key_pairs = [observed.key_pair, *observed.other_key_pairs] if observed.key_pair else []
    report = read_login_keys(settings, deps, ctx.files, observed.instance, key_pairs)
    data["login_keys"] = report.to_dict()
    if report.unknown:
        data["drift"].append(unknown_keys_drift(report.unknown))
    return data
