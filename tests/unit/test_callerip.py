"""Caller IP detection: majority of independent services, never a single voice."""

from __future__ import annotations

import pytest

from bastion.adapters.callerip import detect_caller_cidr
from bastion.domain.cidr import is_world_open, normalize_cidr
from bastion.domain.errors import CallerIpError, UsageError

SERVICES = ("https://a.example", "https://b.example", "https://c.example")


def answers(mapping: dict[str, str]):  # type: ignore[no-untyped-def]
    def fetch(url: str, timeout: float) -> str:
        if url not in mapping:
            raise TimeoutError("timed out")
        return mapping[url]

    return fetch


def test_unanimous_ipv4_becomes_a_slash_32() -> None:
    fetch = answers({u: "203.0.113.7\n" for u in SERVICES})
    assert detect_caller_cidr(fetch, SERVICES) == "203.0.113.7/32"


def test_ipv6_becomes_a_slash_128() -> None:
    fetch = answers({u: "2001:db8::7" for u in SERVICES})
    assert detect_caller_cidr(fetch, SERVICES) == "2001:db8::7/128"


def test_two_of_three_agreeing_wins_over_one_failure() -> None:
    fetch = answers({SERVICES[0]: "203.0.113.7", SERVICES[2]: "203.0.113.7"})
    assert detect_caller_cidr(fetch, SERVICES) == "203.0.113.7/32"


def test_one_answer_alone_is_not_trusted() -> None:
    fetch = answers({SERVICES[0]: "203.0.113.7"})
    with pytest.raises(CallerIpError, match="disagree or too few"):
        detect_caller_cidr(fetch, SERVICES)


def test_garbage_from_a_service_loses_its_vote() -> None:
    fetch = answers({SERVICES[0]: "<html>", SERVICES[1]: "203.0.113.7", SERVICES[2]: "203.0.113.7"})
    assert detect_caller_cidr(fetch, SERVICES) == "203.0.113.7/32"


def test_all_down_says_to_pass_allow() -> None:
    with pytest.raises(CallerIpError, match="--allow"):
        detect_caller_cidr(answers({}), SERVICES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1/32"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("2001:db8::1", "2001:db8::1/128"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_normalize_cidr_accepts_addresses_and_networks(text: str, expected: str) -> None:
    assert normalize_cidr(text) == expected


@pytest.mark.parametrize(
    "text", ["", "nope", "300.1.1.1", "10.0.0.1/24", "10.0.0.0/33", "1.2.3.4; rm"]
)
def test_normalize_cidr_rejects_malformed_input(text: str) -> None:
    with pytest.raises(UsageError):
        normalize_cidr(text)


def test_world_open_is_recognized_for_both_families() -> None:
    assert is_world_open("0.0.0.0/0") and is_world_open("::/0")
    assert not is_world_open("0.0.0.0/1")
