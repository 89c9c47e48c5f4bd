"""Several operators on one gateway, and what `status` finds without being told."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.adapters.aws.client import Ec2
from bastion.adapters.config import load_settings
from bastion.domain.errors import ConflictError
from bastion.usecases.access import ssh_config
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import make_settings

BOB = "arn:aws:iam::123456789012:user/bob"


@pytest.fixture
def bob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, str]]:
    """Become a second operator: another caller, a data folder without the gateway's keys."""

    def become() -> dict[str, str]:
        monkeypatch.setattr(Ec2, "caller_arn", lambda self: BOB)
        return {"BASTION_HOME": str(tmp_path / "bob")}

    return become


def test_a_second_operators_up_does_not_advise_taking_down_someone_elses_gateway(
    deps: Deps, app_sg: str, bob: Callable[[], dict[str, str]]
) -> None:
    up(make_settings(app_sg=app_sg), deps)

    with pytest.raises(ConflictError) as error:
        up(load_settings({"app_sg": app_sg}, env=bob()), deps)

    message = error.value.message
    assert "is run by moto" in message
    assert "bastion down" not in message and "bastion burn" not in message


def test_a_second_operators_ssh_config_does_not_advise_burning_the_gateway(
    deps: Deps, app_sg: str, bob: Callable[[], dict[str, str]]
) -> None:
    up(make_settings(app_sg=app_sg), deps)

    with pytest.raises(ConflictError) as error:
        ssh_config(load_settings({}, env=bob()), deps)

    message = error.value.message
    assert "is run by moto" in message
    assert "burn" not in message and "down" not in message


def test_the_operator_who_made_it_is_still_told_how_to_start_over(
    deps: Deps, app_sg: str, tmp_path: Path
) -> None:
    up(make_settings(app_sg=app_sg), deps)

    with pytest.raises(ConflictError, match="bastion down --name default"):
        up(load_settings({"app_sg": app_sg}, env={"BASTION_HOME": str(tmp_path)}), deps)


def test_status_without_app_sg_finds_the_app_group_from_the_gateways_rules(
    deps: Deps, app_sg: str, ec2_client: Any
) -> None:
    up(make_settings(app_sg="sg-app"), deps)

    report = status(make_settings(), deps)

    assert report["app_group"] == app_sg
    assert "app group SSH sources" not in str(report["drift"])
    assert any(s["is_gateway"] for s in report["app_ssh_sources"])
