"""Run independent AWS calls at once: a few round trips instead of one per call."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> list[T]:
    """Run the calls concurrently; return their results, or raise the first failure once all end.

    A boto3 client may be shared between threads (a session may not); each call runs in a copy
    of this context, so the calls it makes count as the calling step's.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    with Together(workers=len(calls)) as together:
        futures = [together.start(call) for call in calls]
    return [future.result() for future in futures]


class Together:
    """Start calls of different result types at once (`at_once` for a fixed few of them).

    with Together() as together:
        pairs, groups = together.start(read_pairs), together.start(read_groups)
    pairs.result()...
    """

    def __init__(self, workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers)

    def __enter__(self) -> Together:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True)

    def start(self, call: Callable[[], T]) -> Future[T]:
        """Start `call` in a copy of this context; its result (or failure) via the future."""
        return self._pool.submit(contextvars.copy_context().run, call)
