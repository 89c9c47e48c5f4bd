"""`bastion rotate --relaunch` against moto: blue/green, sg-app never without an SSH source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.adapters.aws.client import Ec2
from bastion.adapters.keys import fingerprint, load_key
from bastion.domain.model import Action
from bastion.usecases.rotate import relaunch_gateway
from bastion.usecases.status import status
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings


class Crash(Exception):
    """A simulated kill of the process between two steps."""


@dataclass
class AppSshRecorder:
    """Record sg-app's SSH sources after every EC2 call bastion makes (botocore after-call)."""

    client: Any
    app_sg: str
    snapshots: list[tuple[str, frozenset[str]]] = field(default_factory=list)

    def attach(self, ec2: Ec2) -> None:
        ec2.ec2.meta.events.register("after-call.ec2.*", self.record)

    def record(self, model: Any = None, **_: Any) -> None:
        self.snapshots.append((model.name, self.sources()))

    def sources(self) -> frozenset[str]:
        group = self.client.describe_security_groups(GroupIds=[self.app_sg])["SecurityGroups"][0]
        return frozenset(
            pair["GroupId"]
            for p in group["IpPermissions"]
            if p.get("FromPort") == 22
            for pair in p.get("UserIdGroupPairs", [])
        ) | frozenset(
            r["CidrIp"]
            for p in group["IpPermissions"]
            if p.get("FromPort") == 22
            for r in p.get("IpRanges", [])
        )


@pytest.fixture
def recorder(deps: Deps, counter: CallCounter, ec2_client: Any, app_sg: str) -> AppSshRecorder:
    """Bring up generation 1, then record sg-app after every call from here on."""
    up(make_settings(app_sg=app_sg), deps)
    recording = AppSshRecorder(ec2_client, app_sg)

    before = deps.on_ec2

    def attach(ec2: Ec2) -> None:
        if before:
            before(ec2)  # the call counter and the consoles
        recording.attach(ec2)

    deps.on_ec2 = attach
    counter.reset()
    return recording


