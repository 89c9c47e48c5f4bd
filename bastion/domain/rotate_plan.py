"""Pure planners for `rotate`: login key, host key, and the blue/green switch. No I/O."""

from __future__ import annotations

from collections.abc import Sequence

from bastion.domain.fingerprints import fingerprint
from bastion.domain.login_keys import known_login_keys, unknown_login_keys
from bastion.domain.model import (
    RULE_PREFIX,
    Action,
    KeyPairInfo,
    Plan,
    Ref,
    SecurityGroup,
)
from bastion.domain.rules import group_permission


def plan_rotate_login(
    name: str,
    current: str,
    rotating_in: str | None,
    on_gateway: Sequence[str],
    key_pairs: Sequence[KeyPairInfo],
    instance_key_tag: str | None,
) -> Plan:
    """Plan a login-key rotation that never leaves the operator without a working key.

    Every step is decided from observed state, so a rerun after any crash resumes where the
    last run stopped: add new, prove new, remove every key bastion did not put there, remove
    old, then EC2 and the local files. Removing a key also ends the sessions it opened.
    """
    new: str | Ref = rotating_in or Ref("new login key")
    actions: list[Action] = []
    warnings: list[str] = []
    if rotating_in is None:
        actions.append(Action("make_next_login_key", "make a new Ed25519 login key (local, 0600)"))
    if rotating_in is None or rotating_in not in on_gateway:
        actions.append(Action("gateway_add_login", f"authorize {new} on the gateway"))
    actions.append(
        Action("verify_next_login", f"log in with {new} on a fresh connection", mutating=False)
    )
    known = known_login_keys(
        current, rotating_in, instance_key_tag, key_pairs=(k.fingerprint for k in key_pairs)
    )
    for stray in unknown_login_keys(on_gateway, known):
        actions.append(
            Action(
                "gateway_remove_login",
                f"remove login key {stray}, which bastion did not put there, and end its sessions",
                {"fingerprint": stray, "unknown": True},
            )
        )
    if current != rotating_in and current in on_gateway:
        actions.append(
            Action(
                "gateway_remove_login",
                f"revoke the old login key {current} on the gateway and end its sessions",
                {"fingerprint": current},
            )
        )
    if current != rotating_in:
        actions.append(
            Action(
                "verify_old_refused",
                f"check that the gateway refuses {current}",
                mutating=False,
            )
        )
    if unknown_login_keys(on_gateway, known):
        warnings.append(
            "the gateway trusts login key(s) bastion did not put there: someone with the admin "
            "key added them; they are removed, but if you did not add them, run `bastion burn`"
        )
    if not any(k.fingerprint == rotating_in for k in key_pairs):
        actions.append(Action("import_next_key_pair", f"import {new} as an EC2 key pair"))
    if instance_key_tag != rotating_in:
        actions.append(Action("retag_instance", f"record {new} in the instance's tags"))
    for key_pair in key_pairs:
        if key_pair.fingerprint != rotating_in:
            actions.append(
                Action(
                    "delete_key_pair",
                    f"delete the old EC2 key pair {key_pair.name}",
                    {"key_name": key_pair.name},
                )
            )
    actions.append(
        Action("promote_local_key", "replace the local login key with the new one (atomic)")
    )
    return Plan("rotate", name, tuple(actions), tuple(warnings))


