"""policy/bastion.json is valid IAM (parliament) and keeps its tag conditions on what destroys.

moto neither scopes resources nor evaluates conditions on ordinary calls, so these conditions
are checked here, as written, rather than enforced in the lifecycle tests.
"""

from __future__ import annotations

from typing import Any

from parliament import analyze_policy_string

from bastion.domain.tags import TAG_MANAGED
from bastion.testing.iam import POLICY_PATH, load_policy, statements

OWNED = f"aws:ResourceTag/{TAG_MANAGED}"
# What destroys or changes a resource: allowed only where the resource carries bastion's tag.
ONLY_ON_BASTIONS_OWN = {
    "ec2:TerminateInstances",
    "ec2:StopInstances",
    "ec2:StartInstances",
    "ec2:ModifyInstanceAttribute",
    "ec2:ModifyInstanceMetadataOptions",
    "ec2:DeleteSecurityGroup",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:DeleteKeyPair",
    "ec2:DeleteTags",
    "ec2:ModifyNetworkInterfaceAttribute",
}
CREATED_TAGGED = {
    "ec2:RunInstances",
    "ec2:CreateSecurityGroup",
    "ec2:ImportKeyPair",
    "ec2:CreateSnapshot",
}


def _granting(action: str) -> list[dict[str, Any]]:
    return [s for s in statements(load_policy()) if action in s["Action"]]


def _conditions(statement: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in statement.get("Condition", {}).values():
        merged.update(block)
    return merged


def test_parliament_finds_no_unknown_action_condition_or_malformed_statement() -> None:
    findings = analyze_policy_string(POLICY_PATH.read_text()).findings
    # RESOURCE_MISMATCH is per statement: RunInstances' resources are split on purpose between
    # statements with different conditions, so each statement alone lacks some of them.
    left = [(f.issue, f.detail) for f in findings if f.issue != "RESOURCE_MISMATCH"]
    assert left == []


def test_destructive_actions_are_allowed_only_on_resources_tagged_by_bastion() -> None:
    for action in sorted(ONLY_ON_BASTIONS_OWN):
        granting = _granting(action)
        assert granting, action
        for statement in granting:
            assert _conditions(statement).get(OWNED) == "true", (action, statement["Sid"])
            assert statement["Resource"] != "*" or action == "ec2:DeleteTags", action


def test_creating_requires_bastions_tag_in_the_request() -> None:
    for action in sorted(CREATED_TAGGED):
        tagged = [
            s
            for s in _granting(action)
            if _conditions(s).get(f"aws:RequestTag/{TAG_MANAGED}") == "true"
        ]
        assert tagged, action


def test_tags_are_set_only_while_creating_or_on_bastions_own_resources() -> None:
    for statement in _granting("ec2:CreateTags"):
        conditions = _conditions(statement)
        at_creation = set(conditions.get("ec2:CreateAction", [])) == {
            a.removeprefix("ec2:") for a in CREATED_TAGGED
        }
        own = conditions.get(OWNED) == "true" and conditions.get("aws:TagKeys")
        assert at_creation or own, statement["Sid"]


def test_every_statement_allows_and_names_its_purpose() -> None:
    sids = [s.get("Sid", "") for s in statements(load_policy())]
    assert all(sids) and len(set(sids)) == len(sids)
    assert all(s["Effect"] == "Allow" for s in statements(load_policy()))
