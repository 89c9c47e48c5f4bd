"""Pure planners: from desired and observed state to an ordered Plan. No AWS, no disk."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.domain.errors import ConflictError
from bastion.domain.model import (
    LABEL_ME,
    RULE_PREFIX,
    Action,
    GatewaySpec,
    IngressRule,
    LocalKeys,
    ObservedGateway,
    Plan,
    Ref,
    SecurityGroup,
)
from bastion.domain.rules import group_permission, rule_description, rule_owner, ssh_permission
from bastion.domain.tags import TAG_CREATED_BY, group_name

HTTPS_EGRESS_CIDRS = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class Network:
    """Where the gateway lives, resolved before planning."""

    subnet_id: str
    vpc_id: str
    vpc_cidr: str
    vpc_cidrs: tuple[str, ...] = ()

    @property
    def app_cidrs(self) -> tuple[str, ...]:
        """Return every CIDR of the VPC (where the login user may forward to tcp/22)."""
        return self.vpc_cidrs or (self.vpc_cidr,)


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


def gateway_runner(observed: ObservedGateway) -> str | None:
    """Return who made the gateway (its instance's, else its group's `created-by` tag)."""
    for tags in (
        observed.instance.tags if observed.instance else {},
        observed.group.tags if observed.group else {},
    ):
        if tags.get(TAG_CREATED_BY):
            return tags[TAG_CREATED_BY]
    return None


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
        runner = gateway_runner(observed)
        if (key is not None or instance is not None) and runner and runner != spec.operator[-255:]:
            # Someone else's gateway: never advise taking it down from here.
            raise ConflictError(
                f"gateway {spec.name!r} is run by {rule_owner(runner)}, and its login key is not "
                f"on this machine; ask {rule_owner(runner)} for access (`bastion allow` only "
                "opens the port; the key stays theirs), or use a gateway of your own with "
                "`--name NAME`"
            )
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
    if local.missing:
        actions.append(
            Action(
                "restore_local_copies",
                f"rewrite {', '.join(local.missing)} (missing on this machine) from the files "
                "they copy",
            )
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
    if instance is None:
        # The host key is the instance's own (none travels in user data): read from its
        # console through the EC2 API, never learned over the network.
        actions.append(
            Action(
                "pin_host_key",
                "pin the host key the instance prints on its console (GetConsoleOutput); "
                "tag its fingerprint",
            )
        )
    elif local.pinned_host_key is None:
        actions.append(
            Action(
                "pin_host_key",
                f"recover the missing host-key pin of {instance.instance_id} from its console "
                "output (GetConsoleOutput), checked against its fingerprint tag",
                {"recovery": True},
            )
        )

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
                    f"{app.group_id} ({app.name}) also admits SSH ({_describe_rule(r)}); "
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
