"""Time, injectable so tests never sleep."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What bastion needs from time."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass
class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return a monotonic reading in seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for `seconds`."""
        time.sleep(seconds)


@dataclass
class FakeClock:
    """A clock that advances only when slept on; for tests and dry runs."""

    current: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    elapsed: float = 0.0

    def now(self) -> datetime:
        """Return the simulated time."""
        from datetime import timedelta

        return self.current + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        """Return simulated seconds elapsed."""
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        """Advance simulated time instantly."""
        self.elapsed += seconds
