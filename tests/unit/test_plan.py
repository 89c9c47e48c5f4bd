"""Pure planners: the order of changes is the safety property, so it is tested directly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bastion.domain.errors import ConflictError
from bastion.domain.model import (
    GatewaySpec,
    IngressRule,
    InstanceInfo,
    KeyPairInfo,
    LocalKeys,
    ObservedGateway,
    SecurityGroup,
)
from bastion.domain.plan import Network, plan_down, plan_up

NET = Network("subnet-1", "vpc-1", "172.31.0.0/16")
SPEC = GatewaySpec(
    name="default",
    port=62222,
    allowed_cidrs=("203.0.113.7/32",),
    instance_type="t3.micro",
    image="al2023",
    subnet_id="subnet-1",
    app_sg="sg-app",
    login_user="bastion",
    admin_user="bastion-admin",
    operator="arn:aws:iam::1:user/alice",
)
LOCAL = LocalKeys("SHA256:login", "SHA256:admin", "ssh-ed25519 AAAA")
APP = SecurityGroup(
    "sg-app", "app", "vpc-1", ingress=(IngressRule("r-80", "tcp", 80, 80, source_group="sg-elb"),)
)
WHEN = "2026-01-01T00:00:00Z"


def converged() -> ObservedGateway:
    group = SecurityGroup(
        "sg-gw",
        "bastion-default-gw-1",
        "vpc-1",
        tags={"bastion:generation": "1"},
        ingress=(
            IngressRule(
                "r-me",
                "tcp",
                62222,
                62222,
                cidr="203.0.113.7/32",
                description="bastion:me by alice at x",
            ),
        ),
        egress=(
            IngressRule("e-22", "tcp", 22, 22, source_group="sg-app"),
            IngressRule("e-443", "tcp", 443, 443, cidr="0.0.0.0/0"),
            IngressRule("e-443-6", "tcp", 443, 443, cidr="::/0"),
        ),
    )
    app = replace(
        APP, ingress=(*APP.ingress, IngressRule("r-22", "tcp", 22, 22, source_group="sg-gw"))
    )
    instance = InstanceInfo(
        "i-1",
        "running",
        "198.51.100.1",
        "172.31.0.4",
        "subnet-1",
        "vpc-1",
        "bastion-default-x",
        "ami-1",
        None,
        ("sg-gw",),
        {"bastion:generation": "1", "bastion:port": "62222"},
    )
    key = KeyPairInfo("bastion-default-x", "key-1", "SHA256:login", None)
    return ObservedGateway("default", key, group, instance, app)


def kinds(plan) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.kind for a in plan.changes]


def test_fresh_gateway_plans_keys_group_instance_then_app_rule() -> None:
    observed = ObservedGateway("default", None, None, None, APP)
    plan = plan_up(SPEC, observed, LocalKeys(None, None, None), NET, WHEN)
    assert kinds(plan) == [
        "create_login_key",
        "create_admin_key",
        "import_key_pair",
        "create_group",
        "revoke_default_egress",
        "authorize_egress",
        "authorize_egress",
        "authorize_egress",
        "authorize_ingress",
        "launch_instance",
        "pin_host_key",
        "authorize_app_ssh",
    ]
    assert [a.kind for a in plan.actions][-1] == "verify"


def test_converged_gateway_plans_no_change() -> None:
    assert plan_up(SPEC, converged(), LOCAL, NET, WHEN).changes == ()


def test_new_caller_ip_is_authorized_before_the_old_rule_is_revoked() -> None:
    spec = replace(SPEC, allowed_cidrs=("198.51.100.9/32",))
    plan = plan_up(spec, converged(), LOCAL, NET, WHEN)
    assert kinds(plan) == ["authorize_ingress", "revoke_ingress"]
    assert plan.changes[1].params["rule_ids"] == ["r-me"]


def test_another_operators_me_rule_is_never_revoked_by_my_up() -> None:
    observed = converged()
    assert observed.group
    bob = IngressRule(
        "r-bob", "tcp", 62222, 62222, cidr="198.51.100.20/32", description="bastion:me by bob at x"
    )
    group = replace(observed.group, ingress=(*observed.group.ingress, bob))
    spec = replace(SPEC, allowed_cidrs=("198.51.100.9/32",))
    plan = plan_up(spec, replace(observed, group=group), LOCAL, NET, WHEN)
    assert kinds(plan) == ["authorize_ingress", "revoke_ingress"]
    assert plan.changes[1].params["rule_ids"] == ["r-me"]  # alice's old rule, not bob's


def test_rules_bastion_did_not_make_are_left_alone_with_a_warning() -> None:
    observed = converged()
    assert observed.group
    group = replace(
        observed.group,
        ingress=(
            *observed.group.ingress,
            IngressRule("r-x", "tcp", 62222, 62222, cidr="10.0.0.0/8"),
        ),
    )
    plan = plan_up(SPEC, replace(observed, group=group), LOCAL, NET, WHEN)
    assert plan.changes == ()
    assert any("did not make" in w for w in plan.warnings)


def test_other_ssh_sources_on_the_app_group_are_reported() -> None:
    observed = converged()
    assert observed.app_group
    app = replace(
        observed.app_group,
        ingress=(
            *observed.app_group.ingress,
            IngressRule("r-y", "tcp", 22, 22, cidr="0.0.0.0/0"),
        ),
    )
    plan = plan_up(SPEC, replace(observed, app_group=app), LOCAL, NET, WHEN)
    assert any("also admits SSH (tcp/22 from 0.0.0.0/0)" in w for w in plan.warnings)


def test_missing_local_key_for_an_existing_gateway_is_a_conflict() -> None:
    with pytest.raises(ConflictError, match="login key is not on this machine"):
        plan_up(SPEC, converged(), LocalKeys(None, "SHA256:admin", None), NET, WHEN)


def test_extra_egress_is_removed() -> None:
    observed = converged()
    assert observed.group
    group = replace(
        observed.group,
        egress=(
            *observed.group.egress,
            IngressRule("e-all", "-1", -1, -1, cidr="0.0.0.0/0"),
        ),
    )
    plan = plan_up(SPEC, replace(observed, group=group), LOCAL, NET, WHEN)
    assert kinds(plan) == ["revoke_egress"]


def test_down_removes_the_app_reference_before_anything_else() -> None:
    plan = plan_down(converged(), LOCAL)
    assert [a.kind for a in plan.actions] == [
        "revoke_app_ssh",
        "terminate_instance",
        "wait_terminated",
        "delete_group",
        "delete_key_pair",
        "delete_local",
    ]


def test_down_of_nothing_plans_nothing() -> None:
    empty = ObservedGateway("default", None, None, None, None)
    assert plan_down(empty, LocalKeys(None, None, None)).actions == ()
