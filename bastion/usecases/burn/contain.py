"""Contain: from one describe of the gateway, and before anything slow, cut it off.

Calls that do not depend on each other go out at once (threads: a boto3 client may be shared
between them), so containment takes a few round trips, not one per call.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bastion.domain.incident import CONTAIN
from bastion.usecases.burn.state import Phase

T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run the calls concurrently; return their results, or raise the first failure once all end."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        # Each in a copy of this context: its calls count as the calling step's.
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
    return [future.result() for future in futures]


class Containment(Phase):
    """Revoke what trusts the gateway, deny it in the ACLs, isolate it, detach its address."""

    steps = CONTAIN

    @property
    def fresh(self) -> bool:
        """Tell whether this run opened the incident: nothing of it exists yet to look up."""
        return self.state.fresh and not self.incident.steps_done

    def contain_app_ssh(self) -> dict[str, Any]:
        """Revoke every rule that admits the gateway's groups or its addresses."""
        groups = self.ctx.aws.groups
        own = list(self.pre["security_group_ids"])
        addresses = [
            f"{ip}/32" for ip in (self.pre.get("private_ip"), self.pre.get("public_ip")) if ip
        ]
        searches = [("ip-permission.group-id", own)]
        if addresses:
            searches.append(("ip-permission.cidr", addresses))
        found: dict[str, list[dict[str, Any]]] = {}
        for result in at_once(
            *(
                lambda f=name, v=values: groups.permissions_trusting(f, v, own, addresses)
                for name, values in searches
            )
        ):
            for group_id, permissions in result.items():
                known = found.setdefault(group_id, [])
                known.extend(p for p in permissions if p not in known)
        at_once(
            *(
                lambda g=group_id, p=permissions: groups.revoke_permissions(g, p, egress=False)
                for group_id, permissions in found.items()
            )
        )
        revoked = [
            {"group_id": group_id, "rules": [_describe(p) for p in permissions]}
            for group_id, permissions in found.items()
        ]
        trusted_by = self.incident.containment.setdefault("app_groups", [])
        trusted_by.extend(g for g in found if g not in trusted_by)
        return {"revoked": revoked}

    def contain_network_acl(self) -> dict[str, Any]:
        """Deny the gateway's private IP both ways in every network ACL of its VPC."""
        ip = self.pre.get("private_ip")
        if not ip:
            return {"skipped": "no private IP"}
        cidr = f"{ip}/32"
        network = self.ctx.aws.network
        added = self.incident.containment.setdefault("acl_entries", [])
        todo: list[tuple[str, int, bool]] = []
        for acl_id, entries in network.vpc_network_acls(self.pre["vpc_id"]):
            for egress in (False, True):
                same = [
                    e
                    for e in entries
                    if e.get("Egress") == egress
                    and e.get("CidrBlock") == cidr
                    and e.get("RuleAction") == "deny"
                ]
                if same:
                    continue
                taken = {int(e["RuleNumber"]) for e in entries if e.get("Egress") == egress}
                todo.append((acl_id, next(n for n in range(1, 32767) if n not in taken), egress))

        def deny(acl_id: str, number: int, egress: bool) -> None:
            network.add_acl_deny(acl_id, number, egress, cidr)
            # As each lands: when another fails, cleanup still knows every entry made.
            added.append({"acl_id": acl_id, "number": number, "egress": egress})

        at_once(*(lambda a=a, n=n, e=e: deny(a, n, e) for a, n, e in todo))
        return {"entries": added}

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

    def _interfaces_in(self, group_id: str) -> bool:
        if self.instance is None:
            return True
        current = self.ctx.aws.compute.instance(self.instance.instance_id)
        return set(current.security_group_ids) == {group_id}

    def _swap_all(self, group_id: str) -> None:
        network = self.ctx.aws.network
        at_once(
            *(
                lambda i=interface: network.set_interface_groups(i, [group_id])
                for interface in self.pre["interface_ids"]
            )
        )

    def contain_open_group(self) -> dict[str, Any]:
        """Make both swap groups at once, then put every interface in the allow-all one.

        The allow-all group makes tracked flows untracked; the isolation group exists before
        this swap, so the allow-all window is the next call alone.
        """
        look_up = not self.fresh
        containment = self.incident.containment
        if look_up:
            isolation = self.ctx.aws.groups.find_group_by_name(
                self.state.group_name("isolate"), self.pre["vpc_id"]
            )
            if isolation and self._interfaces_in(isolation):
                containment["isolation_group"] = isolation
                return {"skipped": "already isolated"}  # never undo containment on a resume

        def ensure(kind: str, key: str) -> str:
            group_id = self._ensure_group(kind, look_up)
            containment[key] = group_id  # as it lands, so that cleanup finds it
            return group_id

        open_group, isolation = at_once(
            lambda: ensure("open", "open_group"), lambda: ensure("isolate", "isolation_group")
        )
        self._swap_all(open_group)
        return {"group_id": open_group, "isolation_group": isolation}

    def contain_isolation_group(self) -> dict[str, Any]:
        """Swap every interface into the empty group: no traffic in or out."""
        group_id = self.incident.containment.get("isolation_group") or self._ensure_group(
            "isolate", look_up=True
        )
        self.incident.containment["isolation_group"] = group_id
        self._swap_all(group_id)
        return {"group_id": group_id}

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


def _describe(permission: dict[str, Any]) -> str:
    protocol = permission["IpProtocol"]
    where = f"{protocol}/{permission.get('FromPort', 'all')}"
    sources = [p["GroupId"] for p in permission.get("UserIdGroupPairs", [])]
    sources += [r["CidrIp"] for r in permission.get("IpRanges", [])]
    return f"{where} from {', '.join(sources)}"
