"""Audit checks are pure functions of a snapshot: each tested on hand-built layouts."""

from __future__ import annotations

import base64
import gzip
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


# --- what Prowler catches (issue 14) -----------------------------------------------------------


def gw_rule(rule_id: str, cidr: str, description: str = "") -> IngressRule:
    return IngressRule(rule_id, "tcp", 62222, 62222, cidr, None, description)


def checks(snapshot: Snapshot, options: AuditOptions = OPTIONS) -> list[str]:
    return [f.check for f in run_checks(snapshot, options)]


@pytest.mark.parametrize(
    "halves",
    [
        ("0.0.0.0/1", "128.0.0.0/1"),
        ("2000::/4", "3000::/4"),
        ("0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"),
    ],
)
def test_rules_that_together_cover_the_internet_are_world_open(halves: tuple[str, ...]) -> None:
    snapshot = good()
    for n, cidr in enumerate(halves):
        snapshot = with_rule(snapshot, "sg-gw", gw_rule(f"r-h{n}", cidr))
    findings = run_checks(snapshot, OPTIONS)
    assert [f.check for f in findings] == ["world-open-ssh"]
    assert "100% of public" in findings[0].message
    assert all(f"r-h{n}" in findings[0].fix for n in range(len(halves)))


def test_bastion_made_halves_are_offered_for_fixing_together() -> None:
    snapshot = with_rule(good(), "sg-gw", gw_rule("r-lo", "0.0.0.0/1", "bastion:lo by a at x"))
    snapshot = with_rule(snapshot, "sg-gw", gw_rule("r-hi", "128.0.0.0/1", "bastion:hi by a at x"))
    findings = run_checks(snapshot, OPTIONS)
    assert [f.check for f in findings] == ["world-open-ssh"]
    assert [a.params["rule_ids"] for a in fix_plan(findings).actions] == [["r-hi", "r-lo"]]


def test_halves_in_two_groups_of_one_gateway_are_world_open() -> None:
    snapshot = with_rule(good(), "sg-gw", gw_rule("r-lo", "0.0.0.0/1"))
    extra = SecurityGroup("sg-x", "extra", "vpc-1", ingress=(gw_rule("r-hi", "128.0.0.0/1"),))
    instance = replace(snapshot.gateways[0], security_group_ids=("sg-gw", "sg-x"))
    snapshot = replace(snapshot, groups=(*snapshot.groups, extra), gateways=(instance,))
    findings = [f for f in run_checks(snapshot, OPTIONS) if f.check == "world-open-ssh"]
    assert [f.resource for f in findings] == ["i-1"]
    assert "sg-gw, sg-x" in findings[0].message


def test_private_and_documentation_ranges_do_not_add_up_to_the_internet() -> None:
    snapshot = with_rule(good(), "sg-gw", gw_rule("r-a", "10.0.0.0/8"))
    snapshot = with_rule(snapshot, "sg-gw", gw_rule("r-b", "2001:db8::/32"))
    assert "world-open-ssh" not in checks(snapshot)


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("10.0.0.0/8", ["wide-source"]),
        ("8.0.0.0/8", ["wide-source"]),
        ("2600::/48", ["wide-source"]),
        ("198.51.100.0/24", []),
        ("2600::/56", []),
    ],
)
def test_a_gateway_source_wider_than_a_slash_24_or_56_fails(cidr: str, expected: list[str]) -> None:
    assert checks(with_rule(good(), "sg-gw", gw_rule("r-wide", cidr))) == expected


@pytest.mark.parametrize(
    "rule",
    [
        tcp("r-8080", 8080, "0.0.0.0/0"),
        tcp("r-8080", 8080, group="sg-elb"),
        IngressRule("r-udp", "udp", 53, 53, cidr="10.0.0.0/16"),
        IngressRule("r-icmp", "icmp", -1, -1, cidr="10.0.0.0/16"),
        IngressRule("r-range", "tcp", 80, 443, source_group="sg-elb"),
    ],
)
def test_any_other_port_on_the_app_group_fails(rule: IngressRule) -> None:
    assert "app-port-other" in checks(with_rule(good(), "sg-app", rule))


