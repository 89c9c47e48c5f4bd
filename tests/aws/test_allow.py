"""`bastion allow` against moto: expiring rules, prune with the injected clock, owners, lockout."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.domain.clock import FakeClock
from bastion.domain.errors import ConflictError, NotFoundError
from bastion.usecases import allow as use
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CALLER_IP, CallCounter, FakeIp, make_settings

HOUR = 3600.0


def _clock(deps: Deps) -> FakeClock:
    assert isinstance(deps.clock, FakeClock)
    return deps.clock


def _ingress(ec2_client: Any, group_id: str) -> dict[str, str]:
    rules = ec2_client.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroupRules"]
    return {
        (r.get("CidrIpv4") or r.get("CidrIpv6")): r.get("Description", "")
        for r in rules
        if not r["IsEgress"]
    }


def _add_by_hand(ec2_client: Any, group_id: str, cidr: str, description: str) -> None:
    ec2_client.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 62222,
                "ToPort": 62222,
                "IpRanges": [{"CidrIp": cidr, "Description": description}],
            }
        ],
    )


@pytest.fixture
def gateway(deps: Deps) -> str:
    result = up(make_settings(), deps)
    assert result.status is not None
    return str(result.status["security_group"])


def test_allow_for_then_prune_removes_exactly_the_expired_rules(
    deps: Deps, gateway: str, ec2_client: Any, counter: CallCounter
) -> None:
    settings = make_settings()
    use.allow(settings, deps, "198.51.100.0/24", duration="1h", label="office")
    use.allow(settings, deps, "192.0.2.0/24", duration="3h", label="home")
    use.allow(settings, deps, "192.0.2.128/32", duration="never", label="lab")
    _add_by_hand(ec2_client, gateway, "198.18.0.0/15", "bastion-ish until 2000-01-01T00:00Z")
    _clock(deps).sleep(2 * HOUR)
    counter.reset()

    result = use.prune(settings, deps)

    assert counter.mutating == {"RevokeSecurityGroupIngress": 1}
    assert sorted(_ingress(ec2_client, gateway)) == [
        "192.0.2.0/24",
        "192.0.2.128/32",
        "198.18.0.0/15",
        f"{CALLER_IP}/32",
    ]
    assert [a.kind for a in result.applied] == ["prune_ingress"]

    counter.reset()
    assert use.prune(settings, deps).plan.actions == ()
    assert counter.mutating == {}


def test_the_rule_records_label_owner_and_expiry(deps: Deps, gateway: str, ec2_client: Any) -> None:
    result = use.allow(make_settings(), deps, "198.51.100.0/24", duration="8h", label="office")
    assert _ingress(ec2_client, gateway)["198.51.100.0/24"] == (
        "bastion:office by moto at 2026-01-01T00:00:00Z until 2026-01-01T08:00Z"
    )
    office = next(r for r in result.rules if r["label"] == "office")
    assert (office["owner"], office["mine"], office["remaining_s"]) == ("moto", True, 8 * 3600)


def test_prune_with_no_gateway_is_a_quiet_no_op(deps: Deps, counter: CallCounter) -> None:
    result = use.prune(make_settings(), deps)
    assert result.group_id is None and counter.mutating == {}


def test_allow_on_a_missing_gateway_says_run_up(deps: Deps) -> None:
    with pytest.raises(NotFoundError, match="bastion up"):
        use.allow(make_settings(), deps, "192.0.2.0/24", label="office")


def test_allow_me_twice_renews_the_rule_instead_of_duplicating(
    deps: Deps, gateway: str, ec2_client: Any, counter: CallCounter
) -> None:
    counter.reset()
    use.allow(make_settings(), deps, "me", duration="1h")
    use.allow(make_settings(), deps, "me", duration="2h")
    assert counter.mutating == {"ModifySecurityGroupRules": 2}
    assert _ingress(ec2_client, gateway)[f"{CALLER_IP}/32"].endswith(" until 2026-01-01T02:00Z")


def test_dry_run_plans_and_changes_nothing(deps: Deps, gateway: str, counter: CallCounter) -> None:
    counter.reset()
    result = use.allow(make_settings(), deps, "192.0.2.0/24", label="office", dry_run=True)
    assert [a.kind for a in result.plan.actions] == ["authorize_ingress"]
    assert counter.mutating == {}


def test_up_prunes_first_replaces_me_and_leaves_other_labels_alone(
    deps: Deps, gateway: str, ec2_client: Any, fake_ip: FakeIp
) -> None:
    settings = make_settings()
    use.allow(settings, deps, "198.51.100.0/24", duration="1h", label="office")
    use.allow(settings, deps, "192.0.2.0/24", duration="never", label="lab")
    _clock(deps).sleep(2 * HOUR)
    fake_ip.address = "198.51.100.99"

    result = up(settings, deps)

    assert [a.kind for a in result.plan.changes] == [
        "prune_ingress",
        "authorize_ingress",
        "revoke_ingress",
    ]
    assert sorted(_ingress(ec2_client, gateway)) == ["192.0.2.0/24", "198.51.100.99/32"]


def test_up_reopens_an_expired_me_rule_after_pruning_it(
    deps: Deps, gateway: str, ec2_client: Any, counter: CallCounter
) -> None:
    use.allow(make_settings(), deps, "me", duration="1h")
    _clock(deps).sleep(2 * HOUR)
    counter.reset()

    up(make_settings(), deps)

    assert counter.mutating_sequence == [
        "RevokeSecurityGroupIngress",
        "AuthorizeSecurityGroupIngress",
    ]
    assert "until" not in _ingress(ec2_client, gateway)[f"{CALLER_IP}/32"]


def test_status_shows_lifetimes_and_ignores_expired_rules(deps: Deps, gateway: str) -> None:
    use.allow(make_settings(), deps, "me", duration="1h")
    before = status(make_settings(), deps)
    mine = next(a for a in before["allowed"] if a["label"] == "me")
    assert (mine["remaining_s"], mine["remaining"], mine["expired"]) == (3600, "1h", False)
    assert before["caller_allowed"] is True

    _clock(deps).sleep(2 * HOUR)
    after = status(make_settings(), deps)

    assert after["caller_allowed"] is False
    assert next(a for a in after["allowed"] if a["label"] == "me")["expired"] is True
    assert any("allow --prune" in line for line in after["drift"])


def test_revoking_someone_elses_rule_needs_force(deps: Deps, gateway: str, ec2_client: Any) -> None:
    _add_by_hand(ec2_client, gateway, "192.0.2.0/24", "bastion:office by bob at 2026-01-01")
    with pytest.raises(ConflictError, match="belong to bob"):
        use.revoke(make_settings(), deps, "office")
    assert "192.0.2.0/24" in _ingress(ec2_client, gateway)

    use.revoke(make_settings(), deps, "office", force=True)
    assert "192.0.2.0/24" not in _ingress(ec2_client, gateway)


def test_revoking_the_last_rule_admitting_me_needs_force(
    deps: Deps, gateway: str, ec2_client: Any
) -> None:
    with pytest.raises(ConflictError, match="locking you out"):
        use.revoke(make_settings(), deps, "me")
    assert f"{CALLER_IP}/32" in _ingress(ec2_client, gateway)

    use.allow(make_settings(), deps, "203.0.113.0/24", label="office", duration="1d")
    use.revoke(make_settings(), deps, "me")
    assert f"{CALLER_IP}/32" not in _ingress(ec2_client, gateway)


def test_revoke_never_touches_a_hand_made_rule(deps: Deps, gateway: str, ec2_client: Any) -> None:
    _add_by_hand(ec2_client, gateway, "192.0.2.0/24", "office")
    with pytest.raises(ConflictError, match="not made by bastion"):
        use.revoke(make_settings(), deps, "192.0.2.0/24", force=True)
    assert "192.0.2.0/24" in _ingress(ec2_client, gateway)


def test_list_shows_every_rule_without_changing_anything(
    deps: Deps, gateway: str, ec2_client: Any, counter: CallCounter
) -> None:
    use.allow(make_settings(), deps, "198.51.100.0/24", duration="1h", label="office")
    _add_by_hand(ec2_client, gateway, "192.0.2.0/24", "by hand")
    _clock(deps).sleep(2 * HOUR)
    counter.reset()

    rules = {r["cidr"]: r for r in use.list_rules(make_settings(), deps).rules}

    assert counter.mutating == {}
    assert rules["198.51.100.0/24"]["expired"] is True
    assert rules["192.0.2.0/24"]["label"] is None
    assert rules[f"{CALLER_IP}/32"]["expires_at"] is None
