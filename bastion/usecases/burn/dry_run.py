"""`burn --dry-run`: per step, the mutating AWS calls it would make, found with reads only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bastion.domain.containment import describe_permission, interface_hosts, plan_acl_denies
from bastion.domain.incident import Incident
from bastion.domain.model import InstanceInfo
from bastion.usecases.burn.sources import admitting_rules, prefix_list_findings
from bastion.usecases.shared.context import Context


def _in_turn(*calls: Callable[[], Any]) -> list[Any]:
    return [call() for call in calls]


def planned_calls(
    ctx: Context,
    incident: Incident,
    instance: InstanceInfo | None,
    steps: list[str],
    keep_instance: bool,
) -> dict[str, list[str]]:
    """Return, per step, the mutating AWS calls it would make, found with reads only."""
    aws, pre = ctx.aws, incident.pre_incident
    iid = pre["instance_id"]
    group = f"bastion-{incident.name}-{incident.incident_id}"
    interfaces = pre.get("interface_ids", [])
    calls: dict[str, list[str]] = {}
    hosts = interface_hosts(pre)
    for step in steps:
        todo: list[str] = []
        if step == "contain_app_ssh":
            found = admitting_rules(aws, pre)
            for revoke in found.revokes:
                operation = "Egress" if revoke.egress else "Ingress"
                todo += [
                    f"RevokeSecurityGroup{operation} {revoke.group_id} {describe_permission(p)}"
                    for p in revoke.permissions
                ]
            hits, _ = prefix_list_findings(aws, found.prefix_lists, found.hosts, _in_turn)
            todo += [
                f"ModifyManagedPrefixList {h['prefix_list_id']} remove {', '.join(h['entries'])}"
                + (" (AWS-managed: reported, not changed)" if h["aws_managed"] else "")
                for h in hits
            ]
        elif step == "contain_network_acl" and hosts:
            plan = plan_acl_denies(aws.network.vpc_network_acls(pre["vpc_id"]), hosts)
            todo += [
                f"CreateNetworkAclEntry {d.acl_id} #{d.number} deny {d.cidr} "
                f"{'outbound' if d.egress else 'inbound'}"
                for d in plan.add
            ]
            todo += [
                f"(none: {b['acl_id']} {'outbound' if b['egress'] else 'inbound'} {b['why']})"
                for b in plan.blocked
            ]
        elif step == "contain_open_group":
            todo.append(f"CreateSecurityGroup {group}-open (all traffic in, default egress)")
            todo.append(f"CreateSecurityGroup {group}-isolate (no rules)")
            for n in interfaces:
                todo.append(f"ModifyNetworkInterfaceAttribute {n} -> {group}-open")
                todo.append(f"ModifyNetworkInterfaceAttribute {n} -> {group}-isolate")
        elif step == "contain_elastic_ip":
            todo += [f"DisassociateAddress {a['PublicIp']}" for a in aws.network.addresses(iid)]
        elif step == "preserve_protect" and instance:
            todo.append(f"ModifyInstanceAttribute {iid} DisableApiTermination, shutdown=stop")
        elif step == "preserve_tag" and instance:
            todo.append(f"CreateTags {iid} {' '.join(pre['volume_ids'] + interfaces)}")
        elif step == "preserve_snapshots":
            todo += [f"CreateSnapshot {v}" for v in pre.get("volume_ids", [])]
        elif step == "destroy_key_pairs":
            todo += [f"DeleteKeyPair {k.name}" for k in aws.key_pairs.find_key_pairs(incident.name)]
        elif step == "destroy_instance" and instance:
            todo.append(f"StopInstances {iid}" if keep_instance else f"TerminateInstances {iid}")
        elif step == "destroy_cleanup":
            todo.append("DeleteNetworkAclEntry (the deny entries), DeleteSecurityGroup (temporary")
            todo[-1] += f" groups and {', '.join(pre.get('security_group_ids', []))})"
        elif step == "relaunch_gateway":
            todo.append(
                f"ImportKeyPair, CreateSecurityGroup bastion-{incident.name}-gw-"
                f"{int(pre.get('generation', 1)) + 1} and its rules, RunInstances, "
                "AuthorizeSecurityGroupIngress on the app group (as `bastion up`)"
            )
        elif step == "relaunch_elastic_ip":
            todo += [
                f"AssociateAddress {a['PublicIp']} -> new gateway"
                for a in aws.network.addresses(iid)
            ]
        calls[step] = todo
    return calls
