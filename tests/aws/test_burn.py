"""`bastion burn` against moto: contain first, keep evidence, destroy, relaunch, resume."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from bastion.domain.clock import FakeClock
from bastion.domain.incident import CONTAIN, DESTROY, PRESERVE, RELAUNCH
from bastion.domain.model import Action
from bastion.usecases.burn import burn, incidents_dir
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import CallCounter, make_settings

# Written out here, not imported from bastion.domain.incident: the test states what containment is.
CONTAINMENT_CALLS = {
    "RevokeSecurityGroupIngress",
    "CreateNetworkAclEntry",
    "ModifyNetworkInterfaceAttribute",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "DisassociateAddress",
}


def _app_ssh_sources(ec2_client: Any, app_sg: str) -> list[str]:
    app = ec2_client.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]
    return [
        pair["GroupId"]
        for p in app["IpPermissions"]
        if p["FromPort"] == 22
        for pair in p["UserIdGroupPairs"]
    ]


def _instance(ec2_client: Any, instance_id: str) -> dict[str, Any]:
    return ec2_client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][
        0
    ]


@pytest.fixture
def gateway(deps: Deps, ec2_client: Any, app_sg: str) -> dict[str, Any]:
    result = up(make_settings(app_sg=app_sg), deps)
    status = result.status
    assert status
    allocation = ec2_client.allocate_address(Domain="vpc")["AllocationId"]
    ec2_client.associate_address(AllocationId=allocation, InstanceId=status["instance"]["id"])
    return {**status, "allocation": allocation}


def test_burn_contains_first_then_relaunches_a_new_generation(
    deps: Deps, counter: CallCounter, ec2_client: Any, app_sg: str, gateway: dict[str, Any]
) -> None:
    counter.reset()
    result = burn(make_settings(), deps, reason="odd logins")

    mutating = counter.mutating_sequence
    # Containment goes out at once, so its calls come in any order among themselves; every one
    # of them comes before the first change of any other kind, and none after it.
    first_non_containment = next(i for i, op in enumerate(mutating) if op not in CONTAINMENT_CALLS)
    assert set(mutating[:first_non_containment]) == {
        "RevokeSecurityGroupIngress",  # sg-app's trust
        "CreateNetworkAclEntry",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "ModifyNetworkInterfaceAttribute",
        "DisassociateAddress",
    }
    assert mutating[:first_non_containment].count("ModifyNetworkInterfaceAttribute") == 2
    assert not set(mutating[first_non_containment:]) & {
        "RevokeSecurityGroupIngress",
        "ModifyNetworkInterfaceAttribute",
        "DisassociateAddress",
    }
    assert result.incident.state == "closed"
    done = result.incident.steps_done
    assert set(done[: len(CONTAIN)]) == set(CONTAIN)  # at once: in the order they finished
    assert done[len(CONTAIN) :] == list(PRESERVE + DESTROY + RELAUNCH)

    old = _instance(ec2_client, gateway["instance"]["id"])
    assert old["State"]["Name"] == "terminated"
    new = result.incident.relaunch
    assert new["generation"] == 2
    assert new["host_key_fingerprint"] != gateway["host_key_fingerprint"]
    assert new["login_key_fingerprint"] != gateway["login_key_fingerprint"]

    ssh_sources = _app_ssh_sources(ec2_client, app_sg)
    assert ssh_sources == [new["security_group"]]

    names = [g["GroupName"] for g in ec2_client.describe_security_groups()["SecurityGroups"]]
    assert [n for n in names if n.startswith("bastion-")] == ["bastion-default-gw-2"]
    for acl in ec2_client.describe_network_acls()["NetworkAcls"]:
        assert all(e["RuleAction"] == "allow" or e["RuleNumber"] == 32767 for e in acl["Entries"])
    key_names = [k["KeyName"] for k in ec2_client.describe_key_pairs()["KeyPairs"]]
    assert len(key_names) == 1 and gateway["key_pair"] not in key_names

    snapshots = ec2_client.describe_snapshots(
        Filters=[{"Name": "tag:bastion:incident", "Values": [result.incident.incident_id]}]
    )["Snapshots"]
    assert len(snapshots) == 1
    address = ec2_client.describe_addresses(AllocationIds=[gateway["allocation"]])["Addresses"][0]
    assert address["InstanceId"] == new["instance_id"]

    record = json.loads(result.record_path.read_text())
    assert record["reason"] == "odd logins"
    assert len(record["evidence"]["console_output"]["sha256"]) == 64
    assert record["pre_incident"]["instance_id"] == gateway["instance"]["id"]
    journal = (result.record_path.parent / "journal.jsonl").read_text().splitlines()
    phases = [json.loads(line)["phase"] for line in journal]
    assert phases.count("intent") == phases.count("done") == len(result.incident.steps_done)
    revoke = next(
        json.loads(line) for line in journal if '"contain_app_ssh"' in line and '"done"' in line
    )
    operations = [c["operation"] for c in revoke["calls"]]
    # one read, the revoke, then the read-back
    read = "DescribeSecurityGroups"
    assert operations == [read, "RevokeSecurityGroupIngress", read]
    assert all(c["request_id"] for c in revoke["calls"])


def _contained(ec2_client: Any, app_sg: str, instance_id: str, old_group: str) -> bool:
    """Tell whether the old gateway is cut off: no app trust, isolated, denied in the ACL."""
    app = ec2_client.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]
    trusted = any(
        pair["GroupId"] == old_group for p in app["IpPermissions"] for pair in p["UserIdGroupPairs"]
    )
    instance = _instance(ec2_client, instance_id)
    groups = {g["GroupName"] for n in instance["NetworkInterfaces"] for g in n["Groups"]}
    isolated = len(groups) == 1 and groups.pop().endswith("-isolate")
    denied = {
        e["Egress"]
        for a in ec2_client.describe_network_acls()["NetworkAcls"]
        for e in a["Entries"]
        if e["RuleAction"] == "deny" and e["CidrBlock"] == f"{instance['PrivateIpAddress']}/32"
    }
    return not trusted and isolated and denied == {True, False}


def test_until_the_gateway_is_contained_only_containment_calls_run(
    deps: Deps, ec2_client: Any, app_sg: str, gateway: dict[str, Any]
) -> None:
    """After every mutating call, look at AWS: until contained, only containment calls ran."""
    timeline: list[tuple[str, bool]] = []

    def after_call(model: Any, **_: Any) -> None:
        from bastion.domain.calls import is_mutating

        if is_mutating(model.name):
            state = _contained(
                ec2_client, app_sg, gateway["instance"]["id"], gateway["security_group"]
            )
            timeline.append((model.name, state))

    before = deps.on_ec2

    def watch(ec2: Any) -> None:
        if before:
            before(ec2)
        ec2.ec2.meta.events.register("after-call.ec2.*", after_call)

    deps.on_ec2 = watch
    burn(make_settings(), deps, reason="timeline")

    first_contained = next(i for i, (_, contained) in enumerate(timeline) if contained)
    before = [op for op, _ in timeline[: first_contained + 1]]
    assert set(before) <= CONTAINMENT_CALLS, before
    # and once contained, it stays contained until the instance is gone
    ops = [op for op, _ in timeline]
    terminated = ops.index("TerminateInstances")
    assert all(contained for _, contained in timeline[first_contained:terminated])


class TickingClock(FakeClock):
    """A clock that moves one second on every reading, so durations are not all zero."""

    def now(self) -> Any:
        self.elapsed += 1
        return super().now()


def test_the_report_is_complete_and_its_time_to_contain_matches_the_journal(
    deps: Deps, gateway: dict[str, Any]
) -> None:
    deps.clock = TickingClock()
    result = burn(make_settings(), deps, reason="report")

    report = json.loads(result.record_path.read_text())
    assert result.record_path.name == "report.json"
    journal = [
        json.loads(line)
        for line in (result.record_path.parent / "journal.jsonl").read_text().splitlines()
    ]
    # Contained when the last containment step is done (they run at once).
    contained_at = max(e["at"] for e in journal if e["step"] in CONTAIN and e["phase"] == "done")
    started = datetime.fromisoformat(report["started_at"])
    expected = (datetime.fromisoformat(contained_at) - started).total_seconds()
    assert expected > 0
    assert report["timings"]["time_to_contain_s"] == expected
    assert report["phase_times"]["contained"] == contained_at
    assert set(report["phase_times"]) == {"contained", "evidence_secured", "destroyed", "recovered"}
    assert report["timings"]["time_to_recover_s"] > report["timings"]["time_to_contain_s"]
    assert report["keys"]["old"]["host_key_fingerprint"] == gateway["host_key_fingerprint"]
    assert (
        report["keys"]["new"]["host_key_fingerprint"]
        == result.incident.relaunch["host_key_fingerprint"]
    )
    operations = [c["operation"] for c in report["api_calls"]]
    assert operations.index("RevokeSecurityGroupIngress") < operations.index("CreateSnapshot")
    assert all(c.get("request_id") or c.get("error") for c in report["api_calls"]), [
        c for c in report["api_calls"] if not c.get("request_id")
    ]
    markdown = (result.record_path.parent / "report.md").read_text()
    assert result.incident.incident_id in markdown and "time to contain" in markdown
    for path in result.record_path.parent.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
        assert "PRIVATE KEY" not in path.read_text(errors="replace")


def test_status_lists_past_incidents(deps: Deps, gateway: dict[str, Any]) -> None:
    from bastion.usecases.status import status

    result = burn(make_settings(), deps, reason="listed")
    listed = status(make_settings(), deps)["incidents"]
    assert [i["id"] for i in listed] == [result.incident.incident_id]
    assert listed[0]["state"] == "closed" and listed[0]["reason"] == "listed"


def test_keep_instance_leaves_it_stopped_isolated_and_denied(
    deps: Deps, ec2_client: Any, gateway: dict[str, Any]
) -> None:
    result = burn(make_settings(), deps, keep_instance=True, relaunch=False)

    old = _instance(ec2_client, gateway["instance"]["id"])
    assert old["State"]["Name"] == "stopped"
    groups = {g["GroupName"] for n in old["NetworkInterfaces"] for g in n["Groups"]}
    assert groups == {f"bastion-default-{result.incident.incident_id}-isolate"}
    isolation = ec2_client.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": list(groups)}]
    )["SecurityGroups"][0]
    assert isolation["IpPermissions"] == [] and isolation["IpPermissionsEgress"] == []
    denies = [
        e
        for a in ec2_client.describe_network_acls()["NetworkAcls"]
        for e in a["Entries"]
        if e["RuleAction"] == "deny" and e["RuleNumber"] < 32767
    ]
    assert {e["CidrBlock"] for e in denies} == {f"{old['PrivateIpAddress']}/32"}
    assert {e["Egress"] for e in denies} == {True, False}


def test_up_after_keep_instance_burn_launches_a_new_gateway_not_the_evidence(
    deps: Deps, ec2_client: Any, app_sg: str, gateway: dict[str, Any]
) -> None:
    burn(make_settings(), deps, keep_instance=True, relaunch=False)
    result = up(make_settings(app_sg=app_sg), deps)
    assert result.status and result.status["instance"]["id"] != gateway["instance"]["id"]
    assert _instance(ec2_client, gateway["instance"]["id"])["State"]["Name"] == "stopped"


def test_dry_run_lists_every_call_it_would_make_and_makes_none(
    deps: Deps, counter: CallCounter, app_sg: str, gateway: dict[str, Any]
) -> None:
    counter.reset()
    result = burn(make_settings(), deps, dry_run=True)
    assert result.steps == list(CONTAIN + PRESERVE + DESTROY + RELAUNCH)
    assert counter.mutating == {}
    calls = result.calls
    assert calls["contain_app_ssh"] == [
        f"RevokeSecurityGroupIngress {app_sg} tcp/22 from {gateway['security_group']}"
    ]
    assert len(calls["contain_network_acl"]) == 2  # one ACL in the default VPC, in and out
    assert calls["contain_elastic_ip"][0].startswith("DisassociateAddress ")
    assert calls["destroy_instance"] == [f"TerminateInstances {gateway['instance']['id']}"]
    assert not list(incidents_dir(make_settings(), "us-east-1").glob("*"))


class Crash(Exception):
    pass


STEPS = list(CONTAIN + PRESERVE + DESTROY + RELAUNCH)


@pytest.mark.parametrize("crash_at", STEPS)
def test_a_burn_killed_at_any_step_resumes_without_undoing_containment(
    deps: Deps,
    counter: CallCounter,
    ec2_client: Any,
    app_sg: str,
    gateway: dict[str, Any],
    crash_at: str,
) -> None:
    def kill(action: Action) -> None:
        if action.kind == crash_at:
            raise Crash(crash_at)

    deps.before_each = kill
    with pytest.raises(Crash):
        burn(make_settings(), deps, reason="first try")
    deps.before_each = None
    folder = incidents_dir(make_settings(), "us-east-1")
    (incident_id,) = [p.name for p in folder.iterdir()]
    counter.reset()

    result = burn(make_settings(), deps)  # a plain burn finds the open incident

    assert result.incident.incident_id == incident_id
    assert result.incident.state == "closed"
    resumed = counter.mutating_sequence
    if STEPS.index(crash_at) > STEPS.index("contain_isolation_group"):
        # containment done before the crash is never undone: no interface goes back to "open"
        assert "ModifyNetworkInterfaceAttribute" not in resumed
    assert _instance(ec2_client, gateway["instance"]["id"])["State"]["Name"] == "terminated"
    sources = _app_ssh_sources(ec2_client, app_sg)
    assert sources == [result.incident.relaunch["security_group"]]
    live = [
        i
        for r in ec2_client.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert len(live) == 1


def test_no_gateway_is_a_not_found_error(deps: Deps) -> None:
    from bastion.domain.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no live instance"):
        burn(make_settings(), deps)


def test_a_plain_burn_on_another_machine_finds_the_open_incident_through_tags(
    deps: Deps, ec2_client: Any, app_sg: str, gateway: dict[str, Any]
) -> None:
    import shutil

    def kill(action: Action) -> None:
        if action.kind == "preserve_snapshots":
            raise Crash(action.kind)

    deps.before_each = kill
    with pytest.raises(Crash):
        burn(make_settings(), deps, reason="first machine")
    deps.before_each = None
    folder = incidents_dir(make_settings(), "us-east-1")
    (incident_id,) = [p.name for p in folder.iterdir()]
    shutil.rmtree(folder)  # the record stayed on the first machine

    result = burn(make_settings(), deps)

    assert result.incident.incident_id == incident_id
    assert result.incident.state == "closed"
    assert _instance(ec2_client, gateway["instance"]["id"])["State"]["Name"] == "terminated"
    sources = _app_ssh_sources(ec2_client, app_sg)
    assert sources == [result.incident.relaunch["security_group"]]


def test_burn_asks_who_is_burning_only_after_containment(
    deps: Deps,
    counter: CallCounter,
    gateway: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bastion.adapters.aws.client import Ec2

    seen: list[list[str]] = []
    real = Ec2.caller_arn

    def caller_arn(self: Ec2) -> str:
        seen.append(list(counter.mutating_sequence))
        return real(self)

    monkeypatch.setattr(Ec2, "caller_arn", caller_arn)
    counter.reset()
    result = burn(make_settings(), deps, reason="who")

    assert seen, "the operator was never identified"
    assert set(seen[0]) >= {"RevokeSecurityGroupIngress", "ModifyNetworkInterfaceAttribute"}
    assert seen[0].count("ModifyNetworkInterfaceAttribute") == 2  # isolated before STS
    assert result.incident.operator.startswith("arn:aws:")


def test_the_time_to_contain_counts_from_the_process_start(
    deps: Deps, gateway: dict[str, Any]
) -> None:
    deps.clock = TickingClock()
    result = burn(make_settings(), deps, reason="start")
    started = datetime.fromisoformat(result.incident.started_at)
    assert started == deps.clock.process_started_at()  # not when burn() was called
    assert result.incident.timings["startup_s"] > 0
