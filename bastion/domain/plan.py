"""Pure planners: from desired and observed state to an ordered Plan. No AWS, no disk."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.domain.errors import ConflictError
from bastion.domain.model import (
    LABEL_ME,
    RULE_PREFIX,
    Action,
    GatewaySpec,
    IngressRule,
    KeyPairInfo,
    LocalKeys,
    ObservedGateway,
    Plan,
    Ref,
    SecurityGroup,
)

HTTPS_EGRESS_CIDRS = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Network:
    """Where the gateway lives, resolved before planning."""

    subnet_id: str
    vpc_id: str
    vpc_cidr: str


def key_pair_name(name: str, fingerprint: str) -> str:
    """Return the EC2 key pair name for a login key: unique per key, so rotation can overlap."""
    digest = "".join(ch for ch in fingerprint.removeprefix("SHA256:") if ch.isalnum())[:10]
    return f"bastion-{name}-{digest}"


def group_name(name: str, generation: int) -> str:
    """Return the gateway group's name for one generation, e.g. `bastion-default-gw-1`."""
    return f"bastion-{name}-gw-{generation}"


_NOT_IN_DESCRIPTIONS = re.compile(r"[^a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]")


def rule_owner(operator: str) -> str:
    """Return the owner recorded on a rule: the caller ARN's last part, in AWS's charset."""
    who = operator.rsplit("/", 1)[-1].rsplit(":", 1)[-1] or "unknown"
    return _NOT_IN_DESCRIPTIONS.sub("_", who).replace(" ", "_")


def rule_description(label: str, operator: str, when: str, until: str | None = None) -> str:
    """Describe an owned rule: label, who added it, when, and (if any) when it expires.

    `bastion:LABEL by WHO at WHEN[ until EXPIRY]`; within 255 characters, the owner is what
    gets shortened, so the expiry is never cut off.
    """
    head = f"{RULE_PREFIX}:{label} by "
    tail = f" at {when}" + (f" until {until}" if until else "")
    return head + rule_owner(operator)[: max(1, 255 - len(head) - len(tail))] + tail


def ssh_permission(port: int, cidr: str, description: str) -> dict[str, object]:
    """Return an IpPermissions item opening tcp `port` to `cidr`."""
    ranges_key, item_key = ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        ranges_key: [{item_key: cidr, "Description": description}],
    }


def group_permission(port: int, group_id: str | Ref, description: str) -> dict[str, object]:
    """Return an IpPermissions item opening tcp `port` to members of `group_id`."""
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "UserIdGroupPairs": [{"GroupId": group_id, "Description": description}],
    }


def desired_egress(
    network: Network, app_group: SecurityGroup | None, when: str
) -> list[dict[str, object]]:
    """Return the gateway's egress: SSH to the app hosts, HTTPS for OS updates, nothing else."""
    rules: list[dict[str, object]] = []
    if app_group is not None:
        rules.append(group_permission(22, app_group.group_id, f"{RULE_PREFIX}:egress ssh to app"))
    else:
        rules.append(ssh_permission(22, network.vpc_cidr, f"{RULE_PREFIX}:egress ssh in vpc"))
    for cidr in HTTPS_EGRESS_CIDRS:
        rules.append(ssh_permission(443, cidr, f"{RULE_PREFIX}:egress https updates"))
    return rules


def _egress_matches(rule: IngressRule, permission: dict[str, object]) -> bool:
    if rule.protocol != "tcp" or rule.from_port != permission["FromPort"]:
        return False
    pairs = permission.get("UserIdGroupPairs")
    if pairs:
        return bool(rule.source_group == pairs[0]["GroupId"])  # type: ignore[index]
    ranges = permission.get("IpRanges") or permission.get("Ipv6Ranges")
    cidr = ranges[0].get("CidrIp") or ranges[0].get("CidrIpv6")  # type: ignore[index]
    return bool(rule.cidr == cidr)


def _owned_port_rules(group: SecurityGroup, label: str) -> list[IngressRule]:
    return [r for r in group.ingress if r.label == label and r.cidr]


