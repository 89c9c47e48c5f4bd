"""Identity before action, against moto: a tagged decoy, a spoofed pin, `down` without keys.

The attacker holds only `ec2:CreateTags` (and, for the spoofed pin, an instance of their own):
each attack must leave the whole account and the operator's files exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bastion.adapters.aws.client import Ec2
from bastion.adapters.config import load_settings
from bastion.domain.errors import ConflictError
from bastion.domain.fingerprints import fingerprint
from bastion.usecases.burn import burn
from bastion.usecases.down import down
from bastion.usecases.rotate import rotate_login
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import make_settings
from tests.consoles import FakeConsoles

BOB = "arn:aws:iam::123456789012:user/bob"


def account_state(ec2: Any) -> dict[str, Any]:
    """Everything an attack could change in AWS and in the operator's HOME, comparably."""
    instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    state: dict[str, Any] = {
        "instances": {
            i["InstanceId"]: {
                "state": i["State"]["Name"],
                "tags": sorted((t["Key"], t["Value"]) for t in i.get("Tags", [])),
                "groups": sorted(
                    g["GroupId"] for n in i.get("NetworkInterfaces", []) for g in n["Groups"]
                ),
                "protected": ec2.describe_instance_attribute(
                    InstanceId=i["InstanceId"], Attribute="disableApiTermination"
                )["DisableApiTermination"]["Value"],
            }
            for i in instances
        },
        "groups": ec2.describe_security_groups()["SecurityGroups"],
        "key_pairs": ec2.describe_key_pairs()["KeyPairs"],
        "acls": ec2.describe_network_acls()["NetworkAcls"],
        "addresses": ec2.describe_addresses()["Addresses"],
        "snapshots": ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"],
        "files": {
            str(p): p.read_bytes()
            for p in sorted(Path(os.environ["HOME"]).rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")  # the lock names its last holder
        },
    }
    return json.loads(json.dumps(state, default=str, sort_keys=True))


@pytest.fixture
def layout(deps: Deps, ec2_client: Any, app_sg: str) -> dict[str, str]:
    """The seed's tiers and a live gateway: sg-rds admits 3306 from sg-app; app-1 runs in sg-app."""
    vpc = ec2_client.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    rds = ec2_client.create_security_group(
        GroupName="sg-rds", Description="rds", VpcId=vpc["VpcId"]
    )["GroupId"]
    ec2_client.authorize_security_group_ingress(
        GroupId=rds,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 3306,
                "ToPort": 3306,
                "UserIdGroupPairs": [{"GroupId": app_sg}],
            }
        ],
    )
    status = up(make_settings(app_sg=app_sg), deps).status
    assert status
    app = ec2_client.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SecurityGroupIds=[app_sg]
    )["Instances"][0]["InstanceId"]
    ec2_client.modify_instance_attribute(InstanceId=app, DisableApiTermination={"Value": True})
    from bastion.usecases.shared.lease import release_aws_locks

    release_aws_locks()  # the `up` process has ended (and with it its lock in AWS)
    return {"gateway": status["instance"]["id"], "app": app, "rds": rds, "app_sg": app_sg}


def _tags(ec2: Any, instance_id: str) -> dict[str, str]:
    described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    return {t["Key"]: t["Value"] for t in described[0].get("Tags", [])}


def disguise(ec2: Any, instance_id: str, like: str, **extra: str) -> None:
    """The attack: copy the gateway's tags onto another instance, generation 99 (CreateTags)."""
    tags = {k: v for k, v in _tags(ec2, like).items() if k.startswith("bastion:")}
    tags.update({"bastion:generation": "99", **extra})
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _rds_sources(ec2: Any, rds: str) -> list[str]:
    group = ec2.describe_security_groups(GroupIds=[rds])["SecurityGroups"][0]
    return [pair["GroupId"] for p in group["IpPermissions"] for pair in p["UserIdGroupPairs"]]


