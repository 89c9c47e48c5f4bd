"""Sources as address space: world-open is what a set of CIDRs covers, not one /0."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bastion.domain.allowlist import plan_allow
from bastion.domain.cidr import coverage, is_wide, refuse_world_open
from bastion.domain.errors import UsageError
from bastion.domain.model import IngressRule, SecurityGroup

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["0.0.0.0/1", "128.0.0.0/1"],
        ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"],  # 224/3 is multicast and reserved
        ["::/0"],
        ["::/1"],  # holds all of global unicast, 2000::/3
        ["2000::/4", "3000::/4"],
    ],
)
def test_sets_covering_every_public_address_are_world_open(cidrs: list[str]) -> None:
    assert coverage(cidrs).world_open


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/1"],
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        ["0.0.0.0/1", "128.0.0.0/2"],
        ["2000::/4"],
        ["8000::/1"],
    ],
)
def test_sets_leaving_public_addresses_out_are_not_world_open(cidrs: list[str]) -> None:
    assert not coverage(cidrs).world_open


def test_coverage_counts_public_addresses_once_whatever_the_overlap() -> None:
    assert coverage(["8.8.8.0/24", "8.8.8.0/25", "8.8.8.8/32"]).public_v4 == 256
    assert coverage(["10.0.0.0/8"]).public_v4 == 0
    assert coverage(["0.0.0.0/1"]).describe().startswith("5")  # about half of public IPv4


@pytest.mark.parametrize(
    ("cidr", "wide"),
    [("10.0.0.0/8", True), ("192.0.2.0/23", True), ("192.0.2.0/24", False), ("2600::/55", True)],
)
def test_wider_than_slash_24_or_56_is_wide(cidr: str, wide: bool) -> None:
    assert is_wide(cidr) is wide


def test_operator_sources_that_together_open_the_internet_are_refused_even_when_wide_is_ok() -> (
    None
):
    with pytest.raises(UsageError, match="together would open the gateway to the whole Internet"):
        refuse_world_open(["0.0.0.0/1", "128.0.0.0/1"], True, "--allow-wide", "--allow-anywhere")


def test_a_wide_operator_source_needs_the_flag() -> None:
    with pytest.raises(UsageError, match=r"wider than /24.*pass --wide"):
        refuse_world_open(["10.0.0.0/8"], False, "--wide", "")
    refuse_world_open(["10.0.0.0/8"], True, "--wide", "")


def test_allow_refuses_the_half_that_completes_the_internet_with_the_live_rules() -> None:
    lower = IngressRule("r-lo", "tcp", 62222, 62222, "0.0.0.0/1", None, "bastion:lo by bob at x")
    group = SecurityGroup("sg-gw", "bastion-default-gw-1", "vpc-1", ingress=(lower,))
    with pytest.raises(UsageError, match="whole Internet"):
        plan_allow("default", group, 62222, "128.0.0.0/1", "hi", "alice", NOW, None)


def test_allow_counts_only_live_rules_on_the_gateway_port() -> None:
    expired = "bastion:lo by bob at x until 2026-11-26T08:00Z"
    rules = (
        IngressRule("r-lo", "tcp", 62222, 62222, "0.0.0.0/1", None, expired),
        IngressRule("r-web", "tcp", 443, 443, "0.0.0.0/1", None, "elsewhere"),
    )
    group = SecurityGroup("sg-gw", "bastion-default-gw-1", "vpc-1", ingress=rules)
    plan = plan_allow("default", group, 62222, "128.0.0.0/1", "hi", "alice", NOW, None)
    assert [a.kind for a in plan.actions] == ["prune_ingress", "authorize_ingress"]
