"""`burn` contains every address of the gateway: secondary, IPv6, a second interface, prefix lists.

Against moto. moto 5 takes IPv6 addresses on an interface without an IPv6 subnet, keeps IPv6
ACL entries, and lets the backend's AWS-managed prefix lists be edited (AWS would not): the
test seeds an AWS-managed list through the backend, as an attacker's layout cannot.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from typing import Any

import pytest

from bastion.domain.incident import CONTAIN
from bastion.domain.model import Action
from bastion.usecases.burn import BurnResult, burn
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import make_settings

IPV6 = "2600:1f18:aaaa::5"


def _instance(ec2_client: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2_client.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservations[0]["Instances"][0])


def _rule(port: int, **source: Any) -> dict[str, Any]:
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **source}


@pytest.fixture
def wide(deps: Deps, ec2_client: Any, app_sg: str) -> dict[str, Any]:
    """A gateway with a secondary IP, an IPv6 address, a second interface, and a db group that
    admits each of them (in and out, also through a customer prefix list)."""
    status = up(make_settings(app_sg=app_sg), deps).status
    assert status
    iid, gw_group = status["instance"]["id"], status["security_group"]
    instance = _instance(ec2_client, iid)
    first = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    primary = instance["PrivateIpAddress"]
    assigned = ec2_client.assign_private_ip_addresses(
        NetworkInterfaceId=first, SecondaryPrivateIpAddressCount=1
    )["AssignedPrivateIpAddresses"]
    (secondary,) = [a["PrivateIpAddress"] for a in assigned if a["PrivateIpAddress"] != primary]
    ec2_client.assign_ipv6_addresses(NetworkInterfaceId=first, Ipv6Addresses=[IPV6])
    second = ec2_client.create_network_interface(SubnetId=instance["SubnetId"], Groups=[gw_group])[
        "NetworkInterface"
    ]
    ec2_client.attach_network_interface(
        NetworkInterfaceId=second["NetworkInterfaceId"], InstanceId=iid, DeviceIndex=1
    )
    ops = ec2_client.create_managed_prefix_list(
        PrefixListName="ops",
        MaxEntries=5,
        AddressFamily="IPv4",
        Entries=[{"Cidr": f"{second['PrivateIpAddress']}/32"}, {"Cidr": "198.51.100.1/32"}],
    )["PrefixList"]["PrefixListId"]
    db = ec2_client.create_security_group(
        GroupName="sg-db", Description="db", VpcId=instance["VpcId"]
    )["GroupId"]
    ec2_client.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[
            _rule(5432, IpRanges=[{"CidrIp": f"{secondary}/32"}, {"CidrIp": "10.99.0.0/16"}]),
            # written out in full: the rule still names the gateway's address
            _rule(22, Ipv6Ranges=[{"CidrIpv6": "2600:1f18:aaaa:0:0:0:0:5/128"}]),
            _rule(
                443, IpRanges=[{"CidrIp": f"{second['PrivateIpAddress']}/32", "Description": "x"}]
            ),
            _rule(8080, PrefixListIds=[{"PrefixListId": ops}]),
        ],
    )
    ec2_client.authorize_security_group_egress(
        GroupId=db, IpPermissions=[_rule(22, IpRanges=[{"CidrIp": f"{primary}/32"}])]
    )
    hosts = [primary, secondary, second["PrivateIpAddress"], IPV6]
    return {
        "instance_id": iid,
        "hosts": hosts,
        "public": instance.get("PublicIpAddress"),
        "db": db,
        "ops": ops,
        "vpc": instance["VpcId"],
    }


def _admitted(ec2_client: Any, vpc: str, hosts: list[str]) -> list[tuple[str, str, str]]:
    """Every rule of the VPC (in and out) whose CIDR is one of `hosts`."""
    wanted = {ipaddress.ip_network(h) for h in hosts}
    found = []
    groups = ec2_client.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    for group in groups["SecurityGroups"]:
        for key in ("IpPermissions", "IpPermissionsEgress"):
            for p in group[key]:
                cidrs = [r["CidrIp"] for r in p.get("IpRanges", [])]
                cidrs += [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
                found += [
                    (group["GroupId"], key, c) for c in cidrs if ipaddress.ip_network(c) in wanted
                ]
    return found


def _step_result(result: BurnResult, step: str) -> dict[str, Any]:
    journal = (result.record_path.parent / "journal.jsonl").read_text().splitlines()
    done = [json.loads(line) for line in journal]
    return next(e["result"] for e in done if e["step"] == step and e["phase"] == "done")


def test_after_burn_no_rule_admits_any_address_of_the_old_gateway(
    deps: Deps, ec2_client: Any, wide: dict[str, Any]
) -> None:
    before = _admitted(ec2_client, wide["vpc"], wide["hosts"])
    assert len(before) == 4  # the layout really admits the gateway

    burn(make_settings(), deps, reason="wide", relaunch=False)

    assert _admitted(ec2_client, wide["vpc"], wide["hosts"]) == []
    entries = ec2_client.get_managed_prefix_list_entries(PrefixListId=wide["ops"])["Entries"]
    assert [e["Cidr"] for e in entries] == ["198.51.100.1/32"]  # the others' entry stays
    db = ec2_client.describe_security_groups(GroupIds=[wide["db"]])["SecurityGroups"][0]
    ranges = [r["CidrIp"] for p in db["IpPermissions"] for r in p.get("IpRanges", [])]
    assert ranges == ["10.99.0.0/16"]  # only what named the gateway went
    assert any(p.get("PrefixListIds") for p in db["IpPermissions"])


def test_an_aws_managed_list_holding_the_gateway_is_reported_with_its_entry(
    deps: Deps, ec2_client: Any, wide: dict[str, Any]
) -> None:
    from moto.ec2.models import ec2_backends

    host = f"{wide['public'] or wide['hosts'][0]}/32"
    backend = ec2_backends["123456789012"]["us-east-1"]
    s3 = next(
        p for p in backend.managed_prefix_lists.values() if p.prefix_list_name.endswith(".s3")
    )
    for version in s3.entries:
        s3.entries[version] = [*s3.entries[version], {"Cidr": host}]
    ec2_client.authorize_security_group_egress(
        GroupId=wide["db"], IpPermissions=[_rule(443, PrefixListIds=[{"PrefixListId": s3.id}])]
    )

    result = burn(make_settings(), deps, reason="managed", relaunch=False)

    lists = _step_result(result, "contain_app_ssh")["prefix_lists"]
    (left,) = lists["left"]
    assert left["prefix_list_id"] == s3.id and left["entries"] == [host]
    assert "AWS-managed" in left["why"]
    assert [c["prefix_list_id"] for c in lists["changed"]] == [wide["ops"]]
    entries = ec2_client.get_managed_prefix_list_entries(PrefixListId=s3.id)["Entries"]
    assert host in [e["Cidr"] for e in entries]  # not changed: bastion may not


def _acl(ec2_client: Any, vpc: str) -> dict[str, Any]:
    (acl,) = ec2_client.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "NetworkAcls"
    ]
    return dict(acl)


def _allows_before(entries: list[dict[str, Any]], deny: dict[str, Any]) -> list[int]:
    host = ipaddress.ip_network(deny.get("CidrBlock") or deny["Ipv6CidrBlock"])
    return [
        e["RuleNumber"]
        for e in entries
        if e["Egress"] == deny["Egress"]
        and e["RuleAction"] == "allow"
        and e["RuleNumber"] < deny["RuleNumber"]
        and (net := ipaddress.ip_network(e.get("CidrBlock") or e["Ipv6CidrBlock"])).version
        == host.version
        and host.subnet_of(net)
    ]


def test_every_acl_deny_is_evaluated_before_any_allow_and_no_room_is_reported(
    deps: Deps, ec2_client: Any, wide: dict[str, Any]
) -> None:
    acl = _acl(ec2_client, wide["vpc"])["NetworkAclId"]
    layout = [
        (1, "deny", "192.0.2.0/24", False),
        (2, "allow", "10.99.0.0/16", False),  # does not hold the gateway
        (10, "allow", "0.0.0.0/0", False),
        (11, "allow", "::/0", False),
        (1, "allow", "0.0.0.0/0", True),  # outbound IPv4: allow-all at rule 1, no room below
    ]
    for number, action, cidr, egress in layout:
        block = {"Ipv6CidrBlock": cidr} if ":" in cidr else {"CidrBlock": cidr}
        ec2_client.create_network_acl_entry(
            NetworkAclId=acl,
            RuleNumber=number,
            Protocol="-1",
            RuleAction=action,
            Egress=egress,
            **block,
        )

    result = burn(make_settings(), deps, keep_instance=True, relaunch=False)

    entries = _acl(ec2_client, wide["vpc"])["Entries"]
    denies = [
        e
        for e in entries
        if e["RuleAction"] == "deny"
        and ipaddress.ip_network(e.get("CidrBlock") or e["Ipv6CidrBlock"]).num_addresses == 1
    ]
    denied = {(e["Egress"], e.get("CidrBlock") or e["Ipv6CidrBlock"]) for e in denies}
    hosts = [str(ipaddress.ip_network(h)) for h in wide["hosts"]]
    assert denied == {(False, h) for h in hosts} | {(True, f"{IPV6}/128")}
    assert all(_allows_before(entries, d) == [] for d in denies), denies
    outcome = _step_result(result, "contain_network_acl")
    assert {b["cidr"] for b in outcome["blocked"]} == {h for h in hosts if ":" not in h}
    assert all(b["allowed_by_rule"] == 1 and b["egress"] for b in outcome["blocked"])
    assert outcome["checked"] is False  # not every address could be denied: said so


class Crash(Exception):
    pass


def _interface_group_names(ec2_client: Any, instance_id: str) -> set[str]:
    instance = _instance(ec2_client, instance_id)
    return {g["GroupName"] for n in instance["NetworkInterfaces"] for g in n["Groups"]}


def _watch_swaps(
    deps: Deps, ec2_client: Any, seen: list[tuple[str, str]], crash_on_open: int = 0
) -> None:
    """Record (interface, group name) of every swap; die on swap `crash_on_open` to allow-all."""
    names: dict[str, str] = {}
    lock = threading.Lock()

    def record(params: dict[str, Any], **_: Any) -> None:
        for group_id in params.get("Groups", []):
            with lock:
                if group_id not in names:
                    group = ec2_client.describe_security_groups(GroupIds=[group_id])
                    names[group_id] = group["SecurityGroups"][0]["GroupName"]
                seen.append((params["NetworkInterfaceId"], names[group_id]))
                opened = [n for _, n in seen if n.endswith("-open")]
                if names[group_id].endswith("-open") and len(opened) == crash_on_open:
                    raise Crash("killed inside the allow-all window")

    before = deps.on_ec2

    def attach(ec2: Any) -> None:
        if before:
            before(ec2)
        ec2.ec2.meta.events.register(
            "before-parameter-build.ec2.ModifyNetworkInterfaceAttribute", record
        )

    deps.on_ec2 = attach


@pytest.mark.parametrize("crash_at", CONTAIN)
def test_no_containment_step_ends_with_an_interface_open_and_a_resume_never_opens_one(
    deps: Deps, ec2_client: Any, wide: dict[str, Any], crash_at: str
) -> None:
    def kill(action: Action) -> None:
        if action.kind == crash_at:
            raise Crash(crash_at)

    deps.before_each = kill
    with pytest.raises(Crash):
        burn(make_settings(), deps, reason="first try", relaunch=False)
    deps.before_each = None
    names = _interface_group_names(ec2_client, wide["instance_id"])
    assert not any(n.endswith("-open") for n in names), names
    swaps: list[tuple[str, str]] = []
    _watch_swaps(deps, ec2_client, swaps)

    burn(make_settings(), deps, relaunch=False)

    if crash_at != "contain_open_group":  # the swaps were done: none is made again
        assert not any(n.endswith("-open") for _, n in swaps), swaps


def test_a_resume_after_a_crash_inside_the_allow_all_window_isolates_first(
    deps: Deps, ec2_client: Any, wide: dict[str, Any]
) -> None:
    """Two interfaces: the burn dies on the second one's move to allow-all."""
    plain = deps.on_ec2
    _watch_swaps(deps, ec2_client, [], crash_on_open=2)
    with pytest.raises(Crash):
        burn(make_settings(), deps, reason="window", relaunch=False)
    instance = _instance(ec2_client, wide["instance_id"])
    at_crash = {
        n["NetworkInterfaceId"]: {g["GroupName"].rsplit("-", 1)[-1] for g in n["Groups"]}
        for n in instance["NetworkInterfaces"]
    }
    deps.on_ec2 = plain
    resumed: list[tuple[str, str]] = []
    _watch_swaps(deps, ec2_client, resumed)

    burn(make_settings(), deps, relaunch=False)

    for interface, groups in at_crash.items():
        moves = [name.rsplit("-", 1)[-1] for i, name in resumed if i == interface]
        if groups == {"open"}:  # its flows are untracked already: straight to isolation
            assert moves == ["isolate"], (interface, resumed)
        elif groups == {"isolate"}:
            assert moves == [], (interface, resumed)
        else:
            assert moves == ["open", "isolate"], (interface, resumed)


