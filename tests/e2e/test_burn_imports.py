"""`burn` contains before it loads anything containment does not need (issue 15).

The installed CLI runs against moto_server with an import watcher in front of it; every
top-level module's first import is timed and compared with the moment the incident record
says containment ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from unittest import mock

import boto3
import pytest

from benchmarks._moto import moto_server, seed_layout

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
WATCHED = (
    "import importlib.abc, sys, time\n"
    "log = open(sys.argv[1], 'w', buffering=1)\n"
    "class Watch(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if '.' not in name and name not in sys.modules:\n"
    "            log.write(f'{time.time()} {name}\\n')\n"
    "sys.meta_path.insert(0, Watch())\n"
    "sys.argv = ['bastion', *sys.argv[2:]]\n"
    "from bastion.cli import main\n"
    "main()\n"
)
HEAVY = {"pydantic", "jinja2", "paramiko", "rich", "yaml", "nacl", "bcrypt"}


def test_burn_loads_no_heavy_module_before_it_has_contained(tmp_path: Path) -> None:
    with mock.patch.dict(os.environ), moto_server():
        os.environ["BASTION_ALLOW"] = "203.0.113.7/32"
        app_sg = seed_layout(boto3.client("ec2"))["app"]
        bastion = str(BIN / "bastion")
        up = [bastion, "up", "--app-sg", app_sg, "--no-verify", "--json"]
        subprocess.run(up, check=True, capture_output=True, timeout=120)
        imports = tmp_path / "imports.log"
        burn = ["burn", "--app-sg", app_sg, "--reason", "t", "--no-relaunch", "--json"]
        done = subprocess.run(
            [sys.executable, "-c", WATCHED, str(imports), *burn],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    contained = datetime.fromisoformat(
        json.loads(done.stdout)["incident"]["phase_times"]["contained"]
    )
    first_import = {}
    for line in imports.read_text().splitlines():
        when, name = line.split()
        first_import.setdefault(name, float(when))
    assert "boto3" in first_import  # the watcher saw the imports
    early = sorted(n for n in HEAVY if first_import.get(n, float("inf")) < contained.timestamp())
    assert not early, f"imported before containment ended: {early}"
