"""Which login keys bastion put on the gateway, which not, and what rotate does about the rest."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime

from bastion.domain.audit import AuditOptions, Snapshot, resolve_layout
from bastion.domain.audit_checks import check_login_keys
from bastion.domain.login_keys import (
    LoginKeysReport,
    ended_sessions,
    known_login_keys,
    login_keys_view,
    parse_authorized_keys,
    unknown_login_keys,
)
from bastion.domain.model import InstanceInfo, KeyPairInfo
from bastion.domain.rotate_plan import plan_rotate_login


def public_key(comment: str = "") -> tuple[str, str]:
    """Return a fake ssh-ed25519 line and its fingerprint (no key library needed)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    line = f"ssh-ed25519 {base64.b64encode(blob).decode()}" + (f" {comment}" if comment else "")
    return line, f"SHA256:{digest}"


MINE, MINE_FP = public_key("bastion-default-login")
THIEF, THIEF_FP = public_key("thief@elsewhere")
NEXT, NEXT_FP = public_key()


def listing(*lines: str) -> str:
    return "".join(f"restrict,port-forwarding {line}\n" for line in lines)


def test_the_listing_is_parsed_into_fingerprints_types_and_comments() -> None:
    keys = parse_authorized_keys(listing(MINE, THIEF))
    assert [k.fingerprint for k in keys] == [MINE_FP, THIEF_FP]
    assert keys[1].key_type == "ssh-ed25519" and keys[1].comment == "thief@elsewhere"


def test_a_comment_cannot_carry_terminal_escapes_and_a_broken_line_is_skipped() -> None:
    line, _ = public_key("evil\x1b[2Jcomment")
    keys = parse_authorized_keys(listing(line) + "restrict ssh-ed25519 !!notbase64!!\n")
    assert len(keys) == 1 and "\x1b" not in keys[0].comment


def test_keys_bastion_holds_or_records_are_known_and_any_other_is_not() -> None:
    known = known_login_keys(MINE_FP, None, NEXT_FP, key_pairs=[MINE_FP])
    assert known == {MINE_FP, NEXT_FP}
    assert unknown_login_keys([MINE_FP, THIEF_FP, THIEF_FP, NEXT_FP], known) == [THIEF_FP]
    view = login_keys_view(parse_authorized_keys(listing(MINE, THIEF)), known)
    assert [row["known"] for row in view] == [True, False]


def test_the_sessions_keyctl_ended_are_read_from_its_answer() -> None:
    answer = f"removed {THIEF_FP}\nended 2 session(s) of {THIEF_FP}\n"
    assert ended_sessions(answer) == {THIEF_FP: 2}
    assert ended_sessions("already authorized x\n") == {}


def key_pair(fingerprint: str) -> KeyPairInfo:
    return KeyPairInfo(f"bastion-default-{fingerprint[7:15]}", "key-1", fingerprint, None)


def test_rotate_removes_an_unknown_key_only_after_proving_its_own() -> None:
    plan = plan_rotate_login(
        "default", MINE_FP, None, [MINE_FP, THIEF_FP], [key_pair(MINE_FP)], MINE_FP
    )
    kinds = [a.kind for a in plan.actions]
    removals = [a for a in plan.actions if a.kind == "gateway_remove_login"]
    assert [a.params["fingerprint"] for a in removals] == [THIEF_FP, MINE_FP]
    assert removals[0].params["unknown"] is True
    assert kinds.index("verify_next_login") < plan.actions.index(removals[0])
    assert plan.warnings and "bastion burn" in plan.warnings[0]


def test_a_resumed_rotation_never_removes_the_key_it_is_bringing_in() -> None:
    plan = plan_rotate_login(
        "default", MINE_FP, NEXT_FP, [MINE_FP, NEXT_FP, THIEF_FP], [key_pair(MINE_FP)], MINE_FP
    )
    removed = [a.params["fingerprint"] for a in plan.actions if a.kind == "gateway_remove_login"]
    assert removed == [THIEF_FP, MINE_FP]
    assert NEXT_FP not in removed


def test_a_key_recorded_in_the_tags_is_not_removed_as_unknown() -> None:
    tagged = plan_rotate_login("default", MINE_FP, None, [MINE_FP, NEXT_FP], [], NEXT_FP)
    assert not [a for a in tagged.actions if a.params.get("unknown")]
    assert not tagged.warnings


def gateway(instance_id: str = "i-0abc") -> InstanceInfo:
    return InstanceInfo(
        instance_id=instance_id,
        state="running",
        public_ip="198.51.100.9",
        private_ip="10.0.0.9",
        subnet_id="subnet-1",
        vpc_id="vpc-1",
        key_name=None,
        image_id="ami-1",
        launch_time=None,
        security_group_ids=(),
        tags={"bastion:role": "gateway", "bastion:name": "default"},
    )


def findings_for(report: LoginKeysReport) -> list[str]:
    snapshot = Snapshot(
        now=datetime(2026, 12, 1, tzinfo=UTC),
        groups=(),
        gateways=(gateway(),),
        login_keys={"i-0abc": report},
    )
    found = check_login_keys(snapshot, resolve_layout(snapshot, AuditOptions()))
    return [f"{f.check}:{f.severity}:{f.fix}" for f in found]


def test_audit_fails_on_an_unknown_login_key_and_says_to_rotate() -> None:
    (finding,) = findings_for(LoginKeysReport(True, unknown=[THIEF_FP]))
    assert finding.startswith("login-key-unknown:fail:run `bastion rotate --name default`")


def test_audit_warns_when_it_could_not_read_keys_it_should_have() -> None:
    assert findings_for(LoginKeysReport(False, "not reachable")) == [
        "login-keys-unchecked:warn:run the audit where the gateway's sshd is reachable "
        "(`bastion up` admits your IP)"
    ]
    assert findings_for(LoginKeysReport(False, "no admin key here", expected=False)) == []
    assert findings_for(LoginKeysReport(True)) == []
