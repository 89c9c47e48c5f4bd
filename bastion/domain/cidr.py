"""CIDRs as people type them: normalized, how wide, and how much of the Internet a set admits.

A security group's sources add up: `0.0.0.0/1` plus `128.0.0.0/1` admit every IPv4 address as
surely as `0.0.0.0/0` does. So "world-open" is a property of a *set* of sources: they are
collapsed (stdlib `ipaddress`) and measured against the public address space. A single source
is "wide" when its prefix is shorter than /24 (IPv4) or /56 (IPv6): more than one office or
one site's allocation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from bastion.domain.errors import UsageError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A source wider than these is "wide": allow/up refuse it without an explicit flag, audit fails it.
WIDEST_V4_PREFIX = 24
WIDEST_V6_PREFIX = 56

# Address space no Internet host sends from (IANA special-purpose registries: not globally
# reachable, documentation, multicast, reserved). IPv6 public space is global unicast (2000::/3).
_NOT_PUBLIC_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",
)
_PUBLIC_V6 = "2000::/3"
_NOT_PUBLIC_V6 = ("2001:db8::/32", "3fff::/20")


def normalize_cidr(text: str) -> str:
    """Return `text` as a network in CIDR form; a bare address becomes /32 or /128."""
    value = text.strip()
    if not value:
        raise UsageError("empty CIDR; pass an address like 203.0.113.7 or 203.0.113.0/24")
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise UsageError(
            f"{text!r} is not an IP address or CIDR; "
            "pass one like 203.0.113.7/32 or 2001:db8::1/128"
        ) from exc
    if str(network.network_address) != value.split("/")[0] and "/" in value:
        raise UsageError(f"{text!r} has host bits set; did you mean {network}?")
    return str(network)


def is_world_open(cidr: str) -> bool:
    """Tell whether `cidr` alone admits the whole Internet (0.0.0.0/0 or ::/0)."""
    return ipaddress.ip_network(cidr, strict=False).prefixlen == 0


def is_wide(cidr: str) -> bool:
    """Tell whether one source is wider than /24 (IPv4) or /56 (IPv6)."""
    network = ipaddress.ip_network(cidr, strict=False)
    widest = WIDEST_V4_PREFIX if network.version == 4 else WIDEST_V6_PREFIX
    return network.prefixlen < widest


def widest_allowed(cidr: str) -> str:
    """Return the threshold for `cidr`'s family, as `/24` or `/56`."""
    version = ipaddress.ip_network(cidr, strict=False).version
    return f"/{WIDEST_V4_PREFIX if version == 4 else WIDEST_V6_PREFIX}"


@dataclass(frozen=True)
class Coverage:
    """How much of the public address space a set of sources admits, per family."""

    public_v4: int
    public_v6: int
    total_v4: int
    total_v6: int

    @property
    def public_addresses(self) -> int:
        """Count the public addresses admitted, both families."""
        return self.public_v4 + self.public_v6

    @property
    def world_open(self) -> bool:
        """Every public IPv4 address, or every public IPv6 address, is admitted."""
        return self.public_v4 == self.total_v4 or self.public_v6 == self.total_v6

    def describe(self) -> str:
        """Say what is covered, e.g. `100% of public IPv4 (3,702,258,432 addresses)`."""
        parts = []
        for name, covered, total in (
            ("IPv4", self.public_v4, self.total_v4),
            ("IPv6", self.public_v6, self.total_v6),
        ):
            if covered:
                share = covered / total * 100
                text = f"{share:.0f}%" if share >= 1 else f"{share:.2g}%"
                noun = "address" if covered == 1 else "addresses"
                parts.append(f"{text} of public {name} ({covered:,} {noun})")
        return " and ".join(parts) or "no public address"


def _without(whole: Network, holes: Iterable[str]) -> tuple[Network, ...]:
    blocks = [whole]
    for text in holes:
        hole = ipaddress.ip_network(text)
        next_blocks: list[Network] = []
        for block in blocks:
            if block.version == hole.version and hole.subnet_of(block):  # type: ignore[arg-type]
                next_blocks.extend(block.address_exclude(hole))  # type: ignore[arg-type]
            else:
                next_blocks.append(block)
        blocks = next_blocks
    return tuple(blocks)


@cache
def public_space(version: int) -> tuple[Network, ...]:
    """Return the public address space of IPv4 (4) or IPv6 (6) as disjoint networks."""
    if version == 4:
        return _without(ipaddress.ip_network("0.0.0.0/0"), _NOT_PUBLIC_V4)
    return _without(ipaddress.ip_network(_PUBLIC_V6), _NOT_PUBLIC_V6)


@cache
def _public_spans(version: int) -> tuple[tuple[int, int], ...]:
    return tuple(
        sorted((int(n.network_address), int(n.broadcast_address)) for n in public_space(version))
    )


def _public_count(sources: Sequence[Network], version: int) -> int:
    # Two sorted lists of disjoint address ranges: one sweep sums their overlap.
    spans = sorted(
        (int(n.network_address), int(n.broadcast_address))
        for n in ipaddress.collapse_addresses(sources)  # type: ignore[type-var]
    )
    public = _public_spans(version)
    count = i = j = 0
    while i < len(spans) and j < len(public):
        low, high = max(spans[i][0], public[j][0]), min(spans[i][1], public[j][1])
        if low <= high:
            count += high - low + 1
        if spans[i][1] < public[j][1]:
            i += 1
        else:
            j += 1
    return count


@cache
def _public_total(version: int) -> int:
    return sum(n.num_addresses for n in public_space(version))


def coverage(cidrs: Iterable[str]) -> Coverage:
    """Measure how much public address space the union of `cidrs` admits."""
    networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return Coverage(
        public_v4=_public_count(v4, 4),
        public_v6=_public_count(v6, 6),
        total_v4=_public_total(4),
        total_v6=_public_total(6),
    )


def refuse_world_open(cidrs: Iterable[str], wide_ok: bool, flag: str, world_flag: str) -> None:
    """Refuse operator sources that together admit the whole Internet, or a wide one unless
    `wide_ok` (named by `flag`); `world_flag` says how the caller may open it anyway ('' never)."""
    sources = list(dict.fromkeys(cidrs))
    covered = coverage(sources)
    if covered.world_open:
        how = f"; add {world_flag} if you really mean it" if world_flag else ""
        raise UsageError(
            f"{', '.join(sources)} together would open the gateway to the whole Internet "
            f"({covered.describe()}); allow your own addresses instead{how}"
        )
    wide = [c for c in sources if is_wide(c)]
    if wide and not wide_ok:
        raise UsageError(
            f"{wide[0]} is wider than {widest_allowed(wide[0])} "
            f"({ipaddress.ip_network(wide[0]).num_addresses:,} addresses); allow narrower "
            f"ranges, or pass {flag} if the whole range really needs the gateway"
        )
