"""`bastion audit` against moto layouts built to the seed's table, good and broken each way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from bastion.adapters.aws.client import Ec2
from bastion.adapters.keys import fingerprint
from bastion.domain.audit import AuditOptions
from bastion.domain.clock import FakeClock
from bastion.usecases import allow as use
from bastion.usecases.audit import audit
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings
from tests.faults import ec2_error


@dataclass
class Seed:
    """The seed's layout: sg-elb -> sg-app 80/443, gateway -> sg-app 22, sg-app -> sg-rds 3306."""

    ec2: Any
    deps: Deps
    elb: str
    app: str
    rds: str
    gateway_group: str
    instance_id: str
    vpc_id: str

    def options(self) -> AuditOptions:
        return AuditOptions(app_sg="sg-app", db_sg="sg-rds", elb_sg="sg-elb")

    def checks(self) -> set[str]:
        return {f.check for f in audit(make_settings(), self.deps, self.options()).findings}

    def ingress(self, group_id: str, port: int, source: str, description: str = "") -> None:
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
        if source.startswith("sg-"):
            permission["UserIdGroupPairs"] = [{"GroupId": source, "Description": description}]
        elif ":" in source:
            permission["Ipv6Ranges"] = [{"CidrIpv6": source, "Description": description}]
        else:
            permission["IpRanges"] = [{"CidrIp": source, "Description": description}]
        self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[permission])

    def key_created(self) -> datetime:
        return self.ec2.describe_key_pairs()["KeyPairs"][0]["CreateTime"]  # type: ignore[no-any-return]

    def launch_other_gateway(self, **extra: Any) -> str:
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        reply = self.ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            MetadataOptions={"HttpTokens": "required"},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "bastion:role", "Value": "gateway"},
                        {"Key": "bastion:name", "Value": "legacy"},
                    ],
                }
            ],
            **extra,
        )
        return str(reply["Instances"][0]["InstanceId"])


@pytest.fixture
def seed(deps: Deps, ec2_client: Any, app_sg: str) -> Seed:
    result = up(make_settings(app_sg=app_sg), deps)
    assert result.status is not None
    vpc = ec2_client.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]["VpcId"]
    elb = ec2_client.describe_security_groups(GroupNames=["sg-elb"])["SecurityGroups"][0]
    rds = ec2_client.create_security_group(GroupName="sg-rds", Description="rds", VpcId=vpc)
    layout = Seed(
        ec2_client,
        deps,
        elb["GroupId"],
        app_sg,
        rds["GroupId"],
        result.status["security_group"],
        result.status["instance"]["id"],
        vpc,
    )
    layout.ingress(layout.rds, 3306, app_sg)
    clock = deps.clock
    assert isinstance(clock, FakeClock)
    clock.current = layout.key_created() + timedelta(days=1)
    return layout


def test_the_seeds_good_layout_passes_every_check(seed: Seed) -> None:
    result = audit(make_settings(), seed.deps, seed.options())
    assert [f.to_dict() for f in result.findings] == []
    assert result.failures == []


def test_without_role_flags_the_app_group_is_found_from_the_gateway(seed: Seed) -> None:
    seed.ingress(seed.app, 22, "198.51.100.7/32")
    result = audit(make_settings(), seed.deps, AuditOptions())
    assert {f.check for f in result.findings} == {"app-ssh-source"}


def _advance(seed: Seed, delta: timedelta) -> None:
    clock = seed.deps.clock
    assert isinstance(clock, FakeClock)
    clock.current += delta


Breakage = Callable[[Seed], None]

