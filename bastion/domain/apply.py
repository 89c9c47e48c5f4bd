"""Run a Plan through the adapters: log each action before it runs, journal it, report waits."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.domain.clock import Clock
from bastion.domain.errors import BastionError, TimeoutExpired
from bastion.domain.model import Action, Plan, Ref

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """Where progress goes: a live status line for people, nothing for scripts."""

    def step(self, message: str) -> None: ...

    def wait(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


class QuietReporter:
    """A reporter that only logs."""

    def step(self, message: str) -> None:
        """Log a step."""
        log.info("%s", message)

    def wait(self, message: str) -> None:
        """Log a wait."""
        log.debug("%s", message)

    def warn(self, message: str) -> None:
        """Log a warning."""
        log.warning("%s", message)


@dataclass
class Outcome:
    """What applying a plan did."""

    done: list[Action] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Action, dict[str, Any]], None]


def resolve(value: Any, results: dict[str, Any]) -> Any:
    """Replace every `Ref` inside `value` with the result it names."""
    if isinstance(value, Ref):
        return results[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve(v, results) for v in value)
    return value


def apply_plan(
    plan: Plan,
    handlers: dict[str, Handler],
    reporter: Reporter,
    journal: Callable[[dict[str, Any]], None] | None = None,
    results: dict[str, Any] | None = None,
    before_each: Callable[[Action], None] | None = None,
) -> Outcome:
    """Run each action in order; stop at the first failure (nothing after it runs)."""
    outcome = Outcome(results=results if results is not None else {})
    for index, action in enumerate(plan.actions, start=1):
        log.info("[%d/%d] %s", index, len(plan.actions), action.summary)
        reporter.step(action.summary)
        entry = {"command": plan.command, "name": plan.name, "step": index, "kind": action.kind}
        if journal and action.mutating:
            journal({**entry, "phase": "intent", "summary": action.summary})
        try:
            if before_each:
                before_each(action)
            handlers[action.kind](action, outcome.results)
        except Exception as exc:
            if journal and action.mutating:
                journal({**entry, "phase": "failed", "error": str(exc)[:300]})
            done = [a for a in outcome.done if a.mutating]
            if isinstance(exc, BastionError) and done:
                # Say that something already changed, so a failure is never a silent half-done
                # change; the steps themselves are in the journal and in the log (-v), so the
                # one error line stays short.
                exc.done_steps = [a.summary for a in done]
                exc.message += (
                    f" ({len(done)} step(s) were done before it, listed in journal.jsonl and "
                    f"with -v; rerun `bastion {plan.command}` to finish)"
                )
                for number, summary in enumerate(exc.done_steps, start=1):
                    log.info("done before the failure (%d/%d): %s", number, len(done), summary)
            raise
        if journal and action.mutating:
            journal({**entry, "phase": "done"})
        outcome.done.append(action)
    return outcome


def wait_until(
    check: Callable[[], bool],
    describe: str,
    clock: Clock,
    reporter: Reporter,
    timeout: float,
    interval: float = 5.0,
    hint: str = "",
) -> None:
    """Poll `check` through the injected clock until it holds or `timeout` passes."""
    start = clock.monotonic()
    while True:
        if check():
            return
        elapsed = clock.monotonic() - start
        if elapsed >= timeout:
            raise TimeoutExpired(
                f"timed out after {elapsed:.0f}s waiting for {describe}"
                + (f"; {hint}" if hint else "")
            )
        reporter.wait(f"waiting for {describe} ({elapsed:.0f}s)")
        clock.sleep(min(interval, max(timeout - elapsed, 0.01)))


def json_line(entry: dict[str, Any]) -> str:
    """Serialize a journal entry as one JSON line."""
    return json.dumps(entry, sort_keys=True, default=str) + "\n"
