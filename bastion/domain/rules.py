"""Rules bastion owns: their descriptions (label, owner, when) and IpPermissions items."""

from __future__ import annotations

import re

from bastion.domain.model import RULE_PREFIX, Ref

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
