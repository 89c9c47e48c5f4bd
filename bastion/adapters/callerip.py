"""Find the caller's public IP by asking several echo services; injectable for tests."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from bastion.domain.errors import CallerIpError

log = logging.getLogger(__name__)

# Independent operators, so one compromised or broken service cannot pick the answer alone.
ECHO_SERVICES: tuple[str, ...] = (
    "https://checkip.amazonaws.com",
    "https://api.ipify.org",
    "https://icanhazip.com",
)

Fetch = Callable[[str, float], str]
"""Return the body of an HTTPS GET of `url` within `timeout` seconds, or raise."""


def https_fetch(url: str, timeout: float) -> str:
    """GET `url` over verified HTTPS and return the body text."""
    import urllib.request

    if not url.startswith("https://"):
        raise ValueError(f"refusing non-HTTPS echo service {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "bastion"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read(256)
    return body.decode("ascii", "replace")


def detect_caller_cidr(
    fetch: Fetch = https_fetch,
    services: Sequence[str] = ECHO_SERVICES,
    timeout: float = 4.0,
) -> str:
    """Ask every echo service at once and return the majority answer as a /32 or /128."""

    def ask(url: str) -> tuple[str, str | None, str | None]:
        try:
            raw = fetch(url, timeout).strip()
            return url, str(ipaddress.ip_address(raw)), None
        except Exception as exc:  # any failure of one service only loses its vote
            return url, None, f"{type(exc).__name__}: {exc}"[:80]

    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        answers = list(pool.map(ask, services))
    votes = Counter(ip for _, ip, _ in answers if ip is not None)
    failures = [f"{url} ({err})" for url, ip, err in answers if ip is None]
    for url, ip, err in answers:
        log.debug("caller IP from %s: %s", url, ip or err)
    if not votes:
        raise CallerIpError(
            "could not detect your public IP: every echo service failed; "
            "pass --allow YOUR_IP/32 instead"
        )
    best, count = votes.most_common(1)[0]
    needed = max(2, len(services) // 2 + 1) if len(services) > 1 else 1
    if count < needed:
        seen = ", ".join(f"{ip} x{n}" for ip, n in votes.most_common())
        detail = f"; failed: {len(failures)}" if failures else ""
        raise CallerIpError(
            f"echo services disagree or too few answered about your public IP ({seen}{detail}); "
            "pass --allow YOUR_IP/32 instead"
        )
    address = ipaddress.ip_address(best)
    return f"{address}/{address.max_prefixlen}"