BROKEN: list[tuple[str, Breakage, set[str]]] = [
    (
        "ssh from the world on the app group",
        lambda s: s.ingress(s.app, 22, "0.0.0.0/0"),
        {"world-open-ssh", "app-ssh-source"},
    ),
    (
        "gateway port from ::/0 on some group",
        lambda s: s.ingress(s.elb, 62222, "::/0"),
        {"world-open-ssh"},
    ),
    (
        "app ssh from an address",
        lambda s: s.ingress(s.app, 22, "198.51.100.7/32"),
        {"app-ssh-source"},
    ),
    ("app ssh from a network", lambda s: s.ingress(s.app, 22, "10.0.0.0/8"), {"app-ssh-source"}),
    ("app ssh from another group", lambda s: s.ingress(s.app, 22, s.elb), {"app-ssh-source"}),
    (
        "gateway port from two halves of the Internet",
        lambda s: (
            s.ingress(s.gateway_group, 62222, "0.0.0.0/1"),
            s.ingress(s.gateway_group, 62222, "128.0.0.0/1"),
        ),
        {"world-open-ssh"},
    ),
    (
        "gateway port from two halves of public IPv6",
        lambda s: (
            s.ingress(s.gateway_group, 62222, "2000::/4"),
            s.ingress(s.gateway_group, 62222, "3000::/4"),
        ),
        {"world-open-ssh"},
    ),
    (
        "gateway port from a /8",
        lambda s: s.ingress(s.gateway_group, 62222, "10.0.0.0/8"),
        {"wide-source"},
    ),
    (
        "gateway port from a public /16",
        lambda s: s.ingress(s.gateway_group, 62222, "8.8.0.0/16"),
        {"wide-source"},
    ),
    (
        "8080 on the app group from the world",
        lambda s: s.ingress(s.app, 8080, "0.0.0.0/0"),
        {"app-port-other"},
    ),
    (
        "8080 on the app group from the load balancer",
        lambda s: s.ingress(s.app, 8080, s.elb),
        {"app-port-other"},
    ),
    (
        "ssh on the db group from the gateway",
        lambda s: s.ingress(s.rds, 22, s.gateway_group),
        {"db-source"},
    ),
    ("redis on the db group from the elb", lambda s: s.ingress(s.rds, 6379, s.elb), {"db-source"}),
    ("db from a network", lambda s: s.ingress(s.rds, 3306, "10.0.0.0/16"), {"db-source"}),
    ("postgres from the elb", lambda s: s.ingress(s.rds, 5432, s.elb), {"db-source"}),
    ("web from the world", lambda s: s.ingress(s.app, 443, "0.0.0.0/0"), {"app-web-source"}),
    ("web from the gateway", lambda s: s.ingress(s.app, 80, s.gateway_group), {"app-web-source"}),
    (
        "IMDSv1 allowed",
        lambda s: s.ec2.modify_instance_metadata_options(
            InstanceId=s.instance_id, HttpTokens="optional"
        ),
        {"imdsv2-not-required"},
    ),
    (
        "unencrypted volume",
        lambda s: s.launch_other_gateway(
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": False}}
            ]
        ),
        {"volume-unencrypted"},
    ),
    (
        "old login key",
        lambda s: _advance(s, timedelta(days=91)),
        {"login-key-old"},
    ),
    (
        "expired allow rule",
        lambda s: (
            use.allow(make_settings(), s.deps, "192.0.2.0/24", duration="1h", label="office"),
            _advance(s, timedelta(hours=2)),
        ),
        {"allow-expired"},
    ),
    (
        "incident left open",
        lambda s: s.ec2.create_tags(
            Resources=[s.instance_id],
            Tags=[
                {"Key": "bastion:incident", "Value": "inc-20260101T031500Z-ab12"},
                {"Key": "bastion:incident-state", "Value": "open"},
            ],
        ),
        {"incident-open"},
    ),
]


