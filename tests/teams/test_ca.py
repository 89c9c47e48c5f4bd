"""The gateway's CA in KMS (moto): made once by `up --certificates`, never by a dry run."""

from __future__ import annotations

from typing import Any

import boto3
from typer.testing import CliRunner

from bastion.wiring import Deps


def invoke(deps: Deps, *args: str) -> Any:
    from bastion.cli import app

    return CliRunner().invoke(app, list(args), obj=deps)


def ca_keys() -> list[str]:
    kms = boto3.client("kms", region_name="us-east-1")
    return [a["TargetKeyId"] for a in kms.list_aliases()["Aliases"] if "bastion" in a["AliasName"]]


def test_a_dry_run_makes_no_ca_and_up_makes_exactly_one(deps: Deps) -> None:
    dry = invoke(deps, "up", "--certificates", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would create the KMS CA" in dry.output and ca_keys() == []
    for _ in range(2):
        made = invoke(deps, "up", "--certificates")
        assert made.exit_code == 0, made.output
    (key_id,) = ca_keys()
    spec = boto3.client("kms", region_name="us-east-1").describe_key(KeyId=key_id)["KeyMetadata"]
    assert (spec["KeySpec"], spec["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")


def test_cert_without_a_ca_says_how_to_make_one(deps: Deps, tmp_path: Any) -> None:
    assert invoke(deps, "up").exit_code == 0
    key = tmp_path / "id_ed25519.pub"
    key.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlR3Ld4pmE4H8Qp0u7m7Jq1Xv0O2Yp2r3b9Xq0Xq0Xq\n"
    )
    refused = invoke(deps, "cert", "--key", str(key))
    assert refused.exit_code == 3, refused.output
    assert "bastion up --certificates" in refused.output
    assert len([line for line in refused.output.splitlines() if line]) == 1
