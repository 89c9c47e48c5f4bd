"""`status` and `ssh-config` with 1, 100 and 1,000 app instances and 10 gateways in the account.

Against moto_server with the seed's layout: ten gateways made by `up` (verify off), then app
instances added to sg-app, each with its own Name tag. The point: calls grow with result pages,
not with instances (a call per instance would show as a column that tracks the size).
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

SIZES = (1, 100, 1000)
GATEWAYS = 10


def measured(run: Callable[[Any], object]) -> tuple[Counter[str], float]:
    """Run one use case with a fresh call counter; return the calls by operation and seconds."""
    from bastion.wiring import Deps

    calls: Counter[str] = Counter()
    deps = Deps(on_ec2=lambda ec2: ec2.on_call(lambda model, **_: calls.update([model.name])))
    start = time.perf_counter()
    run(deps)
    return calls, time.perf_counter() - start


def add_app_instances(client: Any, app_sg: str, image: str, count: int, first: int) -> None:
    """Launch `count` instances in sg-app named app-FIRST ... (one run, then a tag each)."""
    while count > 0:
        batch = min(count, 500)
        launched = client.run_instances(
            ImageId=image, MinCount=batch, MaxCount=batch, SecurityGroupIds=[app_sg]
        )["Instances"]
        for offset, instance in enumerate(launched):
            client.create_tags(
                Resources=[instance["InstanceId"]],
                Tags=[{"Key": "Name", "Value": f"app-{first + offset}"}],
            )
        first += batch
        count -= batch


def main() -> None:
    """Print calls and time per size for both commands."""
    rows: list[tuple[str, int, Counter[str], float]] = []
    with moto_server():
        import boto3

        from bastion.adapters.config import load_settings
        from bastion.usecases.access import ssh_config
        from bastion.usecases.status import status
        from bastion.usecases.up import up
        from bastion.wiring import Deps

        client = boto3.client("ec2")
        app_sg = seed_layout(client)["app"]
        image = client.describe_images()["Images"][0]["ImageId"]
        for n in range(GATEWAYS):
            name = "default" if n == 0 else f"gw{n}"
            flags = {"name": name, "allow": ("203.0.113.7/32",), "verify": False}
            up(load_settings({**flags, "app_sg": app_sg} if n == 0 else flags), Deps())
        settings = load_settings({"app_sg": app_sg, "allow": ("203.0.113.7/32",)})
        have = 0
        for size in SIZES:
            add_app_instances(client, app_sg, image, size - have, have + 1)
            have = size
            for label, use_case in (
                ("status", lambda d: status(settings, d)),
                ("ssh-config", lambda d: ssh_config(settings, d)),
            ):
                calls, seconds = measured(use_case)
                rows.append((label, size, calls, seconds))
    print(
        f"scale against moto_server: {GATEWAYS} gateways in the account, N app instances in sg-app"
    )
    print(f"{'command':<12} {'N':>6} {'calls':>6} {'DescribeInstances':>18} {'seconds':>9}")
    for label, size, calls, seconds in rows:
        total = sum(calls.values())
        described = calls["DescribeInstances"]
        print(f"{label:<12} {size:>6} {total:>6} {described:>18} {seconds:>9.3f}")
    for label, size, calls, _ in rows:
        if size == SIZES[-1]:
            print(
                f"{label} at N={size}: " + ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
            )


if __name__ == "__main__":
    main()
