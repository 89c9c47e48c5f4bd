"""Contain: from one describe of the gateway, and before anything slow, cut it off.

Calls that do not depend on each other go out at once (threads: a boto3 client may be shared
between them), so containment takes a few round trips, not one per call. Each step reads back
what it changed (after its changes, so nothing waits on it) and records what it could not do.
"""

from __future__ import annotations

from typing import Any

from bastion.domain.containment import (
    AclDeny,
    interface_hosts,
    plan_acl_denies,
    unchecked_denies,
)
from bastion.domain.incident import CONTAIN
from bastion.usecases.burn.sources import admitting_rules, clear_prefix_lists, revoke_all
from bastion.usecases.burn.state import Phase
from bastion.usecases.shared.concurrently import at_once


class Containment(Phase):
    """Revoke what trusts the gateway, deny it in the ACLs, isolate it, detach its address."""

    steps = CONTAIN

    @property
    def fresh(self) -> bool:
        """Tell whether this run opened the incident: nothing of it exists yet to look up."""
        return self.state.fresh and not self.incident.steps_done

    def _warn(self, message: str) -> None:
        self.deps.reporter.warn(f"[{self.incident.incident_id}] {message}")

    def contain_app_ssh(self) -> dict[str, Any]:
        """Revoke every rule of the VPC that admits the gateway's groups or addresses.

        In and out, CIDR and group sources, and the gateway's entries in the prefix lists the
        rules name (removed where bastion may change the list, reported where it may not).
        """
        aws = self.ctx.aws
        found = admitting_rules(aws, self.pre)
        both: list[Any] = at_once(
            lambda: revoke_all(aws, found.revokes, at_once),
            lambda: clear_prefix_lists(aws, found.prefix_lists, found.hosts, at_once),
        )
        refused, lists = both
        for left in refused:
            self._warn(f"{left['group_id']} egress still admits the gateway: {left['why']}")
        for left in lists["left"]:
            self._warn(
                f"prefix list {left['prefix_list_id']} still holds {left['entries']}: {left['why']}"
            )
        trusted_by = self.incident.containment.setdefault("app_groups", [])
        trusted_by.extend(g for g in found.trusting_groups if g not in trusted_by)
        # Read back: nothing of the VPC may still admit the gateway by its groups or addresses.
        still = admitting_rules(aws, self.pre).revokes
        for group_id, egress, _ in still:
            self._warn(f"{group_id} still admits the gateway ({'egress' if egress else 'ingress'})")
        return {
            "revoked": [r.as_record() for r in found.revokes],
            "prefix_lists": lists,
            **({"refused": refused} if refused else {}),
            "checked": not still,
            **({"still_admitting": [r.as_record() for r in still]} if still else {}),
        }

    def contain_network_acl(self) -> dict[str, Any]:
        """Deny every address of the gateway both ways in every ACL of its VPC, before any allow."""
        hosts = interface_hosts(self.pre)
        if not hosts:
            return {"skipped": "no private IP"}
        network, vpc = self.ctx.aws.network, self.pre["vpc_id"]
        added = self.incident.containment.setdefault("acl_entries", [])
        plan = plan_acl_denies(network.vpc_network_acls(vpc), hosts)

        def deny(entry: AclDeny) -> None:
            network.add_acl_deny(entry.acl_id, entry.number, entry.egress, entry.cidr)
            # As each lands: when another fails, cleanup still knows every entry made.
            added.append(entry.as_record())

        at_once(*(lambda d=d: deny(d) for d in plan.add))
        for blocked in plan.blocked:
            self._warn(
                f"no ACL deny for {blocked['cidr']} in {blocked['acl_id']}: {blocked['why']}"
            )
        # Read back: each deny there, and evaluated before every allow that holds its address.
        unchecked = unchecked_denies(network.vpc_network_acls(vpc), plan.add + plan.present)
        for entry in unchecked:
            self._warn(
                f"ACL deny #{entry.number} for {entry.cidr} in {entry.acl_id} is not in effect"
            )
        result: dict[str, Any] = {
            "entries": added,
            "checked": not unchecked and not plan.blocked,
        }
        if plan.present:
            result["already_denied"] = [d.as_record() for d in plan.present]
        if plan.blocked:
            result["blocked"] = plan.blocked
        if unchecked:
            result["unchecked"] = [d.as_record() for d in unchecked]
        return result

    def _ensure_group(self, kind: str, look_up: bool) -> str:
        aws = self.ctx.aws
        name = self.state.group_name(kind)
        vpc = self.pre["vpc_id"]
        existing = aws.groups.find_group_by_name(name, vpc) if look_up else None
        if existing:
            return existing
        group_id = aws.groups.create_group(
            name,
            f"bastion incident {self.incident.incident_id}: {kind}",
            vpc,
            self.state.incident_tags(kind),
        )
        if kind == "open":
            everything = {
                "IpProtocol": "-1",
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            }
            aws.groups.authorize(group_id, everything, egress=False)
        else:
            default = [r.rule_id for r in aws.groups.group(group_id).egress]
            if default:
                aws.groups.revoke(group_id, default, egress=True)
        return group_id

    def _interface_groups(self) -> dict[str, set[str]]:
        current = self.ctx.aws.network.interface_groups(self.pre["instance_id"])
        return {i: set(groups) for i, groups in current.items()}

    def contain_open_group(self) -> dict[str, Any]:
        """Make both swap groups at once, then take each interface through allow-all to isolation.

        The allow-all group makes tracked flows untracked; the isolation group exists before
        the first swap, so each interface is open for one call alone (its next swap), and no
        step ends with an interface open. A resume isolates first: an interface found in the
        allow-all group (its flows already untracked) goes straight to isolation.
        """
        if self.instance is None:
            return {"skipped": "already terminated"}
        look_up = not self.fresh
        containment = self.incident.containment

        def ensure(kind: str, key: str) -> str:
            group_id = self._ensure_group(kind, look_up)
            containment[key] = group_id  # as it lands, so that cleanup finds it
            return group_id

        current: dict[str, set[str]] = {i: set() for i in self.pre["interface_ids"]}
        if look_up:
            name, vpc = self.state.group_name("isolate"), self.pre["vpc_id"]
            read, found = at_once(
                self._interface_groups, lambda: self.ctx.aws.groups.find_group_by_name(name, vpc)
            )
            current = read  # type: ignore[assignment]
            if found and all(groups == {found} for groups in current.values()):
                containment["isolation_group"] = found
                return {"skipped": "already isolated"}  # never undo containment on a resume
        open_group, isolation = at_once(
            lambda: ensure("open", "open_group"), lambda: ensure("isolate", "isolation_group")
        )
        network = self.ctx.aws.network
        moves: dict[str, list[str]] = {}

        def take(interface: str) -> None:
            path = [] if current[interface] == {isolation} else [isolation]
            if path and current[interface] != {open_group}:
                path.insert(0, open_group)
            for group_id in path:
                network.set_interface_groups(interface, [group_id])
            moves[interface] = path

        at_once(*(lambda i=i: take(i) for i in current))
        return {"group_id": open_group, "isolation_group": isolation, "moves": moves}

    def contain_isolation_group(self) -> dict[str, Any]:
        """Read the interfaces back: every one in the empty isolation group, or moved there now."""
        if self.instance is None:
            return {"skipped": "already terminated"}
        group_id = self.incident.containment.get("isolation_group") or self._ensure_group(
            "isolate", look_up=True
        )
        self.incident.containment["isolation_group"] = group_id
        network = self.ctx.aws.network
        stray = [i for i, groups in self._interface_groups().items() if groups != {group_id}]
        at_once(*(lambda i=i: network.set_interface_groups(i, [group_id]) for i in stray))
        return {"group_id": group_id, "moved": stray}

    def contain_elastic_ip(self) -> dict[str, Any]:
        """Detach Elastic IPs, keeping the allocations for the new gateway."""
        network = self.ctx.aws.network
        kept = self.incident.containment.setdefault("elastic_ips", [])

        def detach(address: dict[str, str]) -> None:
            network.disassociate_address(address["AssociationId"])
            if address["AllocationId"] not in kept:
                kept.append(address["AllocationId"])

        at_once(*(lambda a=a: detach(a) for a in network.addresses(self.pre["instance_id"])))
        return {"kept": kept}