@pytest.mark.parametrize(
    ("breakage", "expected"), [(b, e) for _, b, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_each_breakage_is_found_and_fails_the_audit(
    seed: Seed, breakage: Breakage, expected: set[str]
) -> None:
    breakage(seed)
    result = audit(make_settings(), seed.deps, seed.options())
    assert {f.check for f in result.findings} == expected
    assert result.failures


@pytest.mark.parametrize(
    "options",
    [AuditOptions(app_sg="sg-app", elb_sg="sg-elb"), AuditOptions()],
    ids=["app-sg-only", "no-role-flags"],
)
def test_without_db_sg_the_database_is_found_from_the_app_and_checked(
    seed: Seed, options: AuditOptions
) -> None:
    seed.ingress(seed.rds, 3306, "10.0.0.0/16")
    findings = audit(make_settings(), seed.deps, options).findings
    assert [(f.check, f.resource) for f in findings] == [("db-source", seed.rds)]


PRIVATE_KEY = (
    b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"
    b"-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_a_private_key_in_a_gateways_user_data_fails(seed: Seed, gzipped: bool) -> None:
    import gzip

    script = b"#!/bin/sh\ncat > /home/ops/.ssh/id_ed25519 <<'EOF'\n" + PRIVATE_KEY + b"EOF\n"
    legacy = seed.launch_other_gateway(
        UserData=gzip.compress(script) if gzipped else script,
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": True}}
        ],
    )
    findings = audit(make_settings(), seed.deps, seed.options()).findings
    assert [(f.check, f.resource) for f in findings] == [("user-data-private-key", legacy)]


def _serial_console(seed: Seed, answer: Callable[[Any], AWSResponse]) -> None:
    """Answer GetSerialConsoleAccessStatus for the audit's client (moto has no such call)."""
    attach_before = seed.deps.on_ec2

    def attach(ec2: Ec2) -> None:
        if attach_before:
            attach_before(ec2)

        def handle(request: Any = None, **_: Any) -> AWSResponse:
            request.url = "https://serial-console.invalid/"  # keep in-process moto out of it
            return answer(request)

        ec2.ec2.meta.events.register_first("before-send.ec2.GetSerialConsoleAccessStatus", handle)

    seed.deps.on_ec2 = attach


def _serial_status(enabled: bool) -> Callable[[Any], AWSResponse]:
    body = (
        '<GetSerialConsoleAccessStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>serial-1</requestId><serialConsoleAccessEnabled>{str(enabled).lower()}"
        "</serialConsoleAccessEnabled></GetSerialConsoleAccessStatusResponse>"
    ).encode()
    return lambda request: AWSResponse(request.url, 200, {}, _Body(body))


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_serial_console_access_enabled_for_the_account_fails(seed: Seed) -> None:
    _serial_console(seed, _serial_status(True))
    findings = audit(make_settings(), seed.deps, seed.options()).findings
    assert [(f.check, f.resource) for f in findings] == [("serial-console-enabled", "account")]
    assert "disable-serial-console-access" in findings[0].fix


@pytest.mark.parametrize(
    "answer",
    [_serial_status(False), lambda request: ec2_error("InvalidAction", 400)],
    ids=["disabled", "endpoint-without-the-call"],
)
def test_serial_console_disabled_or_unknown_passes(
    seed: Seed, answer: Callable[[Any], AWSResponse]
) -> None:
    _serial_console(seed, answer)
    assert audit(make_settings(), seed.deps, seed.options()).findings == []


def test_a_gateway_with_an_instance_profile_fails(seed: Seed) -> None:
    import boto3

    boto3.client("iam", region_name="us-east-1").create_instance_profile(
        InstanceProfileName="too-much"
    )
    seed.launch_other_gateway(
        IamInstanceProfile={"Name": "too-much"},
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "Encrypted": True}}
        ],
    )
    assert seed.checks() == {"instance-profile"}


def _stale_generation(seed: Seed) -> str:
    """A gateway group of generation 0 that sg-app still admits (bastion's own rule)."""
    old = seed.ec2.create_security_group(
        GroupName="bastion-default-gw-0",
        Description="old",
        VpcId=seed.vpc_id,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": [
                    {"Key": "bastion:name", "Value": "default"},
                    {"Key": "bastion:role", "Value": "gateway-group"},
                    {"Key": "bastion:generation", "Value": "0"},
                ],
            }
        ],
    )["GroupId"]
    seed.ingress(seed.app, 22, old, "bastion:gateway default gen 0")
    return str(old)


def test_a_stale_generation_admitted_by_the_app_group_is_found(seed: Seed) -> None:
    _stale_generation(seed)
    findings = audit(make_settings(), seed.deps, seed.options()).findings
    assert {(f.check, f.severity) for f in findings} == {
        ("app-ssh-source", "fail"),
        ("stale-gateway-group", "warn"),
    }
    assert "old gateway generation" in findings[0].message


