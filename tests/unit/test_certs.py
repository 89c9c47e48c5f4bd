"""Certificates, pure: what each says, how long it lives, what is revoked, who connected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.adapters.render import SshdParams, UserDataParams, render_user_data
from bastion.adapters.render_certs import CertificateTrust
from bastion.domain.certs import (
    DEFAULT_LIFETIME,
    Revocations,
    certificate_sessions,
    parse_revocations,
    plan_certificate,
)
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import IngressRule, SecurityGroup

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ALICE = "arn:aws:iam::123456789012:user/alice"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlR3Ld4pmE4H8Qp0u7m7Jq1Xv0O2Yp2r3b9Xq0Xq0Xq alice@x"
CA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBB43 bastion-ca"


def group(*rules: tuple[str, str]) -> SecurityGroup:
    return SecurityGroup(
        "sg-1",
        "gw",
        "vpc-1",
        ingress=tuple(
            IngressRule(f"r{i}", "tcp", 62222, 62222, cidr=cidr, description=text)
            for i, (cidr, text) in enumerate(rules)
        ),
    )


def plan(gw: SecurityGroup, **kw: object) -> object:
    args: dict[str, object] = dict(
        public_key=KEY, principal="bastion", operator=ALICE, group=gw, port=62222, now=NOW, serial=7
    )
    args.update(kw)
    return plan_certificate(**args)  # type: ignore[arg-type]


def test_a_certificate_names_the_caller_and_only_their_own_addresses() -> None:
    gw = group(
        ("198.51.100.7/32", "bastion:me by alice at 2026-12-01T09:00:00Z"),
        ("203.0.113.9/32", "bastion:office by bob at 2026-12-01T09:00:00Z"),
    )
    request = plan(gw)
    assert request.key_id == ALICE and request.principals == ("bastion",)  # type: ignore[attr-defined]
    assert request.source_addresses == ("198.51.100.7/32",)  # type: ignore[attr-defined]
    assert request.extensions == ("permit-port-forwarding",)  # type: ignore[attr-defined]
    assert request.valid_before == NOW + DEFAULT_LIFETIME  # type: ignore[attr-defined]


def test_a_certificate_lives_no_longer_than_the_allow_rule() -> None:
    gw = group(("198.51.100.7/32", "bastion:adhoc by alice at x until 2026-12-01T12:20Z"))
    request = plan(gw, lifetime=timedelta(hours=8))
    assert request.valid_before == datetime(2026, 12, 1, 12, 20, tzinfo=UTC)  # type: ignore[attr-defined]


def test_no_own_rule_or_an_expired_one_gives_no_certificate() -> None:
    with pytest.raises(NotFoundError, match="bastion allow me"):
        plan(group(("198.51.100.7/32", "bastion:me by bob at x")))
    with pytest.raises(NotFoundError):
        plan(group(("198.51.100.7/32", "bastion:adhoc by alice at x until 2026-12-01T11:00Z")))


def test_the_admin_certificate_carries_no_extension() -> None:
    gw = group(("198.51.100.7/32", "bastion:me by alice at x"))
    assert plan(gw, principal="bastion-admin", admin=True).extensions == ()  # type: ignore[attr-defined]


def test_revocations_take_serials_arns_and_keys_and_read_back() -> None:
    revoked = Revocations().adding("42").adding(ALICE).adding(KEY).adding("42")
    assert revoked.spec() == f"serial: 42\nid: {ALICE}\nkey: {' '.join(KEY.split()[:2])}\n"
    assert parse_revocations(revoked.spec()) == revoked
    with pytest.raises(UsageError, match="serial"):
        Revocations().adding("alice; rm -rf /")


def test_sessions_name_the_operator_address_serial_start_and_end() -> None:
    log = (
        "2026-12-01T10:00:00+0000 gw sshd-session[9]: Accepted publickey for bastion from "
        "198.51.100.7 port 5000 ssh2: ED25519-CERT SHA256:abc ID "
        f"{ALICE} (serial 42) CA ECDSA SHA256:def\n"
        "2026-12-01T10:05:00+0000 gw sshd-session[9]: Disconnected from user bastion "
        "198.51.100.7 port 5000\n"
    )
    forged = (
        "2026-12-01T10:01:00+0000 gw sshd-session[7]: Invalid user x: Accepted publickey for "
        "bastion from 6.6.6.6 port 1 ssh2: ED25519-CERT SHA256:a ID arn:forged (serial 1) CA x\n"
    )
    (session,) = certificate_sessions(log + forged)
    assert (session.operator, session.address, session.serial) == (ALICE, "198.51.100.7", 42)
    assert session.started.startswith("2026-12-01T10:00") and session.ended.startswith(
        "2026-12-01T10:05"
    )


def test_user_data_with_certificates_trusts_the_ca_and_carries_the_krl() -> None:
    text = render_user_data(
        UserDataParams(
            sshd=SshdParams(port=62222),
            image_family="debian13",
            login_public_key=KEY,
            admin_public_key=KEY.replace("AAAAIHlR", "AAAAIHlS"),
            vpc_cidrs=("10.0.0.0/16",),
            certificates=CertificateTrust(CA, b"SSHKRL\n"),
        )
    )
    assert "/etc/ssh/bastion/trusted_user_ca_keys" in text and CA in text
    assert "/etc/ssh/bastion/revoked_keys" in text and "U1NIS1JMCg==" in text  # the KRL, b64
    without = render_user_data(
        UserDataParams(
            sshd=SshdParams(port=62222),
            image_family="debian13",
            login_public_key=KEY,
            admin_public_key=KEY.replace("AAAAIHlR", "AAAAIHlS"),
            vpc_cidrs=("10.0.0.0/16",),
        )
    )
    assert "trusted_user_ca_keys" not in without
