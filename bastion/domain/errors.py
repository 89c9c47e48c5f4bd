"""Every error bastion raises on purpose, each with its exit code.

Only `cli.context.boundary` turns these into exits; everything else raises.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes; documented in `bastion --help` and the README."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    AWS_AUTH = 4
    SSH = 5
    TIMEOUT = 6
    AWS = 7
    CONFLICT = 8
    AUDIT_FAILED = 9


EXIT_CODE_HELP = (
    "Exit codes: 0 ok, 1 error, 2 bad usage or input, 3 not found, "
    "4 AWS credentials or permission, 5 SSH or host-key verification, 6 timeout, "
    "7 AWS service error (limits, throttling after retries), 8 conflict with existing state, "
    "9 `bastion audit` found a failure."
)


class BastionError(Exception):
    """A failure with a message a person can act on."""

    exit_status = ExitStatus.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # What a plan had already changed when this failure stopped it (see apply_plan).
        self.done_steps: list[str] = []


class UsageError(BastionError):
    """The user's input is malformed or not allowed."""

    exit_status = ExitStatus.USAGE


class NotFoundError(BastionError):
    """Something the user named does not exist."""

    exit_status = ExitStatus.NOT_FOUND


class AwsAuthError(BastionError):
    """Missing credentials or a denied AWS call."""

    exit_status = ExitStatus.AWS_AUTH


class AwsError(BastionError):
    """An AWS call failed for a reason that is not the user's input."""

    exit_status = ExitStatus.AWS


class SshError(BastionError):
    """SSH connection, authentication or host-key verification failed."""

    exit_status = ExitStatus.SSH


class HostKeyMismatchError(SshError):
    """The server presented a host key other than the pinned one."""


class GatewayUnavailable(SshError):
    """Nothing answered SSH there right now (refused, reset, no greeting): may pass on a retry."""


class TimeoutExpired(BastionError):
    """A wait ran out of time."""

    exit_status = ExitStatus.TIMEOUT


class ConflictError(BastionError):
    """Existing state disagrees with the request in a way that needs a decision."""

    exit_status = ExitStatus.CONFLICT


class AuditFailed(BastionError):
    """`bastion audit` found at least one failing check (the findings are on stdout)."""

    exit_status = ExitStatus.AUDIT_FAILED


class CallerIpError(BastionError):
    """The caller's public IP could not be determined reliably."""


class InsecureFileError(BastionError):
    """A secret file or folder is readable by others; bastion refuses to use it."""


def local_file_error(exc: OSError) -> BastionError:
    """Say what a failed local file operation means and what to do about it, in one line."""
    path = exc.filename or "a local file"
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BastionError(
            f"cannot write {path}: no space left on the device; free some space (or set "
            "BASTION_HOME to a folder on another disk) and rerun"
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return BastionError(
            f"cannot write {path}: {reason}; make it writable, or set BASTION_HOME to a "
            "writable folder, and rerun"
        )
    if exc.errno == errno.ENOTDIR:
        return BastionError(
            f"cannot use {path}: part of that path is a file, not a folder; move the file "
            "away or set BASTION_HOME to another folder"
        )
    return BastionError(f"{path}: {reason}; check the path (BASTION_HOME, HOME) and rerun")
