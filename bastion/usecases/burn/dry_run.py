"""`burn --dry-run`: per step, the mutating AWS calls it would make, found with reads only."""

from __future__ import annotations

from bastion.domain.incident import Incident
from bastion.domain.model import InstanceInfo
from bastion.usecases.shared.context import Context


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
    ip = pre.get("private_ip")
    addresses = [f"{a}/32" for a in (ip, pre.get("public_ip")) if a]
    for step in steps:
        todo: list[str] = []
        if step == "contain_app_ssh":
            for group_id, rules in aws.groups.groups_admitting(
                pre["security_group_ids"], addresses
            ):
                for r in rules:
                    source = r.source_group or r.cidr
                    todo.append(
                        f"RevokeSecurityGroupIngress {group_id} {r.protocol}/{r.from_port} "
                        f"from {source}"
                    )
        elif step == "contain_network_acl" and ip:
            for acl_id, _ in aws.network.vpc_network_acls(pre["vpc_id"]):
                todo += [
                    f"CreateNetworkAclEntry {acl_id} deny {ip}/32 {way}"
                    for way in ("inbound", "outbound")
                ]
        elif step == "contain_open_group":
            todo.append(f"CreateSecurityGroup {group}-open (all traffic in, default egress)")
            todo += [f"ModifyNetworkInterfaceAttribute {n} -> {group}-open" for n in interfaces]
        elif step == "contain_isolation_group":
            todo.append(f"CreateSecurityGroup {group}-isolate (no rules)")
            todo += [f"ModifyNetworkInterfaceAttribute {n} -> {group}-isolate" for n in interfaces]
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
