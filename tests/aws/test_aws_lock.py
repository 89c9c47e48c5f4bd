"""The gateway lock held in AWS (DynamoDB under moto): atomic take, takeover, renewal, release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from bastion.adapters.aws.client import Ec2, make_session
from bastion.adapters.aws.lock import TABLE, DynamoLocks
from bastion.domain.clock import FakeClock
from bastion.domain.errors import ConflictError
from bastion.domain.lease import LEASE_SECONDS, RENEW_AFTER_SECONDS, Lease, new_lease
from bastion.usecases.shared.context import open_context
from bastion.usecases.shared.lease import forget_aws_locks, hold_aws_lock, release_aws_locks
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings

NOW = datetime(2026, 1, 1, 14, 2, 11, tzinfo=UTC)
ALICE = "arn:aws:iam::123456789012:user/alice"
BOB = "arn:aws:iam::123456789012:user/bob"


@pytest.fixture
def locks(aws: None) -> DynamoLocks:
    return Ec2(make_session(None, "us-east-1")).locks


def lease(holder: str, token: str, at: datetime = NOW) -> Lease:
    return new_lease("default", holder, "up", at, token)


def test_the_lock_table_is_made_on_first_use_pay_per_request_and_tagged(
    locks: DynamoLocks,
) -> None:
    mine = lease(ALICE, "a1")
    assert locks.take(mine, NOW) == mine

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    tags = dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {"Key": "bastion:managed", "Value": "true"} in tags
    assert locks.read("default") == mine


def test_a_live_lease_is_never_taken_over_and_a_lapsed_one_is(locks: DynamoLocks) -> None:
    alice = lease(ALICE, "a1")
    locks.take(alice, NOW)
    just_before = alice.expires - timedelta(seconds=1)

    assert locks.take(lease(BOB, "b1", just_before), just_before) == alice  # stands: Alice's
    after = alice.expires + timedelta(seconds=1)
    bob = lease(BOB, "b1", after)
    assert locks.take(bob, after) == bob
    assert locks.read("default") == bob


def test_the_same_identity_on_two_machines_is_told_apart_by_its_token(
    locks: DynamoLocks,
) -> None:
    first = lease(ALICE, "machine-1")
    locks.take(first, NOW)

    assert locks.take(lease(ALICE, "machine-2"), NOW) == first
    assert not locks.release(lease(ALICE, "machine-2"))
    assert locks.read("default") == first


def test_a_lock_not_ours_is_never_deleted_or_renewed(locks: DynamoLocks) -> None:
    alice = lease(ALICE, "a1")
    locks.take(alice, NOW)
    later = alice.expires + timedelta(seconds=5)
    bob = lease(BOB, "b1", later)
    locks.take(bob, later)

    assert not locks.renew(alice.renewed(later))  # Alice's lease lapsed and Bob took over
    assert not locks.release(alice)
    assert locks.read("default") == bob
    assert locks.release(bob)
    assert locks.read("default") is None


def test_a_lapsed_holder_releasing_at_the_end_leaves_the_new_holders_lock(
    deps: Deps, locks: DynamoLocks
) -> None:
    assert isinstance(deps.clock, FakeClock)
    ctx = open_context(make_settings(), deps)
    hold_aws_lock(ctx, deps, "down")
    deps.clock.sleep(LEASE_SECONDS + 1)  # a stalled process: no step, no renewal
    bob = lease(BOB, "b1", deps.clock.now())
    assert locks.take(bob, deps.clock.now()) == bob

    release_aws_locks()

    assert locks.read("default") == bob


def test_a_long_command_renews_its_lease_between_steps(deps: Deps, locks: DynamoLocks) -> None:
    assert isinstance(deps.clock, FakeClock)
    ctx = open_context(make_settings(), deps)
    hold_aws_lock(ctx, deps, "rotate --relaunch")
    taken = locks.read("default")
    assert taken is not None

    deps.clock.sleep(RENEW_AFTER_SECONDS - 1)
    deps.reporter.step("a step too soon to renew")
    assert locks.read("default") == taken
    deps.clock.sleep(2)
    deps.reporter.wait("waiting for the new instance")
    renewed = locks.read("default")

    assert renewed is not None and renewed.token == taken.token
    assert renewed.expires == deps.clock.now() + timedelta(seconds=LEASE_SECONDS)
    # Renewed, so never lapsed: a second machine past the first term still finds it held.
    deps.clock.sleep(LEASE_SECONDS - RENEW_AFTER_SECONDS)
    assert locks.take(lease(BOB, "b1", deps.clock.now()), deps.clock.now()) == renewed


def test_a_holder_that_lost_its_lease_stops_at_its_next_step_naming_the_new_holder(
    deps: Deps, locks: DynamoLocks
) -> None:
    assert isinstance(deps.clock, FakeClock)
    ctx = open_context(make_settings(), deps)
    hold_aws_lock(ctx, deps, "up")
    deps.clock.sleep(LEASE_SECONDS + 1)
    locks.take(lease(BOB, "b1", deps.clock.now()), deps.clock.now())

    with pytest.raises(ConflictError, match=f"lost the lock on gateway 'default' to {BOB}"):
        deps.reporter.step("launch the next generation")


def test_the_wait_for_a_live_holder_is_bounded_and_names_it(deps: Deps, locks: DynamoLocks) -> None:
    assert isinstance(deps.clock, FakeClock)
    alice = lease(ALICE, "a1", deps.clock.now())
    locks.take(alice, deps.clock.now())
    ctx = open_context(make_settings(), deps)
    forget_aws_locks()

    with pytest.raises(ConflictError) as refused:
        hold_aws_lock(ctx, deps, "down")

    assert refused.value.exit_status == 8
    assert refused.value.message.startswith(
        f"gateway 'default' is being changed by {ALICE} (bastion up since 00:00:00Z, "
        "lease until 00:02:00Z)"
    )
    assert deps.clock.elapsed >= 30
    assert locks.read("default") == alice


def lock_calls(counter: CallCounter) -> dict[str, int]:
    return dict(counter.lock_calls)


def test_up_takes_the_lock_only_to_apply_and_releases_it_at_the_end(
    deps: Deps, counter: CallCounter, locks: DynamoLocks
) -> None:
    from tests.cli.conftest import CliRunner, invoke

    runner = CliRunner()
    first = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json")
    assert first.exit_code == 0, first.stderr
    # First use: the table is made, the lock taken, and dropped at the end.
    assert lock_calls(counter) == {"PutItem": 2, "CreateTable": 1, "DeleteItem": 1}
    assert locks.read("default") is None

    counter.reset()
    unchanged = invoke(runner, deps, "up", "--allow", "192.0.2.1", "--json")
    assert unchanged.exit_code == 0, unchanged.stderr
    assert lock_calls(counter) == {}  # nothing to change: no lock, no re-read
    reads_unchanged = sum(counter.calls.values())
    assert counter.mutating == {}

    counter.reset()
    changed = invoke(runner, deps, "up", "--allow", "192.0.2.9", "--json")
    assert changed.exit_code == 0, changed.stderr
    assert lock_calls(counter) == {"PutItem": 1, "DeleteItem": 1}
    assert sum(counter.calls.values()) > reads_unchanged  # the plan was read again under it
    assert locks.read("default") is None


def test_status_and_ssh_config_make_no_lock_calls(deps: Deps, counter: CallCounter) -> None:
    from tests.cli.conftest import CliRunner, invoke

    runner = CliRunner()
    assert invoke(runner, deps, "up", "--allow", "192.0.2.1").exit_code == 0
    counter.reset()

    assert invoke(runner, deps, "status", "--json").exit_code == 0
    invoke(runner, deps, "ssh-config")
    invoke(runner, deps, "allow", "--list")

    assert counter.calls and lock_calls(counter) == {} and counter.mutating == {}
