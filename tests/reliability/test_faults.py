"""Throttling and hard failures: every command ends where a fault-free run ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.domain.errors import AwsAuthError
from tests.reliability.harness import (
    Command,
    FailNth,
    Throttle,
    run_burn,
    run_down,
    run_up,
    snapshot,
    world,
)

SCENARIOS: dict[str, tuple[list[Command], Command]] = {
    # name: (what runs before, the command under test)
    "up": ([], run_up),
    "down": ([run_up], run_down),
    "burn": ([run_up], run_burn),
}


_REFERENCES: dict[str, tuple[dict[str, object], list[str]]] = {}


def reference(tmp_path: Path, name: str) -> tuple[dict[str, object], list[str]]:
    """Return the fault-free end state of a scenario and its command's mutating calls."""
    if name not in _REFERENCES:
        before, command = SCENARIOS[name]
        with world(tmp_path / "reference") as w:
            for step in before:
                w.run(step)
            w.mutating.clear()
            w.run(command)
            _REFERENCES[name] = snapshot(w.data_dir), list(w.mutating)
    return _REFERENCES[name]


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("up", "RequestLimitExceeded", 503),
        ("up", "Unavailable", 503),
        ("up", "InternalError", 500),
        ("down", "RequestLimitExceeded", 503),
        ("burn", "RequestLimitExceeded", 503),
    ],
)
def test_transient_errors_are_retried_to_the_same_end_state(
    tmp_path: Path, retry_sleeps: list[float], name: str, code: str, status: int
) -> None:
    expected, _ = reference(tmp_path, name)
    before, command = SCENARIOS[name]
    throttle = Throttle(code, status, times=2)
    with world(tmp_path / "faulted") as w:
        for step in before:
            w.run(step)
        w.run(command, throttle.attach)
        assert snapshot(w.data_dir) == expected
    assert sum(throttle.seen.values()) >= 2 * 3, throttle.seen
    assert len(retry_sleeps) == sum(throttle.seen.values())


# Every mutating call of each command fails once, in turn. burn makes ~35, so its calls are
# dealt into four shares (index % 4) that xdist can run side by side.
SHARES = 4


@pytest.mark.parametrize(
    ("name", "share", "shares"),
    [
        ("up", 0, 1),
        ("down", 0, 1),
        *[("burn", share, SHARES) for share in range(SHARES)],
    ],
)
def test_a_failure_at_any_mutating_call_is_finished_by_a_rerun(
    tmp_path: Path, name: str, share: int, shares: int
) -> None:
    expected, sequence = reference(tmp_path, name)
    assert len(sequence) > shares, "the command made too few mutating calls"
    before, command = SCENARIOS[name]
    problems = []
    chosen = range(share, len(sequence), shares)
    for index in chosen:
        operation = sequence[index]
        fault = FailNth(operation, sequence[:index].count(operation))
        with world(tmp_path / f"run-{index}") as w:
            for step in before:
                w.run(step)
            try:
                w.run(command, fault.attach)
                failed = None
            except AwsAuthError as exc:
                failed = exc
            if not fault.fired or failed is None:
                problems.append(f"#{index} {operation}: fault fired={fault.fired}, error={failed}")
                continue
            try:
                w.run(command)
            except Exception as exc:
                problems.append(f"#{index} {operation}: rerun failed: {type(exc).__name__}: {exc}")
                continue
            got = snapshot(w.data_dir)
            if got != expected:
                diff = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
                problems.append(f"#{index} {operation}: end state differs: {diff}")
    assert not problems, "\n".join(problems)