def plan_rotate_host_key(
    name: str,
    pinned: str,
    staged: str | None,
    server_active: str | None,
    server_staged: str | None,
    trusted: Sequence[str],
    tagged_fingerprint: str | None,
) -> Plan:
    """Plan a host-key rotation in which the client always trusts the key sshd presents.

    Keys are compared as `type base64`. `staged` is the public half of the key being rotated in
    (the local marker of a half-done rotation); its private half lives only in memory, so a
    staged key the server never received is made again. Order: trust both, stage, activate,
    prove the new key alone, pin it, remove the old one, trust only the new one, tag.
    """
    on_server = [k for k in (server_active, server_staged) if k]
    fresh = staged is None or staged not in on_server
    new: str | Ref = Ref("new host key") if fresh or staged is None else fingerprint(staged)
    actions: list[Action] = []
    warnings: list[str] = []
    if fresh:
        actions.append(
            Action(
                "make_next_host_key",
                "make a new Ed25519 host key (private half only in memory)",
                mutating=True,
            )
        )
        if server_staged and server_staged != pinned:
            warnings.append(
                f"the gateway holds a staged host key {fingerprint(server_staged)} that this "
                "machine does not know; it will be replaced"
            )
    if fresh or staged not in trusted:
        actions.append(
            Action("trust_both_host_keys", f"trust both the current host key and {new} locally")
        )
    if fresh:
        actions.append(
            Action(
                "gateway_add_host_key",
                f"stage {new} on the gateway beside the current key (private half over stdin)",
            )
        )
    if fresh or server_active != staged:
        actions.append(
            Action("gateway_activate_host_key", f"make sshd present {new} and reload it")
        )
    actions.append(
        Action(
            "verify_next_host_key",
            f"log in on a fresh connection that trusts only {new}",
            mutating=False,
        )
    )
    if fresh or pinned != staged:
        actions.append(Action("pin_next_host_key", f"pin {new} for bastion's own connections"))
    old = [server_active] if fresh and server_active else [k for k in on_server if k != staged]
    for key in old:
        actions.append(
            Action(
                "gateway_remove_host_key",
                f"remove the old host key {fingerprint(key)} from the gateway",
                {"fingerprint": fingerprint(key)},
            )
        )
    actions.append(
        Action(
            "verify_old_host_key_gone",
            "check that the gateway holds only the new host key",
            mutating=False,
        )
    )
    if fresh or list(trusted) != [staged]:
        actions.append(
            Action("trust_only_next_host_key", f"trust only {new} in the gateway's known_hosts")
        )
    if fresh or staged is None or tagged_fingerprint != fingerprint(staged):
        actions.append(Action("retag_host_key", f"record {new} in the instance's tags"))
    actions.append(Action("finish_host_key_rotation", "forget the staged host key marker"))
    return Plan("rotate", name, tuple(actions), tuple(warnings))


def plan_relaunch_switch(
    name: str,
    app_group: SecurityGroup | None,
    new_group: str | Ref,
    new_authorized: bool,
    old_groups: Sequence[SecurityGroup],
    old_instances: Sequence[str],
    retired: Sequence[str],
    promoted: bool,
    old_key_pairs: Sequence[KeyPairInfo],
    local_swap: bool,
) -> list[Action]:
    """Plan the switch from a verified new generation to it alone: sg-app first, old last.

    The new group is authorized on sg-app before the old one is revoked, so sg-app never
    lacks an SSH source; the old instance is marked retiring before the new one is promoted,
    so at every instant exactly one instance is "the" gateway.
    """
    actions: list[Action] = []
    old_ids = {g.group_id for g in old_groups}
    if app_group is not None:
        if not new_authorized:
            actions.append(
                Action(
                    "authorize_app_ssh",
                    f"allow tcp/22 on {app_group.group_id} from the new gateway group {new_group}",
                    {
                        "app_group_id": app_group.group_id,
                        "permission": group_permission(
                            22, new_group, f"{RULE_PREFIX}:gateway {name} relaunched"
                        ),
                    },
                )
            )
        refs = [r for r in app_group.ingress if r.source_group in old_ids]
        if refs:
            actions.append(
                Action(
                    "revoke_old_app_ssh",
                    f"remove SSH from the old generation on {app_group.group_id}",
                    {"app_group_id": app_group.group_id, "rule_ids": [r.rule_id for r in refs]},
                )
            )
    if not promoted:
        for iid in old_instances:
            if iid not in retired:
                actions.append(
                    Action("retire_old_instance", f"mark {iid} as retiring", {"instance_id": iid})
                )
        actions.append(Action("promote_new_instance", "make the new instance the gateway"))
    if local_swap:
        actions.append(
            Action("promote_local_keys", "replace the local keys and pins with the new ones")
        )
    for iid in old_instances:
        actions.append(Action("terminate_old_instance", f"terminate {iid}", {"instance_id": iid}))
        actions.append(
            Action(
                "wait_old_terminated",
                f"wait for {iid} to terminate",
                {"instance_id": iid},
                mutating=False,
            )
        )
    for g in old_groups:
        actions.append(
            Action(
                "delete_old_group",
                f"delete security group {g.group_id} ({g.name})",
                {"group_id": g.group_id},
            )
        )
    for k in old_key_pairs:
        actions.append(
            Action("delete_old_key_pair", f"delete EC2 key pair {k.name}", {"key_name": k.name})
        )
    return actions
