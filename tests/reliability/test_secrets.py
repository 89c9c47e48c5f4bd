"""No private key material in output, -vv logs, journals or reports; private files private."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from typer.testing import CliRunner

from bastion.domain.errors import ExitStatus
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter
from tests.cli.conftest import invoke

SECRET_MARK = "PRIVATE KEY"
KEY_FILES = {"login_ed25519", "admin_ed25519"}


def test_up_and_burn_at_debug_level_never_print_or_journal_a_private_key(
    runner: CliRunner, deps: Deps, app_sg: str, isolated_environment: Path
) -> None:
    outputs = []
    for args in (
        ["-vv", "up", "--app-sg", app_sg, "--allow", "203.0.113.7/32"],
        ["-vv", "burn", "--app-sg", app_sg, "--reason", "test"],
        ["-vv", "status", "--json"],
    ):
        result = invoke(runner, deps, *args)
        assert result.exit_code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert any("DEBUG" in o for o in outputs), "-vv logged nothing: the check would prove nothing"
    for output in outputs:
        assert SECRET_MARK not in output
    data = isolated_environment / ".local" / "share" / "bastion"
    files = [p for p in data.rglob("*") if p.is_file()]
    records = [p for p in files if p.suffix in {".jsonl", ".json", ".md"}]
    assert any(p.name == "report.md" for p in records) and any(
        p.name == "journal.jsonl" for p in records
    )
    for record in records:
        assert SECRET_MARK not in record.read_text(), record
    keys = [p for p in files if SECRET_MARK in p.read_text(errors="replace")]
    assert {p.name for p in keys} <= KEY_FILES | {p.name for p in keys if "relaunch" in p.parts}
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    gateway = data / "us-east-1" / "default"
    assert stat.S_IMODE(gateway.stat().st_mode) == 0o700


def test_every_folder_under_the_gateway_folder_is_0700(
    runner: CliRunner, deps: Deps, app_sg: str, isolated_environment: Path
) -> None:
    assert (
        invoke(runner, deps, "up", "--app-sg", app_sg, "--allow", "203.0.113.7/32").exit_code == 0
    )
    assert invoke(runner, deps, "burn", "--app-sg", app_sg, "--reason", "t").exit_code == 0
    gateway = isolated_environment / ".local" / "share" / "bastion" / "us-east-1" / "default"
    loose = [
        f"{p} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in [gateway, *gateway.rglob("*")]
        if p.is_dir() and stat.S_IMODE(p.stat().st_mode) != 0o700
    ]
    assert not loose, loose


def test_a_login_key_open_to_others_is_refused_with_a_chmod_hint(
    runner: CliRunner, deps: Deps, counter: CallCounter, isolated_environment: Path
) -> None:
    folder = isolated_environment / ".local" / "share" / "bastion" / "us-east-1" / "default"
    assert invoke(runner, deps, "up", "--allow", "203.0.113.7/32").exit_code == 0
    key = folder / "login_ed25519"
    key.chmod(0o644)
    counter.reset()
    result = invoke(runner, deps, "up", "--allow", "203.0.113.7/32")
    assert result.exit_code == ExitStatus.ERROR, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("bastion: error:")]
    assert len(errors) == 1 and f"chmod 600 {key}" in errors[0], result.stderr
    assert counter.mutating == {}


def test_botocore_at_the_highest_verbosity_never_logs_the_user_data(
    runner: CliRunner, deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    result = invoke(runner, deps, "-vvv", "up", "--app-sg", app_sg, "--allow", "203.0.113.7/32")
    assert result.exit_code == 0, result.stderr
    assert "botocore" in result.stderr, "botocore logged nothing: the check would prove nothing"
    logging.getLogger("botocore").setLevel(logging.WARNING)  # the runner's stderr is closed now
    instance = ec2_client.describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"]
    encoded = ec2_client.describe_instance_attribute(InstanceId=instance, Attribute="userData")[
        "UserData"
    ]["Value"]
    output = result.stdout + result.stderr
    # ImportKeyPair sends the login public key, which EC2 serves to anyone allowed to describe
    # key pairs: a stretch of the user data inside a public key line may coincide with it.
    decoded = base64.b64decode(encoded)
    public = [line for line in decoded.split(b"\n") if b"ssh-ed25519 " in line]
    for start in range(
        0, len(encoded) - 40, 200
    ):  # no stretch of it, in any encoding botocore uses
        chunk = encoded[start : start + 40]
        plain = decoded[start // 4 * 3 : (start + 40) // 4 * 3]
        if any(plain in line for line in public):
            continue
        assert chunk not in output and quote(chunk, safe="") not in output
    assert "#cloud-config" not in output and SECRET_MARK not in output
    assert "'UserData': <redacted>" in output  # the request was logged, scrubbed


def test_the_journal_is_private_under_an_open_umask(
    runner: CliRunner, deps: Deps, app_sg: str, isolated_environment: Path
) -> None:
    old = os.umask(0)
    try:
        result = invoke(runner, deps, "up", "--app-sg", app_sg, "--allow", "203.0.113.7/32")
        assert result.exit_code == 0, result.stderr
        assert invoke(runner, deps, "burn", "--app-sg", app_sg, "--reason", "t").exit_code == 0
    finally:
        os.umask(old)
    data = isolated_environment / ".local" / "share" / "bastion"
    journals = list(data.rglob("journal.jsonl"))
    assert len(journals) >= 2  # the gateway's and the incident's
    for journal in journals:
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600, journal
