"""Run burn's steps: each journaled before and after (with AWS request ids), then saved.

Containment runs as one batch: its intents journaled in one append, its independent steps at
once (each chain in its own thread; a chain's steps in order), each result journaled as it
lands, the record saved once. Nothing else starts before the whole batch has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from bastion.domain.incident import PHASES, STEP_SUMMARY
from bastion.domain.model import Action
from bastion.usecases.burn.contain import Containment
from bastion.usecases.burn.state import BurnState, Step
from bastion.usecases.ports import CallLog


class BurnRun:
    """Executes burn steps, each idempotent, journaled before and after."""

    def __init__(self, state: BurnState, calls: CallLog) -> None:
        self.state = state
        self.deps, self.incident = state.deps, state.incident
        self.calls = calls
        self._record = threading.Lock()
        # The later phases (and what they import: rendering, SSH config) load once containment
        # is done: nothing before it waits for them.
        self.handlers: dict[str, Step] = Containment(state).table()

    def _handler(self, name: str) -> Step:
        if name not in self.handlers:
            from bastion.usecases.burn.destroy import Destruction
            from bastion.usecases.burn.preserve import Preservation
            from bastion.usecases.burn.recover import Recovery

            for phase in (Preservation, Destruction, Recovery):
                self.handlers.update(phase(self.state).table())
        return self.handlers[name]

    def save(self) -> None:
        """Write report.json and report.md atomically (0600: they name resources and hashes)."""
        self.state.folder.save(self.incident)

    def journal(self, *entries: dict[str, Any], at: datetime | None = None) -> None:
        """Append lines to the incident journal, in one write."""
        when = (at or self.deps.clock.now()).isoformat()
        self.state.folder.journal(*({"at": when, **entry} for entry in entries))

    def step(self, name: str) -> None:
        """Run one step: journal intent, run, journal result with request ids, save."""
        self.journal({"step": name, "phase": "intent"})
        try:
            self._run(name)
        finally:
            self.save()

    def batch(self, chains: Sequence[Sequence[str]]) -> None:
        """Run chains of steps at once (each chain in order), then save the record once."""
        chains = [chain for chain in chains if chain]
        self.journal(*({"step": s, "phase": "intent"} for chain in chains for s in chain))
        try:
            with ThreadPoolExecutor(max_workers=max(len(chains), 1)) as pool:
                futures = [pool.submit(self._run_chain, chain) for chain in chains]
            for future in futures:
                future.result()  # the first failure, once every chain has ended
        finally:
            self.save()

    def _run_chain(self, chain: Sequence[str]) -> None:
        for name in chain:
            self._run(name)

    def _run(self, name: str) -> None:
        self.deps.reporter.step(f"[{self.incident.incident_id}] {STEP_SUMMARY[name]}")
        if self.deps.before_each is not None:
            self.deps.before_each(Action(name, STEP_SUMMARY[name]))
        self.calls.take_own()  # what came before is already in the record
        try:
            outcome = self._handler(name)() or {}
        except Exception as exc:
            calls = self.calls.take_own()
            with self._record:
                self.incident.api_calls.extend({"step": name, **c} for c in calls)
                self.journal(
                    {"step": name, "phase": "failed", "error": str(exc)[:300], "calls": calls}
                )
            raise
        calls = self.calls.take_own()
        with self._record:
            self.incident.api_calls.extend({"step": name, **c} for c in calls)
            done_at = self.deps.clock.now()
            self.journal(
                {"step": name, "phase": "done", "result": outcome, "calls": calls}, at=done_at
            )
            self.incident.steps_done.append(name)
            for phase, members in PHASES:
                if set(members) <= set(self.incident.steps_done):
                    self.incident.mark(phase, done_at)
