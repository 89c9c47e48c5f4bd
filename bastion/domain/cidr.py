"""CIDRs as people type them: normalized, and whether one admits the whole Internet."""

from __future__ import annotations

import ipaddress

from bastion.domain.errors import UsageError


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
    """Tell whether `cidr` admits the whole Internet (0.0.0.0/0 or ::/0)."""
    return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
