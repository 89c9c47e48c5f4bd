"""Two bastions on one gateway: on one machine the lock file, between machines the AWS lock."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from bastion.adapters.aws.client import Ec2, make_session
from bastion.adapters.lock import release_all
from bastion.domain.apply import QuietReporter
from bastion.domain.clock import FakeClock
from bastion.domain.errors import ConflictError, ExitStatus
from bastion.domain.incident import CONTAIN
from bastion.domain.lease import LEASE_SECONDS, RENEW_AFTER_SECONDS, Lease
from bastion.domain.model import Action
from bastion.domain.settings import Settings
from bastion.usecases.burn import burn
from bastion.usecases.shared.context import open_context
from bastion.usecases.shared.lease import forget_aws_locks, hold_aws_lock, release_aws_locks
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings
from tests.cli.conftest import invoke

HOLDER = """
import sys
from pathlib import Path
from bastion.domain.apply import QuietReporter
from bastion.domain.clock import SystemClock
from bastion.adapters.lock import hold_gateway_lock
hold_gateway_lock(Path(sys.argv[1]), "up", SystemClock(), QuietReporter(), 0)
print("holding", flush=True)
sys.stdin.read()
"""


@dataclass
class OtherBastion:
    """Another `bastion` process on this machine, holding the gateway's lock until stopped."""

    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("", timeout=10)


@pytest.fixture
def other_bastion() -> Iterator[OtherBastion]:
    lock = make_settings().gateway_dir("us-east-1").expanduser().with_name("default.lock")
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "holding"
    other = OtherBastion(process)
    yield other
    other.stop()


def live_instances(ec2_client: Any) -> list[str]:
    reservations = ec2_client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}]
    )["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def test_a_second_bastion_on_this_machine_refuses_after_waiting_and_changes_nothing(
    runner: CliRunner, deps: Deps, counter: CallCounter, other_bastion: OtherBastion
) -> None:
    result = invoke(runner, deps, "up", "--allow", "192.0.2.1")

    assert result.exit_code == ExitStatus.CONFLICT
    lines = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "another bastion (pid " in lines[0] and "`bastion up`" in lines[0]
    assert counter.mutating == {}
    assert isinstance(deps.clock, FakeClock) and deps.clock.elapsed >= 30  # it did wait


def test_a_second_bastion_goes_ahead_once_the_first_one_ends(
    deps: Deps, ec2_client: Any, other_bastion: OtherBastion
) -> None:
    class EndsTheOtherWhileWaiting(FakeClock):
        def sleep(self, seconds: float) -> None:
            other_bastion.stop()
            super().sleep(seconds)

    deps.clock = EndsTheOtherWhileWaiting()
    result = up(make_settings(allow=("192.0.2.1",)), deps)

    assert result.status and result.status["instance"]["state"] == "running"
    assert deps.clock.elapsed > 0  # it waited, then went on
    assert len(live_instances(ec2_client)) == 1


@dataclass
class Machine:
    """Another operator's machine: its own HOME (gateway folder) and its own IAM identity."""

    settings: Settings
    deps: Deps
    arn: str


def machine(deps: Deps, tmp_path: Path, user: str, **flags: Any) -> Machine:
    """Make an IAM user with an access key in moto, and a machine that runs bastion as it."""
    iam = boto3.client("iam", region_name="us-east-1")
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]

    def session(profile: str | None, region: str | None) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name=region or "us-east-1",
        )

    settings = make_settings(allow=("192.0.2.1",), data_dir=str(tmp_path / user), **flags)
    return Machine(settings, replace(deps, session_factory=session), arn)


def lock_on(gateway: str = "default") -> Lease | None:
    return Ec2(make_session(None, "us-east-1")).locks.read(gateway)


class Killed(BaseException):
    """The process ends here, as on SIGKILL: nothing after it runs, nothing is released."""


def test_two_ups_from_two_machines_at_once_one_waits_and_names_the_other(
    deps: Deps, ec2_client: Any, tmp_path: Path, counter: CallCounter
) -> None:
    alice, bob = machine(deps, tmp_path, "alice"), machine(deps, tmp_path, "bob")
    refused: list[ConflictError] = []
    bob_changed: list[dict[str, int]] = []

    def bob_runs_now(action: Action) -> None:
        if action.mutating and not refused:
            counter.reset()
            with pytest.raises(ConflictError) as exc:
                up(bob.settings, bob.deps)
            refused.append(exc.value)
            bob_changed.append(counter.mutating)

    alice.deps.before_each = bob_runs_now
    result = up(alice.settings, alice.deps)

    (error,) = refused
    assert error.exit_status == ExitStatus.CONFLICT
    assert error.message.startswith(
        f"gateway 'default' is being changed by {alice.arn} (bastion up since 00:00:00Z, "
        "lease until 00:02:00Z)"
    )
    assert bob_changed == [{}]  # Bob waited (bounded), then changed nothing
    assert result.status and result.status["instance"]["state"] == "running"
    assert len(live_instances(ec2_client)) == 1