def plan_up(
    spec: GatewaySpec,
    observed: ObservedGateway,
    local: LocalKeys,
    network: Network,
    when: str,
    generation_floor: int = 1,
) -> Plan:
    """Plan the calls that bring gateway `spec.name` in line with `spec`."""
    actions: list[Action] = []
    warnings: list[str] = []
    instance = observed.instance

    # Keys: the operator must hold the private half of whatever the gateway trusts.
    key = observed.key_pair
    if local.login_fingerprint is None:
        if key is not None or instance is not None:
            raise ConflictError(
                f"gateway {spec.name!r} exists in AWS but its login key is not on this machine; "
                "copy the gateway folder from the machine that made it, or run "
                f"`bastion down --name {spec.name}` and then `bastion up`"
            )
        actions.append(
            Action("create_login_key", "make a new Ed25519 login key (local, 0600)", mutating=True)
        )
    if local.admin_fingerprint is None:
        if instance is not None:
            warnings.append(
                "the key-management key is missing locally; `bastion rotate` will need "
                "`--relaunch` for this gateway"
            )
        actions.append(
            Action("create_admin_key", "make a new Ed25519 key-management key (local, 0600)")
        )
    if key is None:
        actions.append(
            Action(
                "import_key_pair",
                f"import the login public key as EC2 key pair for {spec.name}",
                {"login_fingerprint": local.login_fingerprint or Ref("new login key")},
            )
        )
    elif local.login_fingerprint and key.fingerprint and key.fingerprint != local.login_fingerprint:
        raise ConflictError(
            f"EC2 key pair {key.name} ({key.fingerprint}) differs from the local login key "
            f"({local.login_fingerprint}); run `bastion rotate --name {spec.name}` to repair"
        )

    # Group: one per generation; ingress only on the custom port from the allowed CIDRs.
    generation = (
        instance.generation
        if instance
        else max(
            [int(g.tags.get("bastion:generation", "1")) for g in _all_groups(observed)]
            + [generation_floor]
        )
    )
    group = observed.group
    group_ref: str | Ref = group.group_id if group else Ref("new gateway group")
    if group is None:
        actions.append(
            Action(
                "create_group",
                f"create security group {group_name(spec.name, generation)} in {network.vpc_id}",
                {"generation": generation, "vpc_id": network.vpc_id},
            )
        )
        actions.append(
            Action("revoke_default_egress", f"remove the default allow-all egress of {group_ref}")
        )
        for permission in desired_egress(network, observed.app_group, when):
            actions.append(
                Action(
                    "authorize_egress",
                    f"allow egress {_describe_permission(permission)}",
                    {"permission": permission},
                )
            )
    else:
        wanted_egress = desired_egress(network, observed.app_group, when)
        stray = [r for r in group.egress if not any(_egress_matches(r, p) for p in wanted_egress)]
        for permission in wanted_egress:
            if not any(_egress_matches(r, permission) for r in group.egress):
                actions.append(
                    Action(
                        "authorize_egress",
                        f"allow egress {_describe_permission(permission)}",
                        {"permission": permission},
                    )
                )
        if stray:
            actions.append(
                Action(
                    "revoke_egress",
                    f"remove {len(stray)} egress rule(s) the gateway does not need",
                    {"rule_ids": [r.rule_id for r in stray]},
                )
            )

    everyone = _owned_port_rules(group, LABEL_ME) if group else []
    # Each operator's `me` rule is theirs: another operator's up must not revoke it.
    me = rule_owner(spec.operator)
    existing = [r for r in everyone if r.owner in (None, me)]
    keep = {r.cidr for r in everyone if r.from_port == spec.port == r.to_port}
    for cidr in spec.allowed_cidrs:
        if cidr not in keep:
            actions.append(
                Action(
                    "authorize_ingress",
                    f"allow tcp/{spec.port} from {cidr} on {group_ref}",
                    {
                        "permission": ssh_permission(
                            spec.port, cidr, rule_description(LABEL_ME, spec.operator, when)
                        )
                    },
                )
            )
    stale = [
        r
        for r in existing
        if r.cidr not in spec.allowed_cidrs or not (r.from_port == spec.port == r.to_port)
    ]
    if stale:
        # Revoked only after the new rules exist, so the operator is never locked out between.
        actions.append(
            Action(
                "revoke_ingress",
                f"remove old rule(s) {', '.join(str(r.cidr) for r in stale)} from {group_ref}",
                {"rule_ids": [r.rule_id for r in stale]},
            )
        )
    if group:
        for r in group.ingress:
            if r.label is None:
                warnings.append(
                    f"{group.group_id} has a rule bastion did not make ({_describe_rule(r)}); "
                    "left as is"
                )

    # Instance.
    if instance is None:
        actions.append(
            Action(
                "launch_instance",
                f"launch {spec.instance_type} gateway from {spec.image} in {network.subnet_id}, "
                f"sshd on tcp/{spec.port}, IMDSv2 only, encrypted root volume",
                {"generation": generation},
            )
        )
    else:
        if instance.port is not None and instance.port != spec.port:
            raise ConflictError(
                f"gateway {spec.name!r} runs sshd on port {instance.port}, not {spec.port}; "
                f"pass --port {instance.port}, or run `bastion down` then `bastion up --port "
                f"{spec.port}` to move it"
            )
        if instance.state in ("stopped", "stopping"):
            actions.append(
                Action(
                    "start_instance",
                    f"start stopped gateway {instance.instance_id}",
                    {"instance_id": instance.instance_id},
                )
            )
        if group and group.group_id not in instance.security_group_ids:
            warnings.append(
                f"{instance.instance_id} is not in its gateway group {group.group_id}; "
                "run `bastion status` and check for tampering"
            )
    actions.append(Action("wait_running", "wait for the instance to be running", mutating=False))

    # sg-app: SSH only from the gateway group.
    app = observed.app_group
    if app is not None:
        admits = [r for r in app.ingress if r.admits_port(22)]
        if not any(r.source_group == group_ref for r in admits):
            actions.append(
                Action(
                    "authorize_app_ssh",
                    f"allow tcp/22 on {app.group_id} ({app.name}) from gateway group {group_ref}",
                    {
                        "app_group_id": app.group_id,
                        "permission": group_permission(
                            22, group_ref, f"{RULE_PREFIX}:gateway {spec.name} gen {generation}"
                        ),
                    },
                )
            )
        for r in admits:
            if r.source_group != group_ref:
                warnings.append(
                    f"{app.group_id} ({app.name}) also admits SSH from {_describe_rule(r)}; "
                    "only the gateway should"
                )
    if spec.app_sg is None:
        warnings.append("no --app-sg given: no app group was pointed at the gateway")
    actions.append(
        Action(
            "verify", f"verify sshd on tcp/{spec.port}: pinned host key, login key", mutating=False
        )
    )
    return Plan("up", spec.name, tuple(actions), tuple(warnings))