def test_fix_repairs_only_what_bastion_owns_rules_before_groups(
    seed: Seed, counter: CallCounter
) -> None:
    old = _stale_generation(seed)
    seed.ingress(seed.app, 22, "198.51.100.7/32", "added by hand")
    seed.ec2.modify_instance_metadata_options(InstanceId=seed.instance_id, HttpTokens="optional")
    use.allow(make_settings(), seed.deps, "192.0.2.0/24", duration="1h", label="office")
    _advance(seed, timedelta(hours=2))
    counter.reset()

    result = audit(make_settings(), seed.deps, seed.options(), fix=True)

    assert counter.mutating_sequence == [
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupIngress",
        "ModifyInstanceMetadataOptions",
        "DeleteSecurityGroup",
    ]
    assert {f.check for f in result.fixed} == {
        "app-ssh-source",
        "stale-gateway-group",
        "imdsv2-not-required",
        "allow-expired",
    }
    # Only the hand-made rule is left, untouched and still failing.
    assert [(f.check, f.action) for f in result.findings] == [("app-ssh-source", None)]
    app = seed.ec2.describe_security_groups(GroupIds=[seed.app])["SecurityGroups"][0]
    sources = [r["CidrIp"] for p in app["IpPermissions"] for r in p.get("IpRanges", [])]
    assert sources == ["198.51.100.7/32"]
    assert not seed.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [old]}])[
        "SecurityGroups"
    ]


def test_fix_never_revokes_a_world_open_rule_it_did_not_make(
    seed: Seed, counter: CallCounter
) -> None:
    seed.ingress(seed.elb, 22, "0.0.0.0/0")
    counter.reset()
    result = audit(make_settings(), seed.deps, seed.options(), fix=True)
    assert counter.mutating == {}
    assert [f.check for f in result.failures] == ["world-open-ssh"]
    assert "not made by bastion" in result.failures[0].fix


def test_fix_dry_run_shows_the_repairs_and_makes_none(seed: Seed, counter: CallCounter) -> None:
    _stale_generation(seed)
    counter.reset()
    result = audit(make_settings(), seed.deps, seed.options(), fix=True, dry_run=True)
    assert [a.kind for a in result.plan.actions] == ["revoke_rule", "delete_group"]
    assert counter.mutating == {}
    assert result.applied == []


def test_the_audit_reads_the_region_in_a_few_calls(seed: Seed, counter: CallCounter) -> None:
    counter.reset()
    audit(make_settings(), seed.deps, seed.options())
    # Six reads of the region, and one of user data per gateway (EC2 has no batch read).
    assert counter.calls.pop("DescribeInstanceAttribute") == 1
    assert sum(counter.calls.values()) <= 6
    assert counter.mutating == {}


THIEF_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH4mF0XvH0pSxN5y3XvX6b2m8u7WqXj6Jk0e3Yz9bQx thief"
)


def test_a_login_key_bastion_did_not_put_there_fails_and_names_rotate(seed: Seed) -> None:
    probe = seed.deps.probe
    login_public = (make_settings().gateway_dir("us-east-1") / "login_ed25519.pub").read_text()
    probe.login_listing = (  # type: ignore[attr-defined]
        f"restrict,port-forwarding {login_public.strip()}\n"
        f"restrict,port-forwarding {THIEF_PUBLIC}\n"
    )
    result = audit(make_settings(), seed.deps, seed.options())
    (finding,) = [f for f in result.findings if f.check == "login-key-unknown"]
    assert finding.severity == "fail" and finding.resource == seed.instance_id
    assert fingerprint(THIEF_PUBLIC) in finding.message
    assert "bastion rotate --name default" in finding.fix
    keys = result.login_keys[seed.instance_id]
    assert keys["checked"] and keys["unknown"] == [fingerprint(THIEF_PUBLIC)]
    assert [k["known"] for k in keys["keys"]] == [True, False]


def test_an_unreachable_admin_channel_is_a_warning_not_a_failure(seed: Seed) -> None:
    seed.deps.probe.admin_channel = False  # type: ignore[attr-defined]
    result = audit(make_settings(), seed.deps, seed.options())
    assert [f.check for f in result.findings] == ["login-keys-unchecked"]
    assert result.failures == []