def test_a_killed_holders_lock_is_taken_over_after_its_lease_and_never_before(
    deps: Deps, ec2_client: Any, tmp_path: Path
) -> None:
    alice, bob = machine(deps, tmp_path, "alice"), machine(deps, tmp_path, "bob")
    clock = deps.clock
    assert isinstance(clock, FakeClock)

    def killed(action: Action) -> None:
        if action.mutating:
            raise Killed

    alice.deps.before_each = killed
    with pytest.raises(Killed):
        up(alice.settings, alice.deps)
    forget_aws_locks()  # Alice's process is gone; its lease stays in AWS
    left = lock_on()
    assert left is not None and left.holder == alice.arn

    with pytest.raises(ConflictError, match=f"being changed by {alice.arn}"):
        up(bob.settings, bob.deps)  # waits lock_wait (30 s), well inside the lease
    clock.sleep((left.expires - clock.now()).total_seconds() - 31)
    with pytest.raises(ConflictError, match=f"being changed by {alice.arn}"):
        up(bob.settings, bob.deps)  # its wait ends one second before the lease does
    assert clock.now() < left.expires and lock_on() == left
    assert live_instances(ec2_client) == []

    clock.sleep(2)  # the lease has run out
    result = up(bob.settings, bob.deps)

    assert result.status and result.status["instance"]["state"] == "running"
    taken = lock_on()
    assert taken is not None and taken.holder == bob.arn and taken.token != left.token


def test_burn_contains_while_another_machine_holds_the_lock_then_breaks_it_on_the_record(
    deps: Deps, ec2_client: Any, tmp_path: Path, counter: CallCounter, app_sg: str
) -> None:
    alice = machine(deps, tmp_path, "alice", app_sg=app_sg)
    bob = machine(deps, tmp_path, "bob")
    up(alice.settings, alice.deps)
    release_aws_locks()  # that `up` ended
    bob_ctx = open_context(bob.settings, bob.deps)
    hold_aws_lock(bob_ctx, bob.deps, "rotate")  # Bob's long command is under way
    counter.reset()

    result = burn(alice.settings, alice.deps, reason="a stolen key")

    sequence = counter.every_call
    first_lock_call = next(i for i, op in enumerate(sequence) if op.endswith("Item"))
    contained = {"CreateNetworkAclEntry", "RevokeSecurityGroupIngress", "DisassociateAddress"}
    assert contained & set(sequence[:first_lock_call])  # containment went out first
    assert "ModifyNetworkInterfaceAttribute" in sequence[:first_lock_call]
    assert set(result.incident.steps_done) >= set(CONTAIN)
    assert result.incident.state == "closed"
    journal = (result.record_path.parent / "journal.jsonl").read_text().splitlines()
    broken = [json.loads(line) for line in journal if '"broken"' in line]
    assert [(b["holder"], b["command"]) for b in broken] == [(bob.arn, "rotate")]
    held = lock_on()
    assert held is not None and held.holder == alice.arn and held.command == "burn"
    # Bob's command stops at its next step instead of working on the burnt gateway.
    assert isinstance(deps.clock, FakeClock)
    deps.clock.sleep(RENEW_AFTER_SECONDS)
    with pytest.raises(ConflictError, match=f"lost the lock on gateway 'default' to {alice.arn}"):
        bob.deps.reporter.step("revoke the old login key")


def test_two_machines_whose_lock_lapsed_mid_launch_still_never_leave_two_gateways(
    deps: Deps, ec2_client: Any, tmp_path: Path
) -> None:
    """Both machines hold the gateway folder; the instance is gone; both run `up` at once.

    Machine A stalls just before its launch until its AWS lease runs out; machine B then takes
    the lock over and runs a whole `up` (and launches). The lock can no longer keep them apart
    (A renews only at its next step), so the launch check does: A sees B's instance right after
    its own launch and withdraws it.
    """
    import shutil

    machine_a = make_settings(allow=("192.0.2.1",), data_dir=str(tmp_path / "a"))
    machine_b = make_settings(allow=("192.0.2.1",), data_dir=str(tmp_path / "b"))
    first = up(machine_a, deps).status
    assert first
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # as the README says to share a gateway
    ec2_client.terminate_instances(InstanceIds=[first["instance"]["id"]])
    release_aws_locks()  # that first `up` ended

    deps_b = replace(deps, reporter=QuietReporter())  # its own process

    def b_runs_now(action: Action) -> None:
        if action.kind == "launch_instance":
            deps.before_each = None
            release_all()  # B is another machine: it does not share A's lock
            deps.clock.sleep(LEASE_SECONDS + 1)  # A stalls past its lease
            up(machine_b, deps_b)

    deps.before_each = b_runs_now
    with pytest.raises(ConflictError, match="another bastion launched gateway 'default'"):
        up(machine_a, deps)

    (survivor,) = live_instances(ec2_client)
    release_all()
    release_aws_locks()
    again = up(machine_b, deps_b)  # B's gateway stands; a rerun changes nothing
    assert again.status and again.status["instance"]["id"] == survivor
    assert not [a for a in again.applied if a.mutating]
