"""Start-up time of the CLI against `aws --version`, measured in the same run.

Median wall time over RUNS runs of `bastion --help`, `bastion status --help` and, as the
reference, `aws --version` (awscli from PyPI; `scripts/bench` installs it into `.venv-bench`).
The goal is `bastion --help` <= 0.5 x `aws --version`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
GOAL = 0.5


def median_seconds(command: list[str], runs: int = RUNS) -> float:
    """Return the median wall time of `command` over `runs` runs (after one warm-up run)."""
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def aws_binary() -> str | None:
    """Return the `aws` to compare with: $BENCH_AWS, else the one on PATH."""
    return os.environ.get("BENCH_AWS") or shutil.which("aws")


def main() -> None:
    """Print one row per command and the ratio to `aws --version`."""
    bastion = str(Path(sys.executable).parent / "bastion")
    rows: list[tuple[str, float]] = []
    for command in ([bastion, "--help"], [bastion, "status", "--help"]):
        rows.append((" ".join(["bastion", *command[1:]]), median_seconds(command)))
    aws = aws_binary()
    if aws:
        rows.append(("aws --version", median_seconds([aws, "--version"])))
    print(f"start-up, median of {RUNS} runs")
    print(f"{'command':<44} {'median s':>10}")
    for label, seconds in rows:
        print(f"{label:<44} {seconds:>10.3f}")
    if not aws:
        print("aws not found (set BENCH_AWS or run scripts/bench): no ratio")
        return
    ratio = rows[0][1] / rows[2][1]
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"{'ratio bastion --help / aws --version':<44} {ratio:>10.2f}")
    print(f"{'goal <= ' + str(GOAL):<44} {verdict:>10}")


if __name__ == "__main__":
    main()
