"""Start-up time of the CLI: median wall time of `bastion --help` over repeated runs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10


def median_seconds(command: list[str], runs: int = RUNS) -> float:
    """Return the median wall time of `command` over `runs` runs."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    """Print one row per command."""
    bastion = str(Path(sys.executable).parent / "bastion")
    print(f"{'command':<28} {'median s':>9}")
    for command in ([bastion, "--help"], [bastion, "status", "--help"]):
        print(f"{' '.join(['bastion', *command[1:]]):<28} {median_seconds(command):>9.3f}")


if __name__ == "__main__":
    main()
