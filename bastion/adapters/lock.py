"""One bastion at a time per gateway on this machine: an advisory lock file, held until exit.

Every command that changes a gateway takes `<data>/<region>/<name>.lock` (flock, exclusive)
before its first AWS call and keeps it for the life of the process; the kernel drops it when
the process ends, even on a crash or SIGKILL, so a lock is never left stale. A second command
waits for it (the holder is named on stderr) and, past the wait, refuses with exit 8.
Between machines, the gateway's lock held in AWS (`usecases.shared.lease`, taken right after
this one) keeps them apart; behind it, the loser of a simultaneous launch withdraws its own
(`usecases.shared.launch.UpHandlers.launch_instance`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from bastion.adapters import keys
from bastion.domain.apply import Reporter
from bastion.domain.clock import Clock
from bastion.domain.errors import ConflictError

POLL_SECONDS = 0.5

# Locks this process holds, by path: a process never waits for itself (tests and `burn`, which
# runs `up` inside, take the same gateway's lock more than once).
_held: dict[Path, int] = {}


def hold_gateway_lock(
    path: Path, command: str, clock: Clock, reporter: Reporter, wait_seconds: float
) -> None:
    """Take the gateway's lock for this process, waiting up to `wait_seconds` for another."""
    path = path.absolute()
    if path in _held:
        return
    keys.ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = clock.monotonic() + wait_seconds
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(path)
            if clock.monotonic() >= deadline:
                os.close(fd)
                raise ConflictError(
                    f"another bastion ({holder}) is changing gateway {path.stem!r}; "
                    "let it finish, then run this again"
                ) from None
            if not said:
                reporter.step(f"waiting for another bastion ({holder}) to finish")
                said = True
            clock.sleep(POLL_SECONDS)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, `bastion {command}` since {clock.now():%H:%M:%S}Z".encode())
    _held[path] = fd


def release_all() -> None:
    """Drop every lock this process holds (the process's end does the same)."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "pid unknown"
    except OSError:
        return "pid unknown"
