"""`bastion audit` against moto_server, whose answer to GetSerialConsoleAccessStatus is a page
botocore cannot read: the serial console is then unknown (no finding), never an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import boto3
import pytest

from benchmarks._moto import moto_server, seed_layout

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def test_the_seeds_layout_passes_the_audit_over_http() -> None:
    with mock.patch.dict(os.environ), moto_server():
        layout = seed_layout(boto3.client("ec2"))
        audited = subprocess.run(
            [str(BIN / "bastion"), "audit", "--app-sg", layout["app"], "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert audited.returncode == 0, audited.stderr
    assert "serial" not in audited.stderr