def test_dry_run_lists_a_revoke_a_list_change_and_a_deny_per_address(
    deps: Deps, counter: Any, wide: dict[str, Any]
) -> None:
    counter.reset()
    calls = burn(make_settings(), deps, dry_run=True).calls
    assert counter.mutating == {}
    planned = calls["contain_app_ssh"]
    assert any(c.startswith(f"RevokeSecurityGroupEgress {wide['db']} tcp/22") for c in planned)
    assert any(c.startswith(f"ModifyManagedPrefixList {wide['ops']} remove") for c in planned)
    assert len([c for c in planned if c.startswith("RevokeSecurityGroupIngress")]) == 4
    denies = calls["contain_network_acl"]
    assert len(denies) == 2 * len(wide["hosts"])  # in and out, each address
    assert any(f"deny {IPV6}/128 inbound" in c for c in denies)


def test_an_interface_attached_during_the_incident_is_isolated_by_the_read_back(
    deps: Deps, ec2_client: Any, wide: dict[str, Any]
) -> None:
    def kill(action: Action) -> None:
        if action.kind == "contain_isolation_group":
            raise Crash(action.kind)

    deps.before_each = kill
    with pytest.raises(Crash):
        burn(make_settings(), deps, reason="late interface", relaunch=False, keep_instance=True)
    deps.before_each = None
    instance = _instance(ec2_client, wide["instance_id"])
    late = ec2_client.create_network_interface(SubnetId=instance["SubnetId"])["NetworkInterface"]
    ec2_client.attach_network_interface(
        NetworkInterfaceId=late["NetworkInterfaceId"], InstanceId=wide["instance_id"], DeviceIndex=2
    )

    burn(make_settings(), deps, relaunch=False, keep_instance=True)

    names = _interface_group_names(ec2_client, wide["instance_id"])
    assert len(names) == 1 and names.pop().endswith("-isolate")
