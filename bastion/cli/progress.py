"""Progress on stderr: a live status line on a terminal, plain lines otherwise, none for --json."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


class ConsoleReporter:
    """Report steps and waits; live (rich) only when stderr is a terminal."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self._status: Any = None
        self._console: Any = None
        if live:
            from rich.console import Console

            self._console = Console(stderr=True)

    def step(self, message: str) -> None:
        """Announce the action about to run."""
        log.info("%s", message)
        if self._console is not None:
            self._stop()
            self._console.print(f"[bold]→[/] {message}", markup=True, highlight=False)

    def wait(self, message: str) -> None:
        """Update the live status line during a wait."""
        log.debug("%s", message)
        if self._console is None:
            return
        if self._status is None:
            self._status = self._console.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def warn(self, message: str) -> None:
        """Print a warning on stderr (always: warnings matter even in scripts)."""
        self._stop()
        print(f"bastion: warning: {message}", file=sys.stderr)

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
