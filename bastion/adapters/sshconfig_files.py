"""The files side of the SSH client config: atomic writes, and the one Include line.

Split from `sshconfig` (which renders the text): here is everything that touches the user's
`~/.ssh`, written atomically, modes kept, a byte-exact backup before the first change.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from bastion.domain.errors import UsageError

CONFIG_DIR_NAME = "config.d"
FILE_PREFIX = "bastion-"
INCLUDE_GLOB = f"{FILE_PREFIX}*"
BACKUP_SUFFIX = ".bastion-backup"
_INCLUDE_KEYWORD = re.compile(r"^\s*include(\s+|\s*=\s*)(?P<args>.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class IncludeChange:
    """What happened to `~/.ssh/config`."""

    path: Path
    added: bool
    backup: Path | None


def write_if_changed(path: Path, text: str, mode: int = 0o600) -> bool:
    """Replace `path` atomically with `text` unless it already says exactly that."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    _ensure_dir(path.parent)
    _atomic_write(path, data, mode)
    return True


def include_line(directory: Path) -> str:
    """Return the one `Include` line that pulls every generated gateway config in."""
    target = str(directory / INCLUDE_GLOB)
    if any(ch in target for ch in '"\n\r'):
        raise UsageError(f"{target!r} cannot be named in an Include line")
    return f'Include "{target}"' if " " in target else f"Include {target}"


def ensure_include(user_config: Path, directory: Path) -> IncludeChange:
    """Put the Include line at the top of `user_config` once, keeping every other byte."""
    line = include_line(directory)
    target = user_config.resolve() if user_config.is_symlink() else user_config
    try:
        original = target.read_bytes()
        status: os.stat_result | None = target.stat()
    except FileNotFoundError:
        original, status = b"", None
    if _has_include(original, line):
        return IncludeChange(user_config, False, None)
    backup = None
    mode = stat.S_IMODE(status.st_mode) if status else 0o600
    if status is not None:
        backup = target.with_name(target.name + BACKUP_SUFFIX)
        _atomic_write(backup, original, mode, status)
    else:
        _ensure_dir(target.parent)
    # At the top: an Include after a Host or Match line would only apply inside that block.
    _atomic_write(target, f"{line}\n".encode() + original, mode, status)
    return IncludeChange(user_config, True, backup)


def _has_include(content: bytes, line: str) -> bool:
    wanted = line.split(None, 1)[1].strip('"')
    for raw in content.decode("utf-8", "replace").splitlines():
        match = _INCLUDE_KEYWORD.match(raw)
        if match and wanted in [a.strip('"') for a in match.group("args").split()]:
            return True
    return False


def _ensure_dir(path: Path) -> None:
    # Every folder made here is 0700, ~/.ssh included, as ssh-keygen makes it (mkdir's
    # `parents` would give the parents the umask's 0755).
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)


def _atomic_write(path: Path, data: bytes, mode: int, like: os.stat_result | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if like is not None and os.geteuid() == 0:
            os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- what `--write` remembers, so `up`, `rotate` and `burn` can rewrite the same file ---------
