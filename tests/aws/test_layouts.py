"""Layouts real accounts have: non-default VPCs, subnets by name, private subnets, twin names."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.domain.errors import NotFoundError, UsageError
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings


class Warnings:
    """A reporter that keeps the warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def step(self, message: str) -> None:
        pass

    def wait(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def _vpc(ec2_client: Any, cidr: str, name: str, public: bool = True) -> tuple[str, str]:
    """A non-default VPC with one subnet named `name`, public (IGW route) unless told."""
    vpc = ec2_client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet = ec2_client.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("/16", "/24"))["Subnet"]
    ec2_client.create_tags(Resources=[subnet["SubnetId"]], Tags=[{"Key": "Name", "Value": name}])
    if public:
        igw = ec2_client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2_client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        table = ec2_client.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2_client.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        ec2_client.associate_route_table(RouteTableId=table, SubnetId=subnet["SubnetId"])
    return vpc, str(subnet["SubnetId"])


def _group(ec2_client: Any, vpc: str, name: str = "app") -> str:
    return str(
        ec2_client.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
    )


def _gateway_subnet(ec2_client: Any) -> str:
    reservations = ec2_client.describe_instances(
        Filters=[{"Name": "tag:bastion:name", "Values": ["default"]}]
    )["Reservations"]
    return str(reservations[0]["Instances"][0]["SubnetId"])


@pytest.mark.parametrize("by", ["name", "id"])
def test_an_app_group_in_a_non_default_vpc_puts_the_gateway_in_that_vpc(
    deps: Deps, ec2_client: Any, by: str
) -> None:
    vpc, subnet = _vpc(ec2_client, "10.1.0.0/16", "app-public")
    group = _group(ec2_client, vpc)

    result = up(make_settings(app_sg="app" if by == "name" else group, allow=("192.0.2.1",)), deps)

    assert _gateway_subnet(ec2_client) == subnet
    assert result.status and result.status["drift"] == []


def test_subnet_is_found_by_its_name_tag(deps: Deps, ec2_client: Any) -> None:
    vpc, subnet = _vpc(ec2_client, "10.2.0.0/16", "dmz-a")
    _group(ec2_client, vpc)

    up(make_settings(app_sg="app", subnet="dmz-a", allow=("192.0.2.1",)), deps)

    assert _gateway_subnet(ec2_client) == subnet


def test_two_groups_with_the_apps_name_in_two_vpcs_are_refused_and_listed(
    deps: Deps, ec2_client: Any, counter: CallCounter
) -> None:
    first = _group(ec2_client, _vpc(ec2_client, "10.3.0.0/16", "one")[0])
    second = _group(ec2_client, _vpc(ec2_client, "10.4.0.0/16", "two")[0])

    with pytest.raises(UsageError) as error:
        up(make_settings(app_sg="app", allow=("192.0.2.1",)), deps)

    assert first in error.value.message and second in error.value.message
    assert "pass --app-sg with the group id" in error.value.message
    assert counter.mutating == {}


def test_a_subnet_picks_which_of_two_twin_groups_is_meant(deps: Deps, ec2_client: Any) -> None:
    _group(ec2_client, _vpc(ec2_client, "10.3.0.0/16", "one")[0])
    vpc, subnet = _vpc(ec2_client, "10.4.0.0/16", "two")
    _group(ec2_client, vpc)

    up(make_settings(app_sg="app", subnet="two", allow=("192.0.2.1",)), deps)

    assert _gateway_subnet(ec2_client) == subnet


def test_reach_public_in_a_subnet_without_an_internet_gateway_route_warns(
    deps: Deps, ec2_client: Any
) -> None:
    vpc, subnet = _vpc(ec2_client, "10.5.0.0/16", "private-a", public=False)
    _group(ec2_client, vpc)
    reporter = Warnings()
    deps.reporter = reporter

    up(make_settings(app_sg="app", subnet=subnet, allow=("192.0.2.1",)), deps, dry_run=True)

    assert any("no route to an internet gateway" in w for w in reporter.warnings)


def test_a_public_subnet_gets_no_internet_gateway_warning(deps: Deps, ec2_client: Any) -> None:
    vpc, subnet = _vpc(ec2_client, "10.6.0.0/16", "public-a")
    _group(ec2_client, vpc)
    reporter = Warnings()
    deps.reporter = reporter

    up(make_settings(app_sg="app", subnet=subnet, allow=("192.0.2.1",)), deps, dry_run=True)

    assert not any("internet gateway" in w for w in reporter.warnings)


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize("image", ["ssm:/no/such", "ami-0123456789abcdef0"])
def test_an_absent_image_fails_before_any_change_and_in_a_dry_run(
    deps: Deps, counter: CallCounter, app_sg: str, image: str, dry_run: bool
) -> None:
    with pytest.raises(NotFoundError) as error:
        up(make_settings(app_sg=app_sg, image=image, allow=("192.0.2.1",)), deps, dry_run=dry_run)

    assert "check --image" in error.value.message
    assert counter.mutating == {}


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"subnet": "subnet-0123456789abcdef0"}, "check --subnet"),
        ({"subnet": "no-such-name"}, "check --subnet"),
        ({"app_sg": "sg-0123456789abcdef0"}, "check --app-sg"),
        ({"app_sg": "no-such-group"}, "check --app-sg"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False])
def test_an_absent_subnet_or_app_group_says_what_to_check_before_any_change(
    deps: Deps, counter: CallCounter, flags: dict[str, str], needle: str, dry_run: bool
) -> None:
    with pytest.raises(NotFoundError) as error:
        up(make_settings(allow=("192.0.2.1",), **flags), deps, dry_run=dry_run)

    assert needle in error.value.message
    assert counter.mutating == {}
