"""The AWS adapter's front door: one session's clients, and each concern's own adapter.

`Ec2` holds the boto3 clients and hands one to each part (compute, security groups, network,
key pairs, images, evidence); each part is the only door to boto3 for its calls, and every
failure goes through `errors.translated`. Use cases see only the `Cloud` port.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from bastion.adapters.aws.audit_reads import AuditReads
from bastion.adapters.aws.compute import Compute
from bastion.adapters.aws.errors import translated
from bastion.adapters.aws.evidence import Evidence
from bastion.adapters.aws.keypairs import Images, KeyPairs
from bastion.adapters.aws.kms import CertificateAuthority
from bastion.adapters.aws.lock import DynamoLocks
from bastion.adapters.aws.network import Network
from bastion.adapters.aws.security_groups import SecurityGroups
from bastion.domain.errors import UsageError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

T = TypeVar("T")

SessionFactory = Callable[[str | None, str | None], "boto3.Session"]
"""Make a boto3 session from a profile and a region (`make_session`, or a test's)."""


def make_session(profile: str | None, region: str | None) -> boto3.Session:
    """Build a boto3 session from the standard credential chain."""
    import boto3

    # --region, then AWS_REGION (as the AWS CLI v2 and the SDKs take it), then botocore's own
    # chain (AWS_DEFAULT_REGION, the profile's region); botocore alone reads no AWS_REGION.
    if region is None:
        region = os.environ.get("AWS_REGION") or None
    with translated("reading AWS configuration"):
        session = boto3.Session(profile_name=profile, region_name=region)
    chosen = session.region_name
    if not chosen:
        raise UsageError("no AWS region set; pass --region or set AWS_REGION")
    known = set(session.get_available_regions("ec2"))
    for partition in ("aws-cn", "aws-us-gov"):
        known |= set(session.get_available_regions("ec2", partition_name=partition))
    if chosen not in known:
        raise UsageError(
            f"unknown AWS region {chosen!r}; pass --region with a region such as us-east-1"
        )
    return session


@contextlib.contextmanager
def _endpoint_checked() -> Iterator[None]:
    """Turn botocore's `ValueError: Invalid endpoint` (a malformed endpoint URL) into a fix."""
    try:
        yield
    except ValueError as exc:
        if "endpoint" not in str(exc).lower():
            raise
        raise UsageError(
            f"the AWS endpoint URL is not a URL ({exc}); set AWS_ENDPOINT_URL (or endpoint_url "
            "in the AWS config) to one like https://ec2.us-east-1.amazonaws.com, or unset it"
        ) from exc


# Throttling and 5xx answers are retried (botocore's standard mode, up to 8 attempts); a
# connection that times out is tried twice; one that is refused, or a name that does not
# resolve, is not retried at all: nothing listens there, and waiting will not change that.
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5
CONNECT_TIMEOUT_ATTEMPTS = 2


def nothing_listens(exc: BaseException) -> bool:
    """Tell whether a failed AWS call was refused or its host unknown (no retry will help)."""
    import socket

    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError | socket.gaierror):
            return True
        inner = getattr(current, "kwargs", {}).get("error")
        pending += [current.__cause__, current.__context__]
        if isinstance(inner, BaseException):
            pending.append(inner)
    return False


def fail_fast_on_connection_errors(
    caught_exception: BaseException | None = None, attempts: int = 1, **_: Any
) -> None:
    """Stop botocore retrying a connection nothing answers (a `needs-retry` handler).

    Raising here ends the call with the connection error itself, before the retry handler
    (registered after this one) would sleep and try again.
    """
    from botocore.exceptions import ConnectTimeoutError

    if caught_exception is None:
        return
    if nothing_listens(caught_exception):
        raise caught_exception
    if isinstance(caught_exception, ConnectTimeoutError) and attempts >= CONNECT_TIMEOUT_ATTEMPTS:
        raise caught_exception


def _failing_fast(client: T) -> T:
    """Register `fail_fast_on_connection_errors` on `client` (before its retry handler)."""
    client.meta.events.register_first("needs-retry", fail_fast_on_connection_errors)  # type: ignore[attr-defined]
    return client


def _ec2_client(session: boto3.Session, config: Any) -> EC2Client:
    """Make the EC2 client from the cut model when cached (a third of the time), else in full."""
    from botocore.exceptions import DataNotFoundError

    from bastion.adapters.aws import models

    try:
        # boto3 names no public door to its botocore session, whose loader this needs.
        with models.cut_model(session._session, models.cache_root()):
            return session.client("ec2", config=config)
    except (KeyError, OSError, ValueError, DataNotFoundError) as exc:
        if isinstance(exc, ValueError) and "endpoint" in str(exc).lower():
            raise
        log.debug("EC2's cut model failed (%s); using the full model", exc)  # a damaged cache
        return session.client("ec2", config=config)


