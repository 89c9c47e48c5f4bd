"""A refused endpoint fails at once, naming AWS_ENDPOINT_URL; throttling is still retried."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError

from bastion.adapters.aws.client import Ec2, fail_fast_on_connection_errors, make_session
from bastion.domain.errors import AwsError
from tests.faults import Fault
from tests.support import free_port


def _sends(client: Any) -> list[str]:
    seen: list[str] = []
    client.meta.events.register("before-send", lambda **_: seen.append("send"))
    return seen


def test_a_refused_endpoint_is_tried_once_and_the_error_names_aws_endpoint_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    ec2 = Ec2(make_session(None, "us-east-1"))
    sends = _sends(ec2._sts)
    started = time.monotonic()
    with pytest.raises(AwsError) as failure:
        ec2.caller_arn()
    elapsed = time.monotonic() - started
    assert sends == ["send"]  # no retry: a refused connection stays refused
    assert elapsed < 3, elapsed  # botocore's 7 retries with backoff took 7 to 16 s
    message = failure.value.message
    assert f"nothing answers at {url}" in message
    assert "AWS_ENDPOINT_URL" in message and "--region" not in message


def test_the_ec2_client_fails_fast_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    ec2 = Ec2(make_session(None, "us-east-1"))
    sends = _sends(ec2.ec2)
    with pytest.raises(AwsError, match="AWS_ENDPOINT_URL"):
        ec2.network.subnet(None, None)
    assert sends == ["send"]


def test_throttling_is_still_retried(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)
    ec2 = Ec2(make_session(None, "us-east-1"))
    fault = Fault("DescribeVpcs", "RequestLimitExceeded", status=503, times=3)
    fault.attach(ec2)
    ec2.ec2.describe_vpcs()
    assert fault.seen == 3  # three throttled answers, then the fourth attempt succeeded


def test_a_connect_timeout_is_tried_twice_not_eight_times() -> None:
    timeout = ConnectTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")
    fail_fast_on_connection_errors(caught_exception=timeout, attempts=1)  # one retry allowed
    with pytest.raises(ConnectTimeoutError):
        fail_fast_on_connection_errors(caught_exception=timeout, attempts=2)
    fail_fast_on_connection_errors(caught_exception=None, attempts=5)  # an answer: botocore's call
