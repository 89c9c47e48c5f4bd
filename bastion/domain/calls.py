"""EC2 operation names: which of them change something (call logs, reports, benchmarks)."""

from __future__ import annotations

MUTATING_PREFIXES = (
    "Create",
    "Delete",
    "Import",
    "Run",
    "Start",
    "Stop",
    "Terminate",
    "Authorize",
    "Revoke",
    "Modify",
    "Associate",
    "Disassociate",
    "Replace",
)


def is_mutating(operation: str) -> bool:
    """Tell whether an EC2 operation name changes anything."""
    return operation.startswith(MUTATING_PREFIXES)
