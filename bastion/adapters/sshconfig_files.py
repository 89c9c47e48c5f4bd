"""The files side of the SSH client config: atomic writes, and the one Include line.

Split from `sshconfig` (which renders the text): here is everything that touches the user's
`~/.ssh`, written atomically, modes kept, a byte-exact backup before the first change.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bastion.domain.errors import UsageError
from bastion.domain.sshnames import UserHostName

CONFIG_DIR_NAME = "config.d"
FILE_PREFIX = "bastion-"
INCLUDE_GLOB = f"{FILE_PREFIX}*"
BACKUP_SUFFIX = ".bastion-backup"
_INCLUDE_KEYWORD = re.compile(r"^\s*include(\s+|\s*=\s*)(?P<args>.*?)\s*$", re.IGNORECASE)
_KEYWORD = re.compile(r"^\s*(?P<key>[A-Za-z]+)(?:\s*=\s*|\s+)(?P<args>.*?)\s*$")
_MAX_INCLUDE_DEPTH = 16  # ssh's own limit (READCONF_MAX_DEPTH)


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


# --- the names the operator's own config uses ------------------------------------------------


def user_host_names(user_config: Path, skip: tuple[Path, ...] = ()) -> tuple[UserHostName, ...]:
    """Return every pattern of the `Host` and `Match host` lines of `user_config` and its Includes.

    paramiko's SSHConfig follows no Include, so the few keywords that name hosts are read here,
    the way ssh reads them: `Include` globs relative to `~/.ssh`, nested up to ssh's depth limit.
    Files in `skip` (bastion's own generated files) are not the operator's and are left out.
    """
    skipped = {p.resolve() for p in skip}
    return tuple(_names_in(user_config, user_config.parent, skipped, set(), 0))


def _names_in(
    path: Path, ssh_dir: Path, skipped: set[Path], seen: set[Path], depth: int
) -> Iterator[UserHostName]:
    resolved = path.resolve()
    if resolved in skipped or resolved in seen or depth > _MAX_INCLUDE_DEPTH:
        return
    seen.add(resolved)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return  # ssh skips an Included file it cannot read; bastion can name nothing from it
    for number, line in enumerate(text.splitlines(), 1):
        match = _KEYWORD.match(line)
        if match is None:
            continue
        key, args = match.group("key").lower(), _split(match.group("args"))
        where = f"{_shown(path)} line {number}"
        if key == "include":
            for included in _included(args, ssh_dir):
                yield from _names_in(included, ssh_dir, skipped, seen, depth + 1)
        elif key == "host":
            yield from (UserHostName(a, where) for a in args if not a.startswith("!"))
        elif key == "match":
            yield from (UserHostName(p, where) for p in _match_hosts(args))


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args, comments=True)
    except ValueError:
        return args.split()


def _included(args: list[str], ssh_dir: Path) -> list[Path]:
    found: list[Path] = []
    for arg in args:
        pattern = Path(os.path.expanduser(arg))
        pattern = pattern if pattern.is_absolute() else ssh_dir / pattern
        found += [Path(p) for p in sorted(glob.glob(str(pattern)))]
    return found


def _match_hosts(args: list[str]) -> Iterator[str]:
    # `Match host a,b originalhost c exec "cmd" ...`: only the host criteria name hosts.
    for criterion, value in itertools.pairwise(args):
        if criterion.lower() in ("host", "originalhost"):
            yield from (p for p in value.split(",") if p and not p.startswith("!"))


def _shown(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)
