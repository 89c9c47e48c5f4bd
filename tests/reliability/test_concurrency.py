"""Two bastions on one gateway: on one machine the lock file, between machines AWS itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.adapters.lock import release_all
from bastion.domain.clock import FakeClock
from bastion.domain.errors import ConflictError, ExitStatus
from bastion.domain.model import Action
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


def test_two_machines_relaunching_at_once_never_leave_two_gateways(
    deps: Deps, ec2_client: Any, tmp_path: Path
) -> None:
    """Both machines hold the gateway folder; the instance is gone; both run `up` at once.

    Machine A is about to launch when machine B runs a whole `up` (and launches): A sees B's
    instance right after its own launch and withdraws it.
    """
    import shutil

    machine_a = make_settings(allow=("192.0.2.1",), data_dir=str(tmp_path / "a"))
    machine_b = make_settings(allow=("192.0.2.1",), data_dir=str(tmp_path / "b"))
    first = up(machine_a, deps).status
    assert first
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # as the README says to share a gateway
    ec2_client.terminate_instances(InstanceIds=[first["instance"]["id"]])

    def b_runs_now(action: Action) -> None:
        if action.kind == "launch_instance":
            deps.before_each = None
            release_all()  # B is another machine: it does not share A's lock
            up(machine_b, deps)

    deps.before_each = b_runs_now
    with pytest.raises(ConflictError, match="another bastion launched gateway 'default'"):
        up(machine_a, deps)

    (survivor,) = live_instances(ec2_client)
    release_all()
    again = up(machine_b, deps)  # B's gateway stands; a rerun changes nothing
    assert again.status and again.status["instance"]["id"] == survivor
    assert not [a for a in again.applied if a.mutating]