def test_the_db_group_admits_no_port_from_anything_but_the_app() -> None:
    broken = with_rule(good(), "sg-rds", tcp("r-ssh", 22, group="sg-gw"))
    assert checks(broken) == ["db-source"]


def test_without_db_sg_the_group_admitting_the_database_port_from_the_app_is_checked() -> None:
    broken = with_rule(good(), "sg-rds", tcp("r-net", 3306, "10.0.0.0/16"))
    assert checks(broken, AuditOptions(app_sg="app", elb_sg="elb")) == ["db-source"]
    assert checks(broken, AuditOptions()) == ["db-source"]


def test_without_db_sg_the_group_the_app_egresses_to_on_5432_is_checked() -> None:
    db = SecurityGroup("sg-pg", "pg", "vpc-1", ingress=(tcp("r-any", 5432, "10.0.0.0/8"),))
    snapshot = replace(good(), groups=(*good().groups, db))
    app = next(g for g in snapshot.groups if g.group_id == "sg-app")
    egress = (tcp("e-pg", 5432, group="sg-pg"),)
    snapshot = replace(
        snapshot,
        groups=tuple(replace(g, egress=egress) if g is app else g for g in snapshot.groups),
    )
    findings = run_checks(snapshot, AuditOptions(app_sg="app"))
    assert [(f.check, f.resource) for f in findings] == [("db-source", "sg-pg")]


KEY = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    b"-----END OPENSSH PRIVATE KEY-----\n"
)


def _mime(payload: bytes) -> bytes:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart()
    part = MIMEText(payload.decode(), "x-shellscript", "utf-8")  # utf-8: base64-encoded
    message.attach(part)
    return message.as_bytes()


def _write_files(payload: bytes, gzipped: bool) -> bytes:
    blob = base64.b64encode(gzip.compress(payload) if gzipped else payload).decode()
    encoding = "gz+b64" if gzipped else "b64"
    return (
        "#cloud-config\nwrite_files:\n  - path: /root/.ssh/id_ed25519\n"
        f"    encoding: {encoding}\n    content: {blob}\n"
    ).encode()


@pytest.mark.parametrize(
    "user_data",
    [
        b"#!/bin/sh\ncat > /root/.ssh/id_rsa <<EOF\n" + KEY.replace(b"OPENSSH", b"RSA") + b"EOF\n",
        gzip.compress(b"#!/bin/sh\n" + KEY),
        _mime(b"#!/bin/sh\n" + KEY),
        _write_files(KEY, gzipped=False),
        _write_files(KEY, gzipped=True),
        gzip.compress(_mime(KEY.replace(b"OPENSSH ", b""))),
    ],
    ids=["plain-pem", "gzip", "mime-base64", "write-files-b64", "write-files-gz-b64", "gzip-mime"],
)
def test_a_private_key_in_a_gateways_user_data_fails(user_data: bytes) -> None:
    snapshot = replace(good(), user_data={"i-1": user_data})
    findings = run_checks(snapshot, OPTIONS)
    assert [(f.check, f.resource) for f in findings] == [("user-data-private-key", "i-1")]


def test_user_data_with_public_keys_only_passes() -> None:
    clean = (
        b"#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 "
        b"AAAAC3NzaC1lZDI1NTE5AAAAIGH4mF0XvH0pSxN5y3XvX6b2m8u7WqXj6Jk0e3Yz9bQx a\n"
        b"# -----BEGIN PUBLIC KEY----- is fine\n"
    )
    assert run_checks(replace(good(), user_data={"i-1": clean}), OPTIONS) == []


@pytest.mark.parametrize(
    ("status", "expected"), [(True, ["serial-console-enabled"]), (False, []), (None, [])]
)
def test_serial_console_access_enabled_for_the_account_fails(
    status: bool | None, expected: list[str]
) -> None:
    assert checks(replace(good(), serial_console_access=status)) == expected
