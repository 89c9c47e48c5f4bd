"""Time, injectable so tests never sleep."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

_CLOCK_TICKS = 100  # USER_HZ: 100 on every Linux architecture bastion runs on


class Clock(Protocol):
    """What bastion needs from time."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def process_started_at(self) -> datetime:
        """Return when this process started (the interpreter, before any import)."""
        ...


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

    def process_started_at(self) -> datetime:
        """Return when this process started, from Linux's /proc; elsewhere, now."""
        from datetime import timedelta

        try:
            with open("/proc/self/stat", encoding="ascii") as stat:
                # Field 22 (the 20th after the command name's parenthesis): ticks since boot.
                ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/uptime", encoding="ascii") as uptime:
                since_boot = float(uptime.read().split()[0])
        except (OSError, ValueError, IndexError):
            return self.now()
        age = max(since_boot - ticks / _CLOCK_TICKS, 0.0)
        return self.now() - timedelta(seconds=age)


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

    def process_started_at(self) -> datetime:
        """Return the simulated start: the clock's first reading."""
        return self.current
