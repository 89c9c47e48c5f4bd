"""Settings layers: defaults < config file < BASTION_* < flags, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.adapters.config import load_settings
from bastion.domain.errors import UsageError


def test_layers_override_in_order(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('port = 2222\ninstance-type = "t3.small"\n[gateway.prod]\nport = 4444\n')
    env = {"BASTION_CONFIG": str(config), "BASTION_INSTANCE_TYPE": "t3.large"}
    assert load_settings({}, env).port == 2222
    assert load_settings({"name": "prod"}, env).port == 4444
    assert load_settings({}, env).instance_type == "t3.large"
    assert load_settings({"port": 5555}, env).port == 5555


def test_allow_from_environment_is_comma_separated() -> None:
    settings = load_settings({}, {"BASTION_ALLOW": "192.0.2.1/32, 198.51.100.0/24"})
    assert settings.allow == ("192.0.2.1/32", "198.51.100.0/24")


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"port": 1023}, "port 1023"),
        ({"name": "UPPER"}, "gateway name"),
        ({"subnet": "subnet-xyz"}, "subnet"),
        ({"reach": "host:99999"}, "--reach"),
        ({"instance_type": "huge"}, "instance type"),
    ],
)
def test_invalid_settings_are_usage_errors(flags: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        load_settings(flags, {})


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(UsageError, match="unknown setting 'prot'"):
        load_settings({}, {"BASTION_CONFIG": str(config)})


def test_non_numeric_port_from_environment_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="BASTION_PORT"):
        load_settings({}, {"BASTION_PORT": "ssh"})


def test_a_negative_lock_wait_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="lock_wait"):
        load_settings({}, env={"BASTION_LOCK_WAIT": "-1"})


def test_the_system_clock_knows_when_this_process_started() -> None:
    from datetime import timedelta

    from bastion.domain.clock import SystemClock

    clock = SystemClock()
    started = clock.process_started_at()
    assert started <= clock.now()
    assert clock.now() - started < timedelta(hours=6)  # this test process, not the boot
