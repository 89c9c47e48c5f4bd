"""`bastion up` against moto: create, converge, never duplicate."""

from __future__ import annotations

import stat
from typing import Any

import pytest

from bastion.domain.errors import ConflictError, NotFoundError, UsageError
from bastion.usecases.down import down
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CALLER_IP, CallCounter, FakeIp, make_settings


def _instances(ec2_client: Any) -> list[dict[str, Any]]:
    reservations = ec2_client.describe_instances(
        Filters=[
            {"Name": "tag:bastion:name", "Values": ["default"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_up_creates_key_group_instance_and_points_app_sg_at_gateway(
    deps: Deps, ec2_client: Any, app_sg: str
) -> None:
    result = up(make_settings(app_sg=app_sg), deps)

    instances = _instances(ec2_client)
    assert len(instances) == 1
    instance = instances[0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert "IamInstanceProfile" not in instance
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["bastion:port"] == "62222"
    assert tags["bastion:generation"] == "1"
    assert tags["bastion:host-key-fingerprint"].startswith("SHA256:")
    assert tags["bastion:key-fingerprint"] == result.status["login_key_fingerprint"]

    group_id = instance["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    group = ec2_client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["GroupName"] == "bastion-default-gw-1"
    ingress = group["IpPermissions"]
    assert [(p["FromPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in ingress] == [
        (62222, [f"{CALLER_IP}/32"])
    ]
    assert ingress[0]["IpRanges"][0]["Description"].startswith("bastion:me by ")
    egress_ports = sorted(p["FromPort"] for p in group["IpPermissionsEgress"])
    assert egress_ports == [22, 443, 443] or egress_ports == [22, 443]
    assert all(p["IpProtocol"] == "tcp" for p in group["IpPermissionsEgress"])

    app = ec2_client.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]
    ssh = [p for p in app["IpPermissions"] if p["FromPort"] == 22]
    assert [pair["GroupId"] for pair in ssh[0]["UserIdGroupPairs"]] == [group_id]
    assert result.status["drift"] == []
    assert result.status["caller_allowed"] is True

    key_pairs = ec2_client.describe_key_pairs()["KeyPairs"]
    assert [k["KeyName"] for k in key_pairs] == [instance["KeyName"]]


def test_up_twice_makes_no_mutating_call(deps: Deps, counter: CallCounter, app_sg: str) -> None:
    up(make_settings(app_sg=app_sg), deps)
    counter.reset()

    result = up(make_settings(app_sg=app_sg), deps)

    assert counter.mutating == {}
    assert counter.calls  # it did look
    assert result.plan.changes == ()
    # Each thing is read once: the report reuses the reads the plan was made from.
    assert counter.calls["DescribeInstances"] == 1
    assert counter.calls["DescribeKeyPairs"] == 1
    assert sum(counter.calls.values()) <= 8


def test_changed_caller_ip_replaces_exactly_the_owned_rule(
    deps: Deps, counter: CallCounter, ec2_client: Any, app_sg: str, fake_ip: FakeIp
) -> None:
    up(make_settings(app_sg=app_sg), deps)
    group_id = _instances(ec2_client)[0]["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    # A rule someone else added by hand must survive.
    ec2_client.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 62222,
                "ToPort": 62222,
                "IpRanges": [{"CidrIp": "198.51.100.0/24", "Description": "office"}],
            }
        ],
    )
    fake_ip.address = "198.51.100.99"
    counter.reset()

    up(make_settings(app_sg=app_sg), deps)

    assert counter.mutating == {
        "AuthorizeSecurityGroupIngress": 1,
        "RevokeSecurityGroupIngress": 1,
    }
    ranges = sorted(
        r["CidrIp"]
        for p in ec2_client.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0][
            "IpPermissions"
        ]
        for r in p["IpRanges"]
    )
    assert ranges == ["198.51.100.0/24", "198.51.100.99/32"]


def test_allow_flag_replaces_ip_detection(deps: Deps, ec2_client: Any, fake_ip: FakeIp) -> None:
    fake_ip.address = "not an ip"
    result = up(make_settings(allow=("192.0.2.10", "2001:db8::/64")), deps)
    assert sorted(a["cidr"] for a in result.status["allowed"]) == ["192.0.2.10/32", "2001:db8::/64"]


def test_world_open_cidr_is_refused_without_allow_anywhere(
    deps: Deps, counter: CallCounter
) -> None:
    with pytest.raises(UsageError, match="whole Internet"):
        up(make_settings(allow=("0.0.0.0/0",)), deps)
    assert counter.mutating == {}


def test_world_open_cidr_is_accepted_with_allow_anywhere(deps: Deps) -> None:
    result = up(make_settings(allow=("0.0.0.0/0",), allow_anywhere=True), deps)
    assert [a["cidr"] for a in result.status["allowed"]] == ["0.0.0.0/0"]


def test_dry_run_plans_every_change_and_makes_none(
    deps: Deps, counter: CallCounter, app_sg: str, tmp_path: Any
) -> None:
    settings = make_settings(app_sg=app_sg)
    result = up(settings, deps, dry_run=True)

    assert counter.mutating == {}
    kinds = [a.kind for a in result.plan.changes]
    assert kinds[:3] == ["create_login_key", "create_admin_key", "import_key_pair"]
    assert "launch_instance" in kinds and "authorize_app_ssh" in kinds
    assert not settings.gateway_dir("us-east-1").exists()


def test_terminated_instance_is_relaunched_with_a_new_pinned_host_key(
    deps: Deps, ec2_client: Any, app_sg: str
) -> None:
    first = up(make_settings(app_sg=app_sg), deps)
    ec2_client.terminate_instances(InstanceIds=[first.status["instance"]["id"]])

    second = up(make_settings(app_sg=app_sg), deps)

    assert [a.kind for a in second.plan.changes] == ["launch_instance", "pin_host_key"]
    assert second.status["instance"]["id"] != first.status["instance"]["id"]
    assert second.status["host_key_fingerprint"] != first.status["host_key_fingerprint"]
    assert second.status["drift"] == []


def test_stopped_instance_is_started(deps: Deps, ec2_client: Any) -> None:
    first = up(make_settings(allow=("192.0.2.1",)), deps)
    ec2_client.stop_instances(InstanceIds=[first.status["instance"]["id"]])
    second = up(make_settings(allow=("192.0.2.1",)), deps)
    assert [a.kind for a in second.plan.changes] == ["start_instance"]
    assert second.status["instance"]["state"] == "running"


def test_private_key_is_0600_in_a_0700_folder_and_never_in_output(
    deps: Deps, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    settings = make_settings(allow=("192.0.2.1",))
    result = up(settings, deps)
    folder = settings.gateway_dir("us-east-1")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("login_ed25519", "admin_ed25519"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        assert "PRIVATE KEY" in (folder / name).read_text()
    out = capsys.readouterr()
    assert "PRIVATE KEY" not in out.out + out.err + caplog.text + repr(result)


def test_unknown_app_sg_is_a_not_found_error(deps: Deps, counter: CallCounter) -> None:
    with pytest.raises(NotFoundError, match="sg-0123456789abcdef0"):
        up(make_settings(app_sg="sg-0123456789abcdef0"), deps)
    assert counter.mutating == {}


def test_port_change_on_a_running_gateway_is_a_conflict_not_a_silent_change(
    deps: Deps, counter: CallCounter
) -> None:
    up(make_settings(allow=("192.0.2.1",)), deps)
    counter.reset()
    with pytest.raises(ConflictError, match="port 62222"):
        up(make_settings(allow=("192.0.2.1",), port=2222), deps)
    assert counter.mutating == {}


def test_lost_pin_is_recovered_from_the_console(deps: Deps) -> None:
    settings = make_settings(allow=("192.0.2.1",))
    first = up(settings, deps)
    folder = settings.gateway_dir("us-east-1")
    (folder / "host_ed25519.pub").unlink()
    (folder / "known_hosts").unlink()
    second = up(settings, deps)
    assert second.status["host_key_fingerprint"] == first.status["host_key_fingerprint"]


def test_down_removes_everything_app_reference_first(
    deps: Deps, counter: CallCounter, ec2_client: Any, app_sg: str
) -> None:
    settings = make_settings(app_sg=app_sg)
    up(settings, deps)
    order: list[str] = []
    counter.reset()

    result = down(make_settings(), deps)

    order = [a.kind for a in result.applied]
    assert order.index("revoke_app_ssh") < order.index("terminate_instance")
    assert order.index("wait_terminated") < order.index("delete_group")
    assert order[-1] == "delete_local"
    assert _instances(ec2_client) == []
    assert ec2_client.describe_key_pairs()["KeyPairs"] == []
    names = [g["GroupName"] for g in ec2_client.describe_security_groups()["SecurityGroups"]]
    assert not [n for n in names if n.startswith("bastion-")]
    app = ec2_client.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]
    assert [p["FromPort"] for p in app["IpPermissions"]] == [80, 443]
    assert not settings.gateway_dir("us-east-1").exists()

    counter.reset()
    again = down(make_settings(), deps)
    assert again.plan.actions == () and counter.mutating == {}


def test_status_reports_a_missing_gateway_as_drift(deps: Deps) -> None:
    data = status(make_settings(), deps)
    assert data["exists"] is False
    assert data["drift"] == ["gateway does not exist; run `bastion up`"]
