"""cloud-init itself accepts the user data bastion renders, for every image family."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bastion.adapters.render import IMAGE_FAMILIES, SshdParams

if TYPE_CHECKING:
    from conftest import GatewayKeys


@pytest.mark.parametrize("image_family", IMAGE_FAMILIES)
def test_cloud_init_schema_accepts_the_user_data(
    cloud_init: str,
    keys: GatewayKeys,
    tmp_path: Path,
    image_family: str,
    user_data_for: Callable[..., str],
) -> None:
    path = tmp_path / "user-data"
    path.write_text(
        user_data_for(keys, image_family, SshdParams(port=2222, permit_open=("10.0.1.5:22",)))
    )
    result = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
