"""Which names the generated SSH client config may use, so none can capture one of yours.

The generated file is Included at the top of `~/.ssh/config`, so for any name its `Host` lines
match, its options win. An app host's Name tag is chosen by whoever can tag instances in the
app group; it must never name `github.com`, an address, another host's instance id or a host
of the operator's own config. So app hosts are named only inside the gateway's namespace,
`NAME.GATEWAY.bastion` (`bastion` is no DNS top-level domain), a Name tag that is unsafe or
confusable is left out (listed in one warning), and the address patterns step aside (`!name`)
for every host the operator's own config names. Pure: the files are read elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

NAMESPACE = "bastion"
GATEWAY_ALIAS_PREFIX = "bastion-"

# A Name tag usable as the first labels of an alias: letters, digits, `_` and `-`, dots only
# between labels. Everything else (blanks, quotes, %, *, ?, !, commas, non-ASCII) is refused.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_SAFE_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]+$")
# What inet_aton (and so ssh's getaddrinfo) reads as an IPv4 address: 1-4 parts, each decimal,
# octal or hex (`10.1`, `0x0a000001`, `167772161`).
_INET_ATON = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?$")
_IPV4_PATTERN = re.compile(r"^(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.[0-9.*?]*$")
_IPV6_PATTERN = re.compile(r"^[0-9a-f]{1,4}:[0-9a-f:*?]*$")
_PATTERN_CHARS = re.compile(r"^[a-z0-9.:_*?-]+$")
_MAX_NAME = 63


@dataclass(frozen=True)
class UserHostName:
    """A pattern the operator's own config names in a `Host` or `Match host` line, and where."""

    pattern: str
    where: str

    @property
    def literal(self) -> bool:
        """Tell whether it names one host (no wildcard)."""
        return not any(ch in self.pattern for ch in "*?")


@dataclass(frozen=True)
class RefusedName:
    """A Name tag left out of the config, the hosts that carry it, and why."""

    name: str
    instance_ids: tuple[str, ...]
    reason: str


def namespace_for(gateway_alias: str) -> str:
    """Return the namespace of gateway `bastion-NAME`'s app hosts: `NAME.bastion`."""
    return f"{gateway_alias.removeprefix(GATEWAY_ALIAS_PREFIX)}.{NAMESPACE}"


def app_alias(label: str, namespace: str) -> str:
    """Return the alias of an app host (by Name tag or instance id) in the gateway's namespace."""
    return f"{label.lower()}.{namespace}"


def name_refusal(name: str, gateway_alias: str) -> str | None:
    """Say why a Name tag cannot name an app host, or None when it can."""
    lowered = name.lower()
    if len(name) > _MAX_NAME or not _SAFE_NAME.match(lowered):
        return "not a plain host name (only letters, digits, _ - and inner dots)"
    if _INET_ATON.match(lowered) or _is_ip(lowered):
        return "an IP address"
    if _INSTANCE_ID.match(lowered):
        return "an instance id"
    if lowered == gateway_alias.lower():
        return "the gateway's own alias"
    if lowered.endswith(f".{NAMESPACE}"):
        return f"inside bastion's .{NAMESPACE} namespace"
    return None


def refused_names(
    names: Mapping[str, str | None],
    gateway_alias: str,
    user_names: Sequence[UserHostName] = (),
) -> tuple[RefusedName, ...]:
    """Return every Name tag (of `names`: instance id -> Name) that no alias may carry."""
    by_name: dict[str, tuple[str, list[str]]] = {}
    for instance_id, name in names.items():
        if name:
            by_name.setdefault(name.lower(), (name, []))[1].append(instance_id)
    namespace = namespace_for(gateway_alias)
    own = [u for u in user_names if not is_catch_all(u.pattern)]
    literals = {u.pattern.lower(): u.where for u in reversed(own) if u.literal}
    refused = []
    for lowered, (shown, ids) in sorted(by_name.items()):
        reason = name_refusal(lowered, gateway_alias)
        if reason is None and len(ids) > 1:
            reason = f"shared by {len(ids)} hosts"
        if reason is None:
            # The short name (which `bastion ssh NAME` maps) against every pattern that names
            # hosts; the alias against the literal names only (a broad pattern such as `i-*`
            # applying to an alias is the operator's options on bastion's host, not a capture).
            where = next((u.where for u in own if glob_match(u.pattern, lowered)), None)
            where = where or literals.get(app_alias(lowered, namespace))
            reason = f"named in {where}" if where else None
        if reason is not None:
            refused.append(RefusedName(shown, tuple(sorted(ids)), reason))
    return tuple(refused)


def is_catch_all(pattern: str) -> bool:
    """Tell whether a pattern names no host in particular (`*`, `?*`, `*.*`): defaults only."""
    return all(ch in "*?." for ch in pattern)


def pattern_refusal(pattern: str) -> str | None:
    """Say why `--hosts PATTERN` may not route through the gateway, or None when it may."""
    body = pattern.removeprefix("!").lower()
    if not body or not _PATTERN_CHARS.match(body):
        return "letters, digits, . : _ - * ? only"
    if pattern.startswith("!"):
        return None if not is_catch_all(body) else "it would exclude everything"
    if _IPV4_PATTERN.match(body) or _IPV6_PATTERN.match(body):
        return None
    tail = re.split(r"[*?]", body)[-1]
    if tail.count(".") >= 2 and not tail.endswith("."):
        return None
    return "it has no literal network prefix (e.g. 10.0.*) or domain (e.g. *.ec2.internal)"


def exclusions(patterns: Sequence[str], user_names: Iterable[UserHostName]) -> tuple[str, ...]:
    """Return `!pattern` for each of the operator's names that the address patterns would catch."""
    positive = [p for p in patterns if not p.startswith("!")]
    found: dict[str, None] = {}
    for user in user_names:
        pattern = user.pattern  # negated as written: ssh compares patterns case-sensitively
        lowered = pattern.lower()
        if is_catch_all(pattern) or f"!{pattern}" in patterns or not _PATTERN_CHARS.match(lowered):
            continue  # a pattern with other characters names no address: it cannot overlap
        if any(globs_overlap(p.lower(), lowered) for p in positive):
            found[f"!{pattern}"] = None
    return tuple(found)


def glob_match(pattern: str, name: str) -> bool:
    """Tell whether OpenSSH's pattern (`*`, `?`) matches `name`, ignoring case.

    ssh itself compares case, so this matches more often than ssh: it refuses more, never less.
    """
    return _glob_regex(pattern).fullmatch(name) is not None


@cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def globs_overlap(first: str, second: str) -> bool:
    """Tell whether some host name matches both patterns (`*` any run, `?` one character)."""

    @cache
    def both(i: int, j: int) -> bool:
        if i < len(first) and first[i] == "*":
            return both(i + 1, j) or (j < len(second) and both(i, j + 1))
        if j < len(second) and second[j] == "*":
            return both(i, j + 1) or (i < len(first) and both(i + 1, j))
        if i == len(first) or j == len(second):
            return i == len(first) and j == len(second)
        same = first[i] == second[j] or "?" in (first[i], second[j])
        return same and both(i + 1, j + 1)

    return both(0, 0)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
