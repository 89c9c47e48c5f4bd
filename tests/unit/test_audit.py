"""Audit checks are pure functions of a snapshot: each tested on hand-built layouts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bastion.domain.audit import AuditOptions, Snapshot
from bastion.domain.audit_checks import fix_plan, run_checks
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import IngressRule, InstanceInfo, SecurityGroup

NOW = datetime(2026, 11, 26, tzinfo=UTC)
GW_TAGS = {"bastion:name": "default", "bastion:role": "gateway-group", "bastion:generation": "1"}


def tcp(rule_id: str, port: int, cidr: str | None = None, group: str | None = None) -> IngressRule:
    return IngressRule(rule_id, "tcp", port, port, cidr=cidr, source_group=group)


def good() -> Snapshot:
    gw = SecurityGroup(
        "sg-gw",
        "bastion-default-gw-1",
        "vpc-1",
        GW_TAGS,
        (IngressRule("r-me", "tcp", 62222, 62222, "203.0.113.7/32", None, "bastion:me by a at x"),),
    )
    elb = SecurityGroup("sg-elb", "elb", "vpc-1", ingress=(tcp("r-web", 443, "0.0.0.0/0"),))
    app = SecurityGroup(
        "sg-app",
        "app",
        "vpc-1",
        ingress=(
            tcp("r-80", 80, group="sg-elb"),
            tcp("r-443", 443, group="sg-elb"),
            tcp("r-22", 22, group="sg-gw"),
        ),
    )
    rds = SecurityGroup("sg-rds", "rds", "vpc-1", ingress=(tcp("r-db", 3306, group="sg-app"),))
    instance = InstanceInfo(
        "i-1",
        "running",
        None,
        None,
        None,
        "vpc-1",
        None,
        "ami-1",
        NOW,
        ("sg-gw",),
        {"bastion:name": "default", "bastion:role": "gateway", "bastion:port": "62222"},
        volume_ids=("vol-1",),
        metadata_http_tokens="required",
    )
    return Snapshot(NOW, (gw, elb, app, rds), (instance,), {"vol-1": True})


OPTIONS = AuditOptions(app_sg="app", db_sg="rds", elb_sg="elb")


def with_rule(snapshot: Snapshot, group_id: str, rule: IngressRule) -> Snapshot:
    groups = tuple(
        replace(g, ingress=(*g.ingress, rule)) if g.group_id == group_id else g
        for g in snapshot.groups
    )
    return replace(snapshot, groups=groups)


def test_the_seed_layout_has_no_finding() -> None:
    assert run_checks(good(), OPTIONS) == []


def test_https_open_to_the_world_on_the_load_balancer_is_fine_but_ssh_is_not() -> None:
    broken = with_rule(good(), "sg-elb", IngressRule("r-all", "-1", -1, -1, cidr="::/0"))
    assert [f.check for f in run_checks(broken, OPTIONS)] == ["world-open-ssh"]


def test_a_port_range_covering_the_gateway_port_counts_as_open() -> None:
    broken = with_rule(good(), "sg-elb", IngressRule("r-r", "tcp", 60000, 65000, cidr="0.0.0.0/0"))
    assert [f.check for f in run_checks(broken, OPTIONS)] == ["world-open-ssh"]


def test_a_world_open_rule_bastion_made_on_its_gateway_is_offered_for_fixing() -> None:
    rule = IngressRule("r-any", "tcp", 62222, 62222, "0.0.0.0/0", None, "bastion:me by a at x")
    findings = run_checks(with_rule(good(), "sg-gw", rule), OPTIONS)
    assert [f.check for f in findings] == ["world-open-ssh"]
    assert [a.params["rule_ids"] for a in fix_plan(findings).actions] == [["r-any"]]


def test_a_gateway_in_an_open_incident_is_not_checked_as_a_live_gateway() -> None:
    snapshot = good()
    instance = replace(
        snapshot.gateways[0],
        metadata_http_tokens="optional",
        tags={
            **snapshot.gateways[0].tags,
            "bastion:incident": "inc-1",
            "bastion:incident-state": "open",
        },
    )
    findings = run_checks(replace(snapshot, gateways=(instance,)), OPTIONS)
    assert [f.check for f in findings] == ["incident-open"]
    assert "--resume inc-1" in findings[0].fix


def test_unknown_or_ambiguous_role_groups_are_usage_errors() -> None:
    with pytest.raises(NotFoundError, match="--db-sg 'nope'"):
        run_checks(good(), AuditOptions(db_sg="nope"))
    twin = replace(good(), groups=(*good().groups, SecurityGroup("sg-app2", "app", "vpc-2")))
    with pytest.raises(UsageError, match="pass the group id"):
        run_checks(twin, OPTIONS)
    lonely = replace(good(), groups=tuple(g for g in good().groups if g.group_id != "sg-app"))
    with pytest.raises(UsageError, match="--app-sg"):
        run_checks(lonely, AuditOptions(db_sg="rds"))
