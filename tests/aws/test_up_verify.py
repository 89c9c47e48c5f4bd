"""`bastion up` verifies a booting gateway: retry what a retry can mend, never a wrong key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bastion.domain.clock import FakeClock
from bastion.domain.errors import GatewayUnavailable, HostKeyMismatchError, SshError, TimeoutExpired
from bastion.usecases.up import up
from bastion.wiring import Deps
from tests.aws.conftest import FakeProbe, make_settings


@dataclass
class FlakyProbe(FakeProbe):
    """sshd that drops the first logins (an image restarting it), or fails them some other way."""

    failures: list[Exception] = field(default_factory=list)
    logins: int = 0

    def verify_login(self, host: str, port: int, user: str, key_path: str, pinned: str) -> str:
        self.logins += 1
        if self.failures:
            raise self.failures.pop(0)
        return super().verify_login(host, port, user, key_path, pinned)


@pytest.fixture
def probe() -> FlakyProbe:
    return FlakyProbe()


def test_a_login_refused_while_sshd_restarts_is_retried_until_it_works(
    deps: Deps, probe: FlakyProbe
) -> None:
    probe.failures = [
        GatewayUnavailable("cannot connect to 127.0.0.1:62222: Connection refused"),
        TimeoutExpired("127.0.0.1:62222 sent no SSH greeting within 10s"),
    ]
    result = up(make_settings(), deps)
    assert probe.logins == 3
    assert result.status["host_key_fingerprint"]


def test_a_wrong_host_key_fails_at_once_without_retrying(deps: Deps, probe: FlakyProbe) -> None:
    probe.failures = [HostKeyMismatchError("host key mismatch at 127.0.0.1:62222")]
    with pytest.raises(HostKeyMismatchError):
        up(make_settings(), deps)
    assert probe.logins == 1


def test_a_refused_login_key_fails_at_once_without_retrying(deps: Deps, probe: FlakyProbe) -> None:
    # Each failed authentication counts toward sshd's per-source penalties: never hammer.
    probe.failures = [SshError("gateway refused login key SHA256:x for user 'bastion'")]
    with pytest.raises(SshError, match="refused login key"):
        up(make_settings(), deps)
    assert probe.logins == 1


def test_verification_gives_up_at_the_timeout_naming_the_last_failure(
    deps: Deps, probe: FlakyProbe
) -> None:
    probe.failures = [GatewayUnavailable("Connection reset by peer")] * 1000
    with pytest.raises(TimeoutExpired, match="last attempt: Connection reset by peer"):
        up(make_settings(wait_timeout=30.0), deps)
    assert isinstance(deps.clock, FakeClock)
    assert 10 <= probe.logins <= 20  # every 2 s of the injected clock, not a busy loop