def live_instances(ec2_client: Any) -> list[dict[str, Any]]:
    reservations = ec2_client.describe_instances(
        Filters=[
            {"Name": "tag:bastion:name", "Values": ["default"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def assert_relaunched(ec2_client: Any, app_sg: str, recorder: AppSshRecorder, deps: Deps) -> None:
    """Exactly generation 2 is left, sg-app trusts only its group, local keys match it."""
    (instance,) = live_instances(ec2_client)
    tags = tags_of(instance)
    assert tags["bastion:generation"] == "2"
    assert "bastion:standby" not in tags and "bastion:retiring" not in tags
    group_id = instance["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    assert recorder.sources() == {group_id}
    names = [
        g["GroupName"]
        for g in ec2_client.describe_security_groups()["SecurityGroups"]
        if g["GroupName"].startswith("bastion-")
    ]
    assert names == ["bastion-default-gw-2"]
    assert [k["KeyName"] for k in ec2_client.describe_key_pairs()["KeyPairs"]] == [
        instance["KeyName"]
    ]
    folder = make_settings().gateway_dir("us-east-1")
    assert load_key(folder / "login_ed25519").fingerprint == tags["bastion:key-fingerprint"]
    assert load_key(folder / "admin_ed25519").fingerprint == tags["bastion:admin-key-fingerprint"]
    pinned = (folder / "host_ed25519.pub").read_text()
    assert fingerprint(pinned) == tags["bastion:host-key-fingerprint"]
    assert not (folder / "relaunch").exists()
    assert status(make_settings(app_sg=app_sg), deps)["drift"] == []


def test_relaunch_moves_sg_app_to_the_new_generation_without_a_gap(
    deps: Deps, ec2_client: Any, app_sg: str, recorder: AppSshRecorder, counter: CallCounter
) -> None:
    (old,) = live_instances(ec2_client)
    old_group = old["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    folder = make_settings().gateway_dir("us-east-1")
    old_login = load_key(folder / "login_ed25519").fingerprint
    old_host = (folder / "host_ed25519.pub").read_text()

    # No --app-sg: the group that admits SSH from the gateway is found by its reference.
    result = relaunch_gateway(make_settings(), deps)

    assert recorder.snapshots, "no call was recorded"
    assert all(sources for _, sources in recorder.snapshots), recorder.snapshots
    assert recorder.snapshots[0][1] == {old_group}
    assert_relaunched(ec2_client, app_sg, recorder, deps)
    assert load_key(folder / "login_ed25519").fingerprint != old_login
    assert (folder / "host_ed25519.pub").read_text() != old_host
    calls = counter.mutating_sequence
    authorize_app = [i for i, (op, s) in enumerate(recorder.snapshots) if len(s) == 2]
    revoke = calls.index("RevokeSecurityGroupIngress")
    assert authorize_app and calls.index("RunInstances") < revoke
    assert calls.index("TerminateInstances") > revoke
    assert calls[-2:] == ["DeleteSecurityGroup", "DeleteKeyPair"]
    assert "PRIVATE KEY" not in repr(result)


def test_relaunch_dry_run_changes_nothing(
    deps: Deps, ec2_client: Any, app_sg: str, recorder: AppSshRecorder, counter: CallCounter
) -> None:
    plan = relaunch_gateway(make_settings(app_sg=app_sg), deps, dry_run=True).plan
    kinds = [a.kind for a in plan.actions]
    assert (
        kinds.index("authorize_app_ssh") < kinds.index("verify") < kinds.index("revoke_old_app_ssh")
    )
    assert kinds.index("retire_old_instance") < kinds.index("promote_new_instance")
    assert counter.mutating == {}
    assert len(live_instances(ec2_client)) == 1


STEPS = 23  # actions in a fresh relaunch plan (asserted below, so this cannot go stale)


def test_the_crash_tests_cover_every_step(
    deps: Deps, app_sg: str, recorder: AppSshRecorder
) -> None:
    plan = relaunch_gateway(make_settings(app_sg=app_sg), deps, dry_run=True).plan
    assert len(plan.actions) == STEPS


@pytest.mark.parametrize("crash_before", range(1, STEPS + 1))
def test_a_crash_before_any_relaunch_step_is_finished_by_a_rerun(
    deps: Deps, ec2_client: Any, app_sg: str, recorder: AppSshRecorder, crash_before: int
) -> None:
    seen: list[Action] = []

    def kill(action: Action) -> None:
        seen.append(action)
        if len(seen) == crash_before:
            raise Crash(action.kind)

    deps.before_each = kill
    with pytest.raises(Crash):
        relaunch_gateway(make_settings(app_sg=app_sg), deps)
    deps.before_each = None

    # In between: sg-app still admits SSH, status and up still see exactly one gateway.
    assert recorder.sources()
    data = status(make_settings(app_sg=app_sg), deps)
    assert data["instance"] is not None
    # Before the first step nothing happened yet; after it, status says what to rerun.
    assert any("relaunch is half done" in d for d in data["drift"]) == (crash_before > 1)

    relaunch_gateway(make_settings(app_sg=app_sg), deps)

    assert all(sources for _, sources in recorder.snapshots)
    assert_relaunched(ec2_client, app_sg, recorder, deps)


def test_down_in_the_middle_of_a_relaunch_leaves_no_instance_and_no_key_pair(
    deps: Deps, ec2_client: Any, app_sg: str, recorder: AppSshRecorder
) -> None:
    from bastion.usecases.down import down

    def kill(action: Action) -> None:
        if action.kind == "authorize_app_ssh" or "app" in action.summary:
            raise Crash(action.kind)

    deps.before_each = kill
    with pytest.raises(Crash):
        relaunch_gateway(make_settings(app_sg=app_sg), deps)
    deps.before_each = None
    assert len(live_instances(ec2_client)) == 2  # the standby runs beside the gateway

    down(make_settings(app_sg=app_sg), deps)

    assert live_instances(ec2_client) == []
    assert ec2_client.describe_key_pairs()["KeyPairs"] == []
    names = [g["GroupName"] for g in ec2_client.describe_security_groups()["SecurityGroups"]]
    assert not [n for n in names if n.startswith("bastion-")]