def plan_down(observed: ObservedGateway, local: LocalKeys) -> Plan:
    """Plan removing everything bastion made for a gateway, references first."""
    actions: list[Action] = []
    groups = _all_groups(observed)
    group_ids = {g.group_id for g in groups}
    app = observed.app_group
    if app is not None:
        refs = [r for r in app.ingress if r.source_group in group_ids]
        if refs:
            actions.append(
                Action(
                    "revoke_app_ssh",
                    f"remove SSH from the gateway on {app.group_id} ({app.name})",
                    {"app_group_id": app.group_id, "rule_ids": [r.rule_id for r in refs]},
                )
            )
    # Mid-relaunch there is a standby (and maybe a retiring generation): all of them go.
    live = [observed.instance, observed.standby, *observed.retiring]
    for iid in [i.instance_id for i in live if i is not None]:
        actions.append(Action("terminate_instance", f"terminate {iid}", {"instance_id": iid}))
        actions.append(
            Action(
                "wait_terminated",
                f"wait for {iid} to terminate",
                {"instance_id": iid},
                mutating=False,
            )
        )
    for g in groups:
        actions.append(
            Action(
                "delete_group",
                f"delete security group {g.group_id} ({g.name})",
                {"group_id": g.group_id},
            )
        )
    for key_pair in [observed.key_pair, *observed.other_key_pairs]:
        if key_pair is not None:
            actions.append(
                Action(
                    "delete_key_pair",
                    f"delete EC2 key pair {key_pair.name}",
                    {"key_name": key_pair.name},
                )
            )
    if local.login_fingerprint or local.admin_fingerprint or local.pinned_host_key:
        actions.append(Action("delete_local", "remove the local keys and pinned host key"))
    return Plan("down", observed.name, tuple(actions))


def _all_groups(observed: ObservedGateway) -> Sequence[SecurityGroup]:
    return ([observed.group] if observed.group else []) + list(observed.stale_groups)


def _describe_rule(rule: IngressRule) -> str:
    source = rule.cidr or rule.source_group or "?"
    ports = "all" if rule.protocol == "-1" else f"{rule.protocol}/{rule.from_port}"
    return f"{ports} from {source}"


def _describe_permission(permission: dict[str, object]) -> str:
    port = permission["FromPort"]
    pairs = permission.get("UserIdGroupPairs")
    if pairs:
        return f"tcp/{port} to {pairs[0]['GroupId']}"  # type: ignore[index]
    ranges = permission.get("IpRanges") or permission.get("Ipv6Ranges")
    item = ranges[0]  # type: ignore[index]
    return f"tcp/{port} to {item.get('CidrIp') or item.get('CidrIpv6')}"


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
    last run stopped: add new, prove new, remove old, then EC2 and the local files.
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
    if current != rotating_in and current in on_gateway:
        actions.append(
            Action(
                "gateway_remove_login",
                f"revoke the old login key {current} on the gateway",
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
    for stray in on_gateway:
        if stray not in (current, rotating_in):
            warnings.append(
                f"the gateway also trusts login key {stray}, which bastion did not make; "
                "left as is (run `bastion burn` if you did not add it)"
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
    from bastion.adapters.keys import fingerprint

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