def test_burn_of_a_tagged_decoy_changes_nothing_and_names_both_instances(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    disguise(ec2_client, layout["app"], like=layout["gateway"])
    before = account_state(ec2_client)

    with pytest.raises(ConflictError) as error:
        burn(make_settings(), deps, reason="odd logins")

    message = error.value.message
    assert layout["app"] in message and layout["gateway"] in message
    assert f"--instance {layout['gateway']}" in message and "\n" not in message
    assert account_state(ec2_client) == before


def test_burn_with_the_instance_named_burns_the_gateway_and_leaves_the_decoy(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    disguise(ec2_client, layout["app"], like=layout["gateway"])

    result = burn(make_settings(), deps, reason="odd logins", instance_id=layout["gateway"])

    assert result.incident.pre_incident["instance_id"] == layout["gateway"]
    app = account_state(ec2_client)["instances"][layout["app"]]
    assert app["state"] == "running" and app["protected"] is True
    assert _rds_sources(ec2_client, layout["rds"]) == [layout["app_sg"]]  # the database is fine


def test_a_tag_only_open_incident_on_a_decoy_is_not_adopted(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    disguise(
        ec2_client,
        layout["app"],
        like=layout["gateway"],
        **{"bastion:incident": "inc-20261201T000000Z-dead", "bastion:incident-state": "open"},
    )
    before = account_state(ec2_client)

    with pytest.raises(ConflictError, match=layout["app"]):
        burn(make_settings(), deps)

    assert account_state(ec2_client) == before


def test_a_spoofed_instance_is_not_pinned_when_the_gateway_is_gone_and_the_pin_lost(
    deps: Deps, ec2_client: Any, consoles: FakeConsoles, layout: dict[str, str]
) -> None:
    settings = make_settings(app_sg=layout["app_sg"])
    ec2_client.terminate_instances(InstanceIds=[layout["gateway"]])
    folder = settings.gateway_dir("us-east-1")
    (folder / "host_ed25519.pub").unlink()
    (folder / "known_hosts").unlink()
    # The attacker's own instance prints its own host key and is tagged to match it.
    evil = ec2_client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    disguise(ec2_client, evil, like=layout["gateway"])
    own_print = fingerprint(consoles.key_of(evil))
    ec2_client.create_tags(
        Resources=[evil], Tags=[{"Key": "bastion:host-key-fingerprint", "Value": own_print}]
    )
    before = account_state(ec2_client)

    with pytest.raises(ConflictError) as error:
        up(settings, deps)

    assert evil in error.value.message and layout["gateway"] in error.value.message
    assert account_state(ec2_client) == before


def test_down_from_a_machine_without_the_keys_changes_nothing_without_the_flag(
    deps: Deps,
    ec2_client: Any,
    layout: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Ec2, "caller_arn", lambda self: BOB)
    elsewhere = load_settings({}, env={"BASTION_HOME": str(tmp_path / "bob")})
    before = account_state(ec2_client)

    with pytest.raises(ConflictError) as error:
        down(elsewhere, deps)

    assert "made by" in error.value.message and "--without-keys" in error.value.message
    assert account_state(ec2_client) == before


def test_down_without_keys_goes_ahead_with_the_flag_after_saying_who_made_it(
    deps: Deps,
    ec2_client: Any,
    layout: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    deps.reporter.warn = warnings.append  # type: ignore[method-assign]
    monkeypatch.setattr(Ec2, "caller_arn", lambda self: BOB)
    elsewhere = load_settings({}, env={"BASTION_HOME": str(tmp_path / "bob")})

    down(elsewhere, deps, without_keys=True)

    assert any("made by" in w for w in warnings)
    assert account_state(ec2_client)["instances"][layout["gateway"]]["state"] == "terminated"


def test_down_with_a_decoy_refuses_and_then_removes_only_the_gateway_named(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    disguise(ec2_client, layout["app"], like=layout["gateway"])
    before = account_state(ec2_client)

    with pytest.raises(ConflictError, match=f"--instance {layout['gateway']}"):
        down(make_settings(), deps)
    assert account_state(ec2_client) == before

    down(make_settings(), deps, instance=layout["gateway"])

    after = account_state(ec2_client)["instances"]
    assert after[layout["gateway"]]["state"] == "terminated"
    assert after[layout["app"]]["state"] == "running"
    assert _rds_sources(ec2_client, layout["rds"]) == [layout["app_sg"]]


def test_rotate_with_a_decoy_changes_nothing(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    disguise(ec2_client, layout["app"], like=layout["gateway"])
    before = account_state(ec2_client)

    with pytest.raises(ConflictError, match=f"--instance {layout['gateway']}"):
        rotate_login(make_settings(), deps)

    assert account_state(ec2_client) == before


def test_burn_of_a_gateway_made_before_the_record_is_tied_by_its_console(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    folder = make_settings().gateway_dir("us-east-1")
    (folder / "instances").unlink()  # a gateway made by an older bastion: only its pin

    result = burn(make_settings(), deps, reason="legacy")

    assert result.incident.pre_incident["instance_id"] == layout["gateway"]
    assert result.incident.state == "closed"


def test_a_second_machine_with_the_copied_folder_burns_the_gateway(
    deps: Deps, ec2_client: Any, layout: dict[str, str], tmp_path: Path
) -> None:
    folder = make_settings().gateway_dir("us-east-1").expanduser()
    copy = tmp_path / "second" / "us-east-1" / "default"
    shutil.copytree(folder, copy)
    for made in (copy.parent.parent, copy.parent):
        made.chmod(0o700)
    (copy / "instances").unlink()  # copied before the record existed: the pin ties it

    result = burn(load_settings({}, env={"BASTION_HOME": str(tmp_path / "second")}), deps)

    assert result.incident.pre_incident["instance_id"] == layout["gateway"]


def test_the_record_names_every_generation_a_relaunch_launched(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    from bastion.usecases.rotate import relaunch_gateway

    relaunch_gateway(make_settings(app_sg=layout["app_sg"]), deps)

    folder = make_settings().gateway_dir("us-east-1").expanduser()
    recorded = set((folder / "instances").read_text().split())
    live = [
        iid
        for iid, i in account_state(ec2_client)["instances"].items()
        if i["state"] == "running" and iid != layout["app"]
    ]
    assert len(live) == 1 and set(live) <= recorded and layout["gateway"] in recorded


def _tag_as_gateways(ec2: Any, resource: str, role: str) -> None:
    tags = {"bastion:name": "default", "bastion:role": role, "bastion:managed": "true"}
    ec2.create_tags(Resources=[resource], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def test_a_group_and_a_key_pair_tagged_as_the_gateways_survive_down_and_burn(
    deps: Deps, ec2_client: Any, layout: dict[str, str]
) -> None:
    from bastion.adapters.keys import generate_key

    _tag_as_gateways(ec2_client, layout["rds"], "gateway-group")
    deploy = ec2_client.import_key_pair(
        KeyName="prod-deploy", PublicKeyMaterial=generate_key("deploy").public_line.encode()
    )["KeyPairId"]
    _tag_as_gateways(ec2_client, deploy, "login-key")

    burn(make_settings(), deps, reason="tagged resources")
    down(make_settings(), deps)

    names = [k["KeyName"] for k in ec2_client.describe_key_pairs()["KeyPairs"]]
    assert names == ["prod-deploy"]
    assert _rds_sources(ec2_client, layout["rds"]) == [layout["app_sg"]]


def test_a_gateway_whose_console_rolled_is_tied_by_its_sshd_answering_with_the_pin(
    deps: Deps, ec2_client: Any, consoles: FakeConsoles, layout: dict[str, str]
) -> None:
    folder = make_settings().gateway_dir("us-east-1").expanduser()
    (folder / "instances").unlink()  # made by an older bastion, long ago: no record, no console
    consoles.texts[layout["gateway"]] = "Booting...\n"

    result = burn(make_settings(), deps, reason="old gateway")

    assert result.incident.pre_incident["instance_id"] == layout["gateway"]


def test_an_unrecorded_instance_whose_sshd_shows_another_key_is_refused(
    deps: Deps, ec2_client: Any, consoles: FakeConsoles, probe: Any, layout: dict[str, str]
) -> None:
    from bastion.adapters.keys import generate_key

    folder = make_settings().gateway_dir("us-east-1").expanduser()
    (folder / "instances").unlink()
    consoles.texts[layout["gateway"]] = "Booting...\n"
    probe.host_key_override = generate_key("impostor").public_line
    before = account_state(ec2_client)

    with pytest.raises(ConflictError, match=f"--instance {layout['gateway']}"):
        burn(make_settings(), deps, reason="not proven")

    assert account_state(ec2_client) == before
