"""The documented policy is enough for the whole lifecycle, each action in it is needed, and
nothing the lifecycle calls is missing from it (moto with IAM enforced, as a user holding it)."""

from __future__ import annotations

import os
import shlex
from typing import Any

import pytest

from bastion.domain.errors import ExitStatus
from bastion.testing.iam import (
    NEEDS_NO_PERMISSION,
    load_policy,
    policy_actions,
    without_action,
)
from tests.iam.conftest import LIFECYCLE, Step, World, make_world, run_step

# Granted, but no lifecycle run by one operator calls them (tests/aws/test_aws_lock.py does).
CALLED_BEYOND_THE_LIFECYCLE = {
    "dynamodb:GetItem": "reading the lock another machine holds",
    "dynamodb:UpdateItem": "renewing a lease during a long command",
    "dynamodb:TagResource": "real DynamoDB checks it for CreateTable with Tags; moto does not",
}

DOCUMENTED = load_policy()
# One action per command and per statement of the policy, for every run; set
# BASTION_IAM_EVERY_ACTION=1 to take out each of the policy's actions in turn (about 10 minutes).
REPRESENTATIVE = [
    "ec2:DescribeInstances",  # the first read of every command
    "ssm:GetParameter",  # another service: the image's public parameter
    "ec2:RunInstances",  # up
    "ec2:GetConsoleOutput",  # answered by the test's console, checked as moto would
    "ec2:ModifySecurityGroupRules",  # allow, renewing a rule
    "ec2:ImportKeyPair",  # rotate
    "ec2:StartInstances",  # up on a stopped gateway
    "ec2:ModifyInstanceMetadataOptions",  # audit --fix
    "ec2:TerminateInstances",  # rotate --relaunch retires the old generation
    "ec2:CreateNetworkAclEntry",  # burn's containment
    "ec2:StopInstances",  # burn --keep-instance
]
EVERY = os.environ.get("BASTION_IAM_EVERY_ACTION", "").lower() in {"1", "true", "yes"}


def _one_line_error(result: Any) -> str:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _run_all(world: World) -> list[tuple[Step, Any]]:
    return [(step, run_step(world, step)) for step in LIFECYCLE]


def test_the_whole_lifecycle_passes_holding_only_the_documented_policy() -> None:
    for world in make_world(DOCUMENTED):
        for step, result in _run_all(world):
            assert result.exit_code in step.ok, (step.args, result.stderr)
        left = world.root.describe_instances(
            Filters=[
                {"Name": "tag:bastion:managed", "Values": ["true"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        assert left == []  # down removed the gateway (the burnt one is kept, stopped)


def test_the_policy_lists_exactly_the_actions_the_lifecycle_calls() -> None:
    everything = {
        "Version": "2012-10-17",
        # Every service bastion may call, so that the lifecycle shows what it calls of each.
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ec2:*", "ssm:*", "dynamodb:*", "kms:*"],
                "Resource": "*",
            }
        ],
    }
    first_called_by: dict[str, str] = {}
    for world in make_world(everything):
        for step in LIFECYCLE:
            seen = len(world.recorder.actions)
            result = run_step(world, step)
            assert result.exit_code in step.ok, (step.args, result.stderr)
            for action in world.recorder.actions[seen:]:
                first_called_by.setdefault(action, shlex.join(step.args))
        called = world.recorder.called
    documented = policy_actions(DOCUMENTED)
    beyond = set(CALLED_BEYOND_THE_LIFECYCLE)
    missing, unused = sorted(called - documented), sorted(documented - called - beyond)
    assert not missing, (
        "the lifecycle called "
        + ", ".join(f"{a} (`bastion {first_called_by[a]}`)" for a in missing)
        + ", which policy/bastion.json does not grant: add each to the statement for its "
        "resources (tag conditions where EC2 supports them) and to the README's Permissions"
    )
    assert not unused, (
        f"policy/bastion.json grants {', '.join(unused)}, which no lifecycle command calls: "
        "remove it, or add the command that needs it to tests/iam/conftest.py's LIFECYCLE"
    )
    assert not documented & NEEDS_NO_PERMISSION


@pytest.mark.parametrize(
    "action",
    sorted(policy_actions(DOCUMENTED) - set(CALLED_BEYOND_THE_LIFECYCLE))
    if EVERY
    else REPRESENTATIVE,
)
def test_without_an_action_the_first_command_needing_it_fails_with_exit_4_naming_it(
    action: str,
) -> None:
    assert action in policy_actions(DOCUMENTED)
    for world in make_world(without_action(DOCUMENTED, action)):
        for step in LIFECYCLE:
            result = run_step(world, step)
            if result.exit_code in step.ok:
                continue
            assert result.exit_code == ExitStatus.AWS_AUTH, (step.args, result.stderr)
            line = _one_line_error(result)
            assert f"AWS refused {action} for {world.user.arn}: " in line, line
            assert "policy/bastion.json" in line
            return
        pytest.fail(f"the whole lifecycle passed without {action}: the policy need not grant it")
