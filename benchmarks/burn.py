"""How fast `burn` contains: first containment call, seconds to contained, share of the total.

Runs against moto_server (so every call crosses HTTP like a real one) with a gateway made by
`up`, an Elastic IP on it, and sg-app trusting it; the gateway is not reached over SSH
(`verify` off), so the figures are bastion's own work plus the API round trips.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._moto import moto_server, seed_layout

RUNS = 3


def one_burn(app_sg: str) -> dict[str, Any]:
    """Make a gateway, burn it, and return the figures of that burn."""
    import boto3

    from bastion.adapters.config import load_settings
    from bastion.domain.calls import is_mutating
    from bastion.domain.incident import CONTAINMENT_OPERATIONS as CONTAINMENT
    from bastion.usecases.burn import burn
    from bastion.usecases.up import up
    from bastion.wiring import Deps

    settings = load_settings({"app_sg": app_sg, "allow": ("203.0.113.7/32",), "verify": False})
    mutating: list[str] = []
    deps = Deps(
        on_ec2=lambda ec2: ec2.on_call(
            lambda model, **_: mutating.append(model.name) if is_mutating(model.name) else None
        )
    )
    status = up(settings, deps).status or {}
    client = boto3.client("ec2")
    allocation = client.allocate_address(Domain="vpc")["AllocationId"]
    client.associate_address(AllocationId=allocation, InstanceId=status["instance"]["id"])
    mutating.clear()

    start = time.perf_counter()
    result = burn(settings, deps, reason="benchmark")
    total = time.perf_counter() - start
    contained = result.incident.timings["time_to_contain_s"]
    first_other = next((i for i, op in enumerate(mutating) if op not in CONTAINMENT), None)
    return {
        "first_containment_index": next(i for i, op in enumerate(mutating) if op in CONTAINMENT),
        "containment_calls_before_any_other": first_other,
        "mutating_calls": len(mutating),
        "contained_s": contained,
        "total_s": total,
        "share": contained / total,
    }


def main() -> None:
    """Print the figures of a few burns and their medians."""
    with moto_server():
        import boto3

        app_sg = seed_layout(boto3.client("ec2"))["app"]
        runs = [one_burn(app_sg) for _ in range(RUNS)]
    print(f"burn against moto_server, {RUNS} runs (medians)")
    print(f"{'figure':<44} {'value':>10}")
    rows = [
        ("index of first containment call (mutating)", runs[0]["first_containment_index"]),
        (
            "containment calls before any other change",
            runs[0]["containment_calls_before_any_other"],
        ),
        ("mutating calls in the whole burn", runs[0]["mutating_calls"]),
        ("seconds from start to contained", statistics.median(r["contained_s"] for r in runs)),
        ("seconds in total (with relaunch)", statistics.median(r["total_s"] for r in runs)),
        ("share of total before contained", statistics.median(r["share"] for r in runs)),
    ]
    for label, value in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{label:<44} {shown:>10}")


if __name__ == "__main__":
    main()
