"""The host key is the instance's own: pinned from its console output, never from user data.

moto answers GetConsoleOutput with fixed text; `FakeConsoles` (tests/consoles.py) answers it as
a booted instance would, through bastion's real EC2 adapter.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bastion.adapters.keys import fingerprint
from bastion.domain.errors import HostKeyMismatchError, TimeoutExpired
from bastion.domain.tags import TAG_HOST_KEY_FINGERPRINT
from bastion.testing.console import host_key_block
from bastion.usecases.burn import burn
from bastion.usecases.rotate import relaunch_gateway
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import FakeProbe, make_settings
from tests.consoles import FakeConsoles


def every_user_data(ec2_client: Any) -> dict[str, str]:
    """Return the decoded user data of every instance moto ever ran (terminated ones too)."""
    found = {}
    for reservation in ec2_client.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            iid = instance["InstanceId"]
            value = ec2_client.describe_instance_attribute(InstanceId=iid, Attribute="userData")
            encoded = (value.get("UserData") or {}).get("Value", "")
            found[iid] = base64.b64decode(encoded).decode() if encoded else ""
    return found


def tags_of(ec2_client: Any, instance_id: str) -> dict[str, str]:
    instance = ec2_client.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def pinned(settings: Any) -> str:
    return (settings.gateway_dir("us-east-1") / "host_ed25519.pub").read_text().strip()


def test_up_pins_the_key_the_console_shows_and_tags_its_fingerprint(
    deps: Deps, consoles: FakeConsoles, ec2_client: Any
) -> None:
    settings = make_settings(allow=("192.0.2.1",))

    result = up(settings, deps)

    iid = result.status["instance"]["id"]
    assert pinned(settings) == consoles.keys[iid]
    assert tags_of(ec2_client, iid)[TAG_HOST_KEY_FINGERPRINT] == fingerprint(consoles.keys[iid])
    assert result.status["host_key_fingerprint"] == fingerprint(consoles.keys[iid])
    known_hosts = (settings.gateway_dir("us-east-1") / "known_hosts").read_text()
    assert known_hosts.split()[1:3] == consoles.keys[iid].split()


def test_no_user_data_bastion_launches_holds_a_private_key_on_any_launch_path(
    deps: Deps, consoles: FakeConsoles, ec2_client: Any, app_sg: str
) -> None:
    settings = make_settings(app_sg=app_sg)
    first = up(settings, deps)  # up
    ec2_client.terminate_instances(InstanceIds=[first.status["instance"]["id"]])
    up(settings, deps)  # relaunch after a termination
    relaunch_gateway(settings, deps)  # rotate --relaunch
    burn(settings, deps, reason="every launch path")  # burn's relaunch

    launched = every_user_data(ec2_client)

    assert len(launched) == 4
    assert all(text.startswith("#cloud-config") for text in launched.values())
    assert [text.count("PRIVATE KEY") for text in launched.values()] == [0, 0, 0, 0]
    assert ["\nssh_keys:" in text for text in launched.values()] == [False] * 4
    # and the pin is the console's key of the gateway running now
    current = max(launched, key=lambda i: tags_of(ec2_client, i).get("bastion:generation", ""))
    assert pinned(settings) == consoles.keys[current]


def test_an_impostor_sshd_with_another_key_is_refused_at_up(
    deps: Deps, probe: FakeProbe, consoles: FakeConsoles
) -> None:
    from bastion.adapters.keys import generate_key

    probe.host_key_override = generate_key("impostor").public_line

    with pytest.raises(HostKeyMismatchError):
        up(make_settings(allow=("192.0.2.1",)), deps)


def test_a_console_naming_two_ed25519_keys_pins_nothing(
    deps: Deps, consoles: FakeConsoles, ec2_client: Any
) -> None:
    from bastion.adapters.keys import generate_key

    two = [generate_key(n).public_line for n in ("a", "b")]
    original = consoles.text

    def contradictory(instance_id: str) -> str:
        return original(instance_id) + host_key_block(two[:1]) + host_key_block(two[1:])

    consoles.text = contradictory  # type: ignore[method-assign]
    settings = make_settings(allow=("192.0.2.1",))

    with pytest.raises(HostKeyMismatchError, match="several different Ed25519 host keys"):
        up(settings, deps)

    assert not (settings.gateway_dir("us-east-1") / "host_ed25519.pub").exists()


def test_a_console_that_never_shows_a_key_times_out_with_progress(
    deps: Deps, consoles: FakeConsoles
) -> None:
    consoles.silent = True
    waits: list[str] = []
    deps.reporter.wait = waits.append  # type: ignore[method-assign]

    with pytest.raises(TimeoutExpired, match="host key on the console"):
        up(make_settings(allow=("192.0.2.1",), wait_timeout=60.0), deps)

    assert waits and all("host key on the console" in w for w in waits)
    assert 10 <= len(consoles.reads) <= 14  # every 5 s of the injected clock


def test_a_lost_pin_is_recovered_from_the_console(deps: Deps) -> None:
    settings = make_settings(allow=("192.0.2.1",))
    first = up(settings, deps)
    folder = settings.gateway_dir("us-east-1")
    (folder / "host_ed25519.pub").unlink()
    (folder / "known_hosts").unlink()

    second = up(settings, deps)

    assert second.status["host_key_fingerprint"] == first.status["host_key_fingerprint"]
    assert [a.kind for a in second.plan.actions if a.kind == "pin_host_key"] == ["pin_host_key"]
    assert (folder / "known_hosts").exists()


def test_a_recovery_whose_console_disagrees_with_the_tag_pins_nothing(
    deps: Deps, consoles: FakeConsoles, ec2_client: Any
) -> None:
    from bastion.adapters.keys import generate_key

    settings = make_settings(allow=("192.0.2.1",))
    iid = up(settings, deps).status["instance"]["id"]
    folder = settings.gateway_dir("us-east-1")
    (folder / "host_ed25519.pub").unlink()
    consoles.texts[iid] = host_key_block([generate_key("impostor").public_line])

    with pytest.raises(HostKeyMismatchError, match="its tag says"):
        up(settings, deps)

    assert not (folder / "host_ed25519.pub").exists()


def test_the_console_is_read_without_latest_where_the_instance_does_not_offer_it(
    deps: Deps, consoles: FakeConsoles
) -> None:
    consoles.refuse_latest = True
    settings = make_settings(allow=("192.0.2.1",))

    result = up(settings, deps)

    assert [r.get("Latest") for r in consoles.requests[:2]] == [["true"], None]
    assert result.status["host_key_fingerprint"] == fingerprint(pinned(settings))
