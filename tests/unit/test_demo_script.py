"""scripts/demo prints no escape codes when its output is not a terminal."""

from __future__ import annotations

import subprocess
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"


def test_the_demo_headings_have_no_ansi_codes_when_piped() -> None:
    lines = DEMO.read_text().splitlines()
    # The heading helper and what it needs, run alone with stderr on a pipe.
    helper = [line for line in lines if "BOLD=" in line or line.startswith("say()")]
    result = subprocess.run(
        ["bash", "-c", "\n".join([*helper, "say 'bastion status'"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "== bastion status" in result.stderr
    assert "\x1b" not in result.stderr
