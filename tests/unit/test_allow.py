"""Allow-list rules: descriptions, durations, expiry and the safety of revoke, all pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bastion.domain.allowlist import (
    expiry_after,
    parse_duration,
    parse_note,
    plan_allow,
    plan_revoke,
    prune_actions,
)
from bastion.domain.errors import ConflictError, NotFoundError, UsageError
from bastion.domain.model import IngressRule, SecurityGroup
from bastion.domain.rules import rule_description

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ALICE = "arn:aws:iam::123456789012:user/alice"
AWS_CHARSET = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")


def rule(rule_id: str, cidr: str, description: str, port: int = 62222) -> IngressRule:
    return IngressRule(rule_id, "tcp", port, port, cidr=cidr, description=description)


def group(*rules: IngressRule) -> SecurityGroup:
    return SecurityGroup("sg-gw", "bastion-default-gw-1", "vpc-1", ingress=rules)


def test_the_me_description_written_by_up_still_parses() -> None:
    note = parse_note("bastion:me by alice at 2026-01-01T00:00:00Z")
    assert note is not None
    assert (note.label, note.owner, note.added_at, note.expires_at) == (
        "me",
        "alice",
        "2026-01-01T00:00:00Z",
        None,
    )


def test_an_expiring_description_round_trips() -> None:
    text = rule_description("office", ALICE, "2026-11-26T09:00:00Z", "2026-11-27T03:00Z")
    assert text == "bastion:office by alice at 2026-11-26T09:00:00Z until 2026-11-27T03:00Z"
    note = parse_note(text)
    assert note is not None and note.label == "office" and note.owner == "alice"
    assert note.expires_at == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def test_rules_bastion_did_not_make_have_no_note() -> None:
    assert parse_note("office until 2020-01-01T00:00Z") is None
    assert parse_note("") is None


def test_a_long_odd_owner_is_shortened_and_cleaned_but_the_expiry_survives() -> None:
    operator = "arn:aws:sts::1:assumed-role/Admin/" + "é<>~" * 100
    text = rule_description("office", operator, "2026-11-26T09:00:00Z", "2026-11-27T03:00Z")
    assert len(text) <= 255
    assert AWS_CHARSET.match(text)
    assert text.endswith(" until 2026-11-27T03:00Z")
    note = parse_note(text)
    assert note is not None and note.expires_at == datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("8h", timedelta(hours=8)),
        ("7d", timedelta(days=7)),
        ("never", None),
    ],
)
def test_durations_parse(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0h", "8", "8x", "-1h", "h", "1w"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--for"):
        parse_duration(text)


def test_expiry_is_rounded_up_to_the_minute_never_down() -> None:
    start = datetime(2026, 11, 26, 9, 0, 30, tzinfo=UTC)
    assert expiry_after(start, timedelta(hours=1)) == datetime(2026, 11, 26, 10, 1, tzinfo=UTC)
    assert expiry_after(NOW, timedelta(hours=1)) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_prune_removes_exactly_the_expired_bastion_rules() -> None:
    g = group(
        rule("r-past", "198.51.100.0/24", "bastion:office by alice at x until 2026-11-26T08:59Z"),
        rule("r-now", "198.51.100.1/32", "bastion:cafe by alice at x until 2026-11-26T09:00Z"),
        rule("r-later", "198.51.100.2/32", "bastion:home by alice at x until 2026-11-26T09:01Z"),
        rule("r-me", "203.0.113.7/32", "bastion:me by alice at 2026-01-01T00:00:00Z"),
        rule("r-hand", "192.0.2.0/24", "office until 2020-01-01T00:00Z"),
    )
    pruned, actions = prune_actions(g, NOW)
    assert [a.kind for a in actions] == ["prune_ingress"]
    assert actions[0].params["rule_ids"] == ["r-now", "r-past"]
    assert pruned is not None
    assert [r.rule_id for r in pruned.ingress] == ["r-later", "r-me", "r-hand"]


def test_nothing_expired_means_no_prune_action() -> None:
    g = group(rule("r-me", "203.0.113.7/32", "bastion:me by alice at x"))
    assert prune_actions(g, NOW) == (g, ())
    assert prune_actions(None, NOW) == (None, ())


def test_allow_prunes_first_then_adds_the_rule_with_its_expiry() -> None:
    g = group(
        rule("r-past", "198.51.100.0/24", "bastion:old by alice at x until 2026-01-01T00:00Z")
    )
    until = NOW + timedelta(hours=8)
    plan = plan_allow("default", g, 62222, "192.0.2.0/24", "office", ALICE, NOW, until)
    assert [a.kind for a in plan.actions] == ["prune_ingress", "authorize_ingress"]
    permission = plan.actions[1].params["permission"]
    described = permission["IpRanges"][0]["Description"]
    assert described == "bastion:office by alice at 2026-11-26T09:00:00Z until 2026-11-26T17:00Z"


def test_allowing_a_cidr_again_renews_the_callers_rule_instead_of_duplicating() -> None:
    g = group(rule("r-1", "192.0.2.0/24", "bastion:office by alice at x until 2026-11-26T08:00Z"))
    plan = plan_allow("default", g, 62222, "192.0.2.0/24", "office", ALICE, NOW, None)
    assert [a.kind for a in plan.actions] == ["renew_ingress"]  # not pruned: renewed in place
    assert "until" not in plan.actions[0].params["description"]


def test_allowing_a_cidr_held_by_someone_else_needs_force() -> None:
    g = group(rule("r-1", "192.0.2.0/24", "bastion:office by bob at x"))
    with pytest.raises(ConflictError, match=r"bob's rule 'office'.*--force"):
        plan_allow("default", g, 62222, "192.0.2.0/24", "office", ALICE, NOW, None)
    plan = plan_allow("default", g, 62222, "192.0.2.0/24", "office", ALICE, NOW, None, force=True)
    assert [a.kind for a in plan.actions] == ["renew_ingress"]


def test_allowing_a_cidr_already_open_by_hand_is_a_conflict() -> None:
    g = group(rule("r-1", "192.0.2.0/24", "opened by hand"))
    with pytest.raises(ConflictError, match="did not"):
        plan_allow("default", g, 62222, "192.0.2.0/24", "office", ALICE, NOW, None, force=True)


def test_revoking_someone_elses_rule_needs_force() -> None:
    g = group(
        rule("r-me", "203.0.113.7/32", "bastion:me by alice at x"),
        rule("r-bob", "192.0.2.0/24", "bastion:office by bob at x"),
    )
    with pytest.raises(ConflictError, match="belong to bob; pass --force"):
        plan_revoke("default", g, 62222, "office", ALICE, "203.0.113.7/32", NOW)
    plan = plan_revoke("default", g, 62222, "office", ALICE, "203.0.113.7/32", NOW, force=True)
    assert plan.actions[-1].params["rule_ids"] == ["r-bob"]


def test_revoking_the_last_rule_that_admits_the_caller_needs_force() -> None:
    g = group(rule("r-me", "203.0.113.7/32", "bastion:me by alice at x"))
    with pytest.raises(ConflictError, match="locking you out; pass --force"):
        plan_revoke("default", g, 62222, "me", ALICE, "203.0.113.7/32", NOW)
    plan = plan_revoke("default", g, 62222, "me", ALICE, "203.0.113.7/32", NOW, force=True)
    assert plan.actions[-1].params["rule_ids"] == ["r-me"]


def test_an_expired_rule_does_not_count_as_keeping_the_caller_in() -> None:
    g = group(
        rule("r-me", "203.0.113.7/32", "bastion:me by alice at x"),
        rule("r-old", "203.0.113.0/24", "bastion:office by alice at x until 2026-01-01T00:00Z"),
    )
    with pytest.raises(ConflictError, match="locking you out"):
        plan_revoke("default", g, 62222, "203.0.113.7/32", ALICE, "203.0.113.7/32", NOW)


def test_revoke_is_fine_when_another_live_rule_still_admits_the_caller() -> None:
    g = group(
        rule("r-me", "203.0.113.7/32", "bastion:me by alice at x"),
        rule("r-office", "203.0.113.0/24", "bastion:office by alice at x"),
    )
    plan = plan_revoke("default", g, 62222, "203.0.113.7", ALICE, "203.0.113.7/32", NOW)
    assert [a.kind for a in plan.actions] == ["revoke_ingress"]
    assert plan.actions[0].params["rule_ids"] == ["r-me"]


def test_an_unknown_caller_ip_needs_force_to_revoke() -> None:
    g = group(rule("r-1", "192.0.2.0/24", "bastion:office by alice at x"))
    with pytest.raises(ConflictError, match="could not detect your IP"):
        plan_revoke("default", g, 62222, "office", ALICE, None, NOW)


def test_revoke_never_touches_a_rule_bastion_did_not_make() -> None:
    g = group(rule("r-1", "192.0.2.0/24", "opened by hand"))
    with pytest.raises(ConflictError, match="never removes rules it did not make"):
        plan_revoke("default", g, 62222, "192.0.2.0/24", ALICE, None, NOW, force=True)
    with pytest.raises(NotFoundError, match="allow --list"):
        plan_revoke("default", g, 62222, "nothing", ALICE, None, NOW, force=True)


def test_revoke_me_means_the_callers_own_me_rule_not_every_operators() -> None:
    g = group(
        rule("r-alice", "203.0.113.7/32", "bastion:me by alice at x"),
        rule("r-bob", "198.51.100.9/32", "bastion:me by bob at x"),
        rule("r-office", "203.0.113.0/24", "bastion:office by alice at x"),
    )
    plan = plan_revoke("default", g, 62222, "me", ALICE, "203.0.113.7/32", NOW)
    assert [a.kind for a in plan.actions] == ["revoke_ingress"]
    assert plan.actions[0].params["rule_ids"] == ["r-alice"]


def test_revoke_me_without_a_me_rule_of_ones_own_is_not_found() -> None:
    g = group(rule("r-bob", "198.51.100.9/32", "bastion:me by bob at x"))
    with pytest.raises(NotFoundError, match="have no rule labelled 'me'"):
        plan_revoke("default", g, 62222, "me", ALICE, "203.0.113.7/32", NOW)
