"""`status` lists the gateway's login keys over the admin channel and flags unknown ones."""

from __future__ import annotations

from bastion.adapters.keys import fingerprint
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, FakeIp, FakeProbe, make_settings

THIEF_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH4mF0XvH0pSxN5y3XvX6b2m8u7WqXj6Jk0e3Yz9bQx thief"
)


def own_listing() -> str:
    login = (make_settings().gateway_dir("us-east-1") / "login_ed25519.pub").read_text().strip()
    return f"restrict,port-forwarding {login}\n"


def test_status_lists_the_login_keys_and_flags_one_bastion_did_not_put_there(
    deps: Deps, probe: FakeProbe
) -> None:
    up(make_settings(), deps)
    probe.login_listing = own_listing() + f"restrict,port-forwarding {THIEF_PUBLIC}\n"
    data = status(make_settings(), deps)
    keys = data["login_keys"]
    assert keys["checked"] is True
    assert [(k["known"], k["comment"]) for k in keys["keys"]] == [
        (True, "bastion-default-login"),
        (False, "thief"),
    ]
    assert keys["unknown"] == [fingerprint(THIEF_PUBLIC)]
    assert any("bastion did not put there" in d and "bastion rotate" in d for d in data["drift"])
    assert probe.keyctl_requests == ["list"]


def test_status_with_only_its_own_keys_reports_no_drift(deps: Deps, probe: FakeProbe) -> None:
    up(make_settings(), deps)
    data = status(make_settings(), deps)
    assert data["login_keys"]["checked"] and data["login_keys"]["unknown"] == []
    assert data["drift"] == []


def test_an_unreachable_gateway_is_said_and_status_still_answers(
    deps: Deps, probe: FakeProbe
) -> None:
    up(make_settings(), deps)
    probe.reachable = False
    data = status(make_settings(), deps)
    assert data["exists"] is True
    assert data["login_keys"]["checked"] is False
    assert "not reachable" in data["login_keys"]["reason"]
    assert probe.keyctl_requests == []


def test_a_caller_not_allowed_is_not_made_to_wait_for_the_gateway(
    deps: Deps, probe: FakeProbe, fake_ip: FakeIp, counter: CallCounter
) -> None:
    up(make_settings(), deps)
    probe.calls.clear()
    fake_ip.address = "198.51.100.99"
    counter.reset()
    data = status(make_settings(), deps)
    assert data["caller_allowed"] is False
    assert data["login_keys"]["checked"] is False and "not allowed" in data["login_keys"]["reason"]
    assert probe.calls == [] and probe.keyctl_requests == []
    assert counter.mutating == {}
