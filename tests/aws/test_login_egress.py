"""`bastion up` confines the login user's forwards to SSH in the gateway's VPC, all its CIDRs."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import yaml

from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import make_settings


def _boot_rules(ec2_client: Any) -> tuple[list[str], str]:
    (reservation,) = ec2_client.describe_instances(
        Filters=[{"Name": "tag:bastion:name", "Values": ["default"]}]
    )["Reservations"]
    instance_id = reservation["Instances"][0]["InstanceId"]
    attribute = ec2_client.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
    bootcmd = yaml.safe_load(user_data)["bootcmd"]
    return [c for c in bootcmd if "BASTION-LOGIN" in c], user_data


def test_the_login_user_may_forward_to_ssh_in_every_cidr_of_the_vpc(
    deps: Deps, ec2_client: Any
) -> None:
    vpc = ec2_client.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    ec2_client.associate_vpc_cidr_block(VpcId=vpc["VpcId"], CidrBlock="100.64.0.0/16")
    ec2_client.associate_vpc_cidr_block(VpcId=vpc["VpcId"], AmazonProvidedIpv6CidrBlock=True)
    described = ec2_client.describe_vpcs(VpcIds=[vpc["VpcId"]])["Vpcs"][0]
    (block,) = [a["Ipv6CidrBlock"] for a in described["Ipv6CidrBlockAssociationSet"]]
    ipv6 = ipaddress.ip_network(block)  # moto may zero-pad a hextet; the rule is normalised

    up(make_settings(), deps)

    rules, user_data = _boot_rules(ec2_client)
    v4, v6 = rules
    for cidr in (vpc["CidrBlock"], "100.64.0.0/16"):
        assert f"iptables -w -A BASTION-LOGIN -d {cidr} -p tcp --dport 22 -j ACCEPT" in v4
    assert f"ip6tables -w -A BASTION-LOGIN -d {ipv6} -p tcp --dport 22 -j ACCEPT" in v6
    assert "    PermitOpen *:22\n" in user_data


def test_restricted_forwarding_keeps_the_egress_rule_and_lists_only_the_app_hosts(
    deps: Deps, ec2_client: Any, app_sg: str
) -> None:
    image = ec2_client.describe_images()["Images"][0]["ImageId"]
    app = ec2_client.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SecurityGroupIds=[app_sg]
    )["Instances"][0]

    up(make_settings(app_sg=app_sg, restrict_forwarding=True), deps)

    rules, user_data = _boot_rules(ec2_client)
    assert len(rules) == 2
    assert f"    PermitOpen {app['PrivateIpAddress']}:22\n" in user_data


def test_restricting_a_gateway_launched_with_the_default_warns_it_stays_wider(
    deps: Deps, ec2_client: Any, app_sg: str
) -> None:
    from tests.aws.test_ssh_config import RecordingReporter, launch_app, private_ip

    address = private_ip(ec2_client, launch_app(ec2_client, app_sg, "app-1"))
    up(make_settings(app_sg=app_sg), deps)
    reporter = RecordingReporter()
    deps.reporter = reporter

    up(make_settings(app_sg=app_sg, restrict_forwarding=True), deps)

    (warning,) = [w for w in reporter.warnings if "lets the login forward" in w]
    assert "lets the login forward to port 22 of any host (*:22), not just the app" in warning
    assert f"app hosts ({address}:22); the narrower list takes effect only at a relaunch" in warning
    assert "only to any" not in warning and "only after" not in warning
