"""Run burn's steps in order: each journaled before and after (with AWS request ids), then saved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bastion.domain.incident import PHASES, STEP_SUMMARY
from bastion.domain.model import Action
from bastion.usecases.burn.contain import Containment
from bastion.usecases.burn.destroy import Destruction
from bastion.usecases.burn.preserve import Preservation
from bastion.usecases.burn.recover import Recovery
from bastion.usecases.burn.state import BurnState, Step


class BurnRun:
    """Executes burn steps, each idempotent, journaled before and after."""

    def __init__(self, state: BurnState, calls: list[dict[str, str]]) -> None:
        self.state = state
        self.deps, self.incident = state.deps, state.incident
        self.calls = calls
        self.handlers: dict[str, Step] = {}
        for phase in (Containment, Preservation, Destruction, Recovery):
            self.handlers.update(phase(state).table())

    def save(self) -> None:
        """Write report.json and report.md atomically (0600: they name resources and hashes)."""
        self.state.folder.save(self.incident)

    def journal(self, entry: dict[str, Any], at: datetime | None = None) -> None:
        """Append one line to the incident journal."""
        self.state.folder.journal({"at": (at or self.deps.clock.now()).isoformat(), **entry})

    def step(self, name: str) -> None:
        """Run one step: journal intent, run, journal result with request ids, save."""
        self.deps.reporter.step(f"[{self.incident.incident_id}] {STEP_SUMMARY[name]}")
        self.journal({"step": name, "phase": "intent"})
        if self.deps.before_each is not None:
            self.deps.before_each(Action(name, STEP_SUMMARY[name]))
        del self.calls[:]  # what came before is already in the record
        handler = self.handlers[name]
        try:
            outcome = handler() or {}
        except Exception as exc:
            calls = list(self.calls)
            self.incident.api_calls.extend({"step": name, **c} for c in calls)
            self.journal({"step": name, "phase": "failed", "error": str(exc)[:300], "calls": calls})
            self.save()
            raise
        calls = list(self.calls)
        self.incident.api_calls.extend({"step": name, **c} for c in calls)
        done_at = self.deps.clock.now()
        self.journal({"step": name, "phase": "done", "result": outcome, "calls": calls}, done_at)
        self.incident.steps_done.append(name)
        for phase, members in PHASES:
            if name == members[-1]:
                self.incident.mark(phase, done_at)
        self.save()
