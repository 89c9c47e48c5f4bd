"""How fast `burn` contains, as the operator lives it: from `bastion burn`'s process start.

Against moto_server (every call crosses HTTP like a real one): `bastion up` makes a gateway (no
SSH check) with sg-app trusting it; a poller in another process, already warm, watches sg-app
and the gateway's interfaces; then `bastion burn` starts. Figures per run, medians printed:
- seen contained: process start until the poller saw sg-app no longer admit the gateway and
  every interface in the isolation group;
- the report's own time to contain (also from process start) and its phases;
- reads before the first containment call, and calls in the containment phase;
- the floor: a process that only imports boto3 and makes an EC2 client.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._moto import moto_server, seed_layout

RUNS = 5
BIN = Path(sys.executable).parent
POLLER = r"""
import sys, time, boto3
app, instance = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2")
def contained():
    rules = ec2.describe_security_groups(GroupIds=[app])["SecurityGroups"][0]["IpPermissions"]
    trusted = [p for p in rules if p.get("FromPort") == 22 and p.get("UserIdGroupPairs")]
    reservations = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
    interfaces = reservations[0]["Instances"][0]["NetworkInterfaces"]
    names = {g["GroupName"] for i in interfaces for g in i["Groups"]}
    return not trusted and names and all(n.endswith("-isolate") for n in names)
contained()
print("ready", flush=True)
while not contained():
    time.sleep(0.005)
print(time.time(), flush=True)
"""
FLOOR = "import boto3; boto3.client('ec2')"


def _bastion(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bastion"), *args], capture_output=True, text=True, check=True, timeout=300
    )


def one_burn(app_sg: str) -> dict[str, Any]:
    """Make a gateway, burn it with a poller watching, and return the figures of that burn."""
    import boto3

    status = json.loads(_bastion("up", "--app-sg", app_sg, "--no-verify", "--json").stdout)
    instance = status["status"]["instance"]["id"]
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, app_sg, instance], stdout=subprocess.PIPE, text=True
    )
    assert poller.stdout is not None
    assert poller.stdout.readline().strip() == "ready"
    start = time.time()
    burnt = subprocess.run(
        [
            str(BIN / "bastion"),
            "burn",
            "--app-sg",
            app_sg,
            "--reason",
            "bench",
            "--no-relaunch",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    total = time.time() - start
    seen = float(poller.stdout.readline()) - start
    poller.wait(timeout=10)
    incident = json.loads(burnt.stdout)["incident"]
    calls = [c["operation"] for c in incident["api_calls"]]
    first_mutation = next(i for i, op in enumerate(calls) if not op.startswith("Describe"))
    contain_calls = [c for c in incident["api_calls"] if c["step"].startswith("contain_")]
    del boto3
    return {
        "seen_contained_s": seen,
        "report_contained_s": incident["timings"]["time_to_contain_s"],
        "startup_s": incident["timings"].get("startup_s", float("nan")),
        "reads_before_containment": first_mutation,
        "containment_calls": len(contain_calls),
        "total_s": total,
    }


def reads_before_first_containment_call(app_sg: str) -> int:
    """Burn in-process with call events; count the reads answered before a change began.

    The report lists calls as they end; calls made at once end in any order, so the first
    containment call's start is taken from botocore's `before-call` event instead.
    """
    from bastion.adapters.config import load_settings
    from bastion.domain.calls import is_mutating
    from bastion.usecases.burn import burn
    from bastion.usecases.up import up
    from bastion.wiring import Deps

    settings = load_settings({"app_sg": app_sg, "allow": ("203.0.113.7/32",), "verify": False})
    up(settings, Deps())
    answered: list[str] = []
    seen: list[int] = []

    def attach(ec2: Any) -> None:
        def started(model: Any, **_: Any) -> None:
            if is_mutating(model.name) and not seen:
                seen.append(len(answered))

        ec2.ec2.meta.events.register("before-call.ec2.*", started)
        ec2.ec2.meta.events.register(
            "after-call.ec2.*", lambda model, **_: answered.append(model.name)
        )

    burn(settings, Deps(on_ec2=attach), reason="bench", relaunch=False)
    return seen[0]


def floor_s() -> float:
    """Return the seconds a process needs to import boto3 and make an EC2 client."""
    start = time.time()
    subprocess.run([sys.executable, "-c", FLOOR], check=True, env=os.environ)
    return time.time() - start


def main() -> None:
    """Print the figures of a few burns and their medians."""
    with moto_server():
        import boto3

        os.environ["BASTION_ALLOW"] = "203.0.113.7/32"
        app_sg = seed_layout(boto3.client("ec2"))["app"]
        runs, floors = [], []
        for _ in range(RUNS):  # interleaved, so a load change hits both alike
            runs.append(one_burn(app_sg))
            floors.append(floor_s())
        started_after = reads_before_first_containment_call(app_sg)
    floor = statistics.median(floors)
    print(f"burn against moto_server, {RUNS} runs (medians), timed from process start")
    print(f"{'figure':<52} {'value':>10}")
    rows: list[tuple[str, Any]] = [
        ("seconds until a poller saw it contained", "seen_contained_s"),
        ("seconds to contain, by the report", "report_contained_s"),
        ("  of which process start until burn began", "startup_s"),
        ("reads listed before the first containment call", "reads_before_containment"),
        ("calls in the containment phase", "containment_calls"),
        ("seconds in total (contain, preserve, destroy)", "total_s"),
    ]
    for label, key in rows:
        value = statistics.median(r[key] for r in runs)
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{label:<52} {shown:>10}")
    print(f"{'reads answered when the first containment call began':<52} {started_after:>10}")
    seen = statistics.median(r["seen_contained_s"] for r in runs)
    print(f"{'floor: python -c import boto3; boto3.client(ec2)':<52} {floor:>10.3f}")
    print(f"{'seen contained / floor (goal <= 1.5)':<52} {seen / floor:>10.2f}")


if __name__ == "__main__":
    main()
