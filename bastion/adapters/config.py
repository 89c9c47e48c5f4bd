"""Read the settings' sources: the config file and the BASTION_* environment (merged in domain)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.domain.errors import UsageError
from bastion.domain.settings import Settings, merge_settings


def _default_data_dir(env: Mapping[str, str]) -> Path:
    if env.get("BASTION_HOME"):
        return Path(env["BASTION_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "bastion"


def _config_file(env: Mapping[str, str]) -> Path:
    if env.get("BASTION_CONFIG"):
        return Path(env["BASTION_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "bastion" / "config.toml"


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers and validate the result."""
    env = os.environ if env is None else env
    config_path = _config_file(env)
    document = None
    if config_path.is_file():
        try:
            document = tomllib.loads(config_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{config_path} is not valid TOML: {exc}; fix or remove it") from exc
    return merge_settings(flags, env, _default_data_dir(env), document, str(config_path))
