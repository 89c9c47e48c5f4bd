"""How many AWS calls each command makes, how many of them change something, and how long it takes.

Runs against moto_server (every call crosses HTTP) with the seed's layout; `verify` is off, so
no SSH: the figures are bastion's own work plus the EC2 round trips. `rotate` is left out: it is
SSH-bound (every step goes through the gateway's key-management channel, which needs a real
sshd); its EC2 side is one ImportKeyPair, CreateTags and one DeleteKeyPair around describes.
Calls are counted through `Ec2.on_call` (botocore `before-call`, so a retried call counts once).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._moto import moto_server, seed_layout


def measured(run: Callable[[Any], object]) -> dict[str, Any]:
    """Run one command with a fresh call counter; return its calls and wall time."""
    from bastion.domain.calls import is_mutating
    from bastion.wiring import Deps

    calls: Counter[str] = Counter()
    deps = Deps(on_ec2=lambda ec2: ec2.on_call(lambda model, **_: calls.update([model.name])))
    start = time.perf_counter()
    run(deps)
    seconds = time.perf_counter() - start
    mutating = sum(n for op, n in calls.items() if is_mutating(op))
    return {"total": sum(calls.values()), "mutating": mutating, "seconds": seconds}


def main() -> None:
    """Print one row per command."""
    with moto_server():
        import boto3

        from bastion.adapters.config import load_settings
        from bastion.usecases.burn import burn
        from bastion.usecases.down import down
        from bastion.usecases.status import status
        from bastion.usecases.up import up

        app_sg = seed_layout(boto3.client("ec2"))["app"]
        settings = load_settings({"app_sg": app_sg, "allow": ("203.0.113.7/32",), "verify": False})
        rows = [
            ("up (fresh)", measured(lambda d: up(settings, d))),
            ("up (no change)", measured(lambda d: up(settings, d))),
            ("status", measured(lambda d: status(settings, d))),
            ("burn (with relaunch)", measured(lambda d: burn(settings, d, reason="benchmark"))),
            ("down", measured(lambda d: down(settings, d))),
        ]
    print("API economy against moto_server (EC2 calls; verify off, no SSH)")
    print(f"{'command':<24} {'mutating':>9} {'total':>7} {'seconds':>9}")
    for label, row in rows:
        print(f"{label:<24} {row['mutating']:>9} {row['total']:>7} {row['seconds']:>9.3f}")
    print("rotate: not measured (SSH-bound; EC2 side: ImportKeyPair, CreateTags, DeleteKeyPair)")


if __name__ == "__main__":
    main()