class Ec2:
    """EC2, SSM, STS and DynamoDB (the lock) for one account and region, split by concern."""

    def __init__(self, session: boto3.Session) -> None:
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
            connect_timeout=CONNECT_TIMEOUT_S,
        )
        with translated("creating AWS clients"), _endpoint_checked():
            self.ec2: EC2Client = _failing_fast(_ec2_client(session, config))
        self._session, self._config = session, config
        self.region: str = session.region_name or ""
        self.compute = Compute(self.ec2)
        self.groups = SecurityGroups(self.ec2, self.region)
        self.network = Network(self.ec2)
        self.key_pairs = KeyPairs(self.ec2)
        self.images = Images(self.ec2, lambda: self.ssm, self.region)
        self.evidence = Evidence(self.ec2)
        self.ca = CertificateAuthority(session, config)
        self.locks = DynamoLocks(lambda: self.dynamodb)
        self._call_handlers: list[Callable[..., Any]] = []
        self.audit_reads = AuditReads(self.ec2)

    @functools.cached_property
    def ssm(self) -> SSMClient:
        """Return the SSM client, made on first use (only image lookups need it)."""
        with translated("creating the SSM client"), _endpoint_checked():
            return _failing_fast(self._session.client("ssm", config=self._config))

    @functools.cached_property
    def dynamodb(self) -> Any:
        """Return the DynamoDB client, made on first use (only the gateway lock needs it)."""
        with translated("creating the DynamoDB client"), _endpoint_checked():
            client = self._session.client("dynamodb", config=self._config)
        for handler in self._call_handlers:
            client.meta.events.register("before-call.dynamodb.*", handler)
        return client

    @functools.cached_property
    def _sts(self) -> Any:
        with translated("creating the STS client"), _endpoint_checked():
            return _failing_fast(self._session.client("sts", config=self._config))

    def call_log(self) -> CallLog:
        """Start recording every EC2 call (operation and AWS request id); return the live list."""
        collected = CallLog()

        def record(parsed: Any = None, model: Any = None, **_: Any) -> None:
            entry = {"operation": getattr(model, "name", "?")}
            if isinstance(parsed, dict):
                entry["request_id"] = str(parsed.get("ResponseMetadata", {}).get("RequestId", ""))
                if parsed.get("Error"):
                    entry["error"] = str(parsed["Error"].get("Code", "error"))
            collected.append(entry)

        def record_error(exception: Any = None, model: Any = None, **_: Any) -> None:
            if exception is not None:
                error = type(exception).__name__
                collected.append({"operation": getattr(model, "name", "?"), "error": error})

        self.ec2.meta.events.register("after-call.ec2.*", record)
        self.ec2.meta.events.register("after-call-error.ec2.*", record_error)
        return collected

    def on_call(self, handler: Callable[..., Any]) -> None:
        """Register `handler(model=...)` before each EC2 (and lock) call, e.g. to count calls."""
        self.ec2.meta.events.register("before-call.ec2.*", handler)
        self._call_handlers.append(handler)
        if "dynamodb" in self.__dict__:
            self.dynamodb.meta.events.register("before-call.dynamodb.*", handler)

    def caller_arn(self) -> str:
        """Return the ARN of the caller; fails early when credentials are missing."""
        with translated("checking AWS credentials", service="sts"):
            return str(self._sts.get_caller_identity()["Arn"])


class CallLog(list[dict[str, str]]):
    """The calls made so far, in order; also per context, for calls made concurrently.

    Each context (a thread, or work handed on with `contextvars.copy_context()`) collects its
    own calls, so a step run beside others still knows exactly which calls were its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._own: contextvars.ContextVar[list[dict[str, str]] | None] = contextvars.ContextVar(
            f"calls-{id(self)}", default=None
        )

    def append(self, entry: dict[str, str]) -> None:
        """Record one call, made in the current context."""
        with self._lock:
            super().append(entry)
            own = self._own.get()
            if own is not None:
                own.append(entry)

    def take_own(self) -> list[dict[str, str]]:
        """Return and forget the calls this context made since it last asked (from now on)."""
        with self._lock:
            own = self._own.get()
            if own is None:
                self._own.set([])
                return []
            taken = list(own)
            own.clear()  # the same list object: contexts copied from this one share it
            return taken
