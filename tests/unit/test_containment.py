"""Where burn's ACL denies go and which rules admit the gateway: the pure planners."""

from __future__ import annotations

from typing import Any

from bastion.domain.containment import (
    admitting_parts,
    host_cidrs,
    plan_acl_denies,
    unchecked_denies,
)


def _entry(number: int, action: str, cidr: str, egress: bool = False) -> dict[str, Any]:
    key = "Ipv6CidrBlock" if ":" in cidr else "CidrBlock"
    return {"RuleNumber": number, "RuleAction": action, key: cidr, "Egress": egress}


def test_host_cidrs_are_normalised_and_unique() -> None:
    assert host_cidrs(["10.0.0.5", "2600:1f18:0:0::5", "10.0.0.5", None, ""]) == [
        "10.0.0.5/32",
        "2600:1f18::5/128",
    ]


def test_a_deny_goes_below_the_first_allow_that_holds_the_address() -> None:
    entries = [_entry(1, "deny", "192.0.2.0/24"), _entry(2, "allow", "10.99.0.0/16")]
    entries += [_entry(10, "allow", "10.0.0.0/16"), _entry(32767, "deny", "0.0.0.0/0")]
    plan = plan_acl_denies([("acl-1", entries)], ["10.0.0.5/32", "10.0.0.6/32"])
    inbound = [d for d in plan.add if not d.egress]
    assert [d.number for d in inbound] == [3, 4]  # 1 and 2 taken; 2 does not hold the address
    assert not plan.blocked


def test_an_allow_all_at_rule_one_leaves_no_number_and_says_so() -> None:
    plan = plan_acl_denies([("acl-1", [_entry(1, "allow", "0.0.0.0/0")])], ["10.0.0.5/32"])
    assert [d.egress for d in plan.add] == [True]  # outbound has room, inbound none
    (blocked,) = plan.blocked
    assert blocked["acl_id"] == "acl-1" and blocked["allowed_by_rule"] == 1
    assert "renumber" in blocked["why"]


def test_ipv6_denies_are_placed_against_ipv6_allows_only() -> None:
    entries = [_entry(1, "allow", "0.0.0.0/0"), _entry(5, "allow", "::/0")]
    plan = plan_acl_denies([("acl-1", entries)], ["2600:1f18::5/128"])
    assert {(d.number, d.cidr) for d in plan.add if not d.egress} == {(2, "2600:1f18::5/128")}


def test_an_effective_deny_is_kept_and_one_behind_an_allow_is_not_counted() -> None:
    entries = [_entry(3, "deny", "10.0.0.5/32"), _entry(50, "allow", "0.0.0.0/0")]
    entries += [_entry(60, "deny", "10.0.0.6/32")]
    plan = plan_acl_denies([("acl-1", entries)], ["10.0.0.5/32", "10.0.0.6/32"])
    assert [d.number for d in plan.present if not d.egress] == [3]
    assert [(d.number, d.cidr) for d in plan.add if not d.egress] == [(1, "10.0.0.6/32")]


def test_the_read_back_flags_a_deny_that_is_missing_or_behind_an_allow() -> None:
    wanted = plan_acl_denies([("acl-1", [_entry(100, "allow", "0.0.0.0/0")])], ["10.0.0.5/32"])
    (inbound,) = [d for d in wanted.add if not d.egress]
    read_back = [_entry(1, "allow", "0.0.0.0/0"), _entry(inbound.number + 1, "deny", "10.0.0.5/32")]
    assert inbound in unchecked_denies([("acl-1", read_back)], wanted.add)


def test_only_the_parts_of_a_rule_that_name_the_gateway_are_revoked() -> None:
    permissions = [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "10.0.0.5/32"}, {"CidrIp": "10.0.0.0/16"}],
            "Ipv6Ranges": [{"CidrIpv6": "2600:1f18:0::5/128", "Description": "gw"}],
            "UserIdGroupPairs": [{"GroupId": "sg-gw"}, {"GroupId": "sg-other"}],
            "PrefixListIds": [{"PrefixListId": "pl-1"}],
        }
    ]
    (part,) = admitting_parts(permissions, ["sg-gw"], ["10.0.0.5/32", "2600:1f18::5/128"])
    assert part == {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        "UserIdGroupPairs": [{"GroupId": "sg-gw"}],
        "IpRanges": [{"CidrIp": "10.0.0.5/32"}],
        "Ipv6Ranges": [{"CidrIpv6": "2600:1f18:0::5/128", "Description": "gw"}],
    }
