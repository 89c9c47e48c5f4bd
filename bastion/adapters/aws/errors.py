"""The one place botocore's failures become `BastionError`s that say what to do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from bastion.domain.errors import AwsAuthError, AwsError, NotFoundError, UsageError

AUTH_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "AccessDenied",
        "AccessDeniedException",
        "OptInRequired",
    }
)
# A policy that lacks the action (or whose conditions do not hold): the caller is known.
DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
# AWS (and moto) name the caller and the action in the message; EC2 adds an encoded blob.
_DENIED = re.compile(r"User: (?P<who>\S+) is not authorized to perform: (?P<action>[\w-]+:\w+)")
POLICY_DOCUMENT = "policy/bastion.json"
LIMIT_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "SecurityGroupLimitExceeded",
        "KeyPairLimitExceeded",
        "InsufficientInstanceCapacity",
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
    }
)
LIMIT_HINTS = {
    "InstanceLimitExceeded": "terminate unused instances or ask AWS for a higher limit",
    "VcpuLimitExceeded": "terminate unused instances or request a vCPU quota increase",
    "InsufficientInstanceCapacity": "try another --instance-type or --subnet in another zone",
    "RequestLimitExceeded": "AWS kept throttling after retries; wait a minute and rerun",
}


def denied_message(service: str, operation: str, message: str) -> str:
    """Say which IAM action AWS refused, to whom, and where the policy that grants it is."""
    found = _DENIED.search(message)
    action = found["action"] if found else f"{service}:{operation}"
    who = found["who"] if found else "these credentials"
    return (
        f"AWS refused {action} for {who}: add it to the policy ({POLICY_DOCUMENT}); "
        "if it is there, the resource lacks bastion's tags"
    )


@contextmanager
def translated(doing: str, service: str = "ec2") -> Iterator[None]:
    """Turn botocore failures into `BastionError`s that say what to do.

    `service` is the IAM prefix of the calls inside (ec2, ssm, sts), named when AWS refuses one.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )
    from botocore.parsers import ResponseParserError

    try:
        yield
    except ResponseParserError as exc:
        raise AwsError(f"{doing}: the endpoint sent an unreadable answer; retry shortly") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        message = error.get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # moto answers JSON services' refusals in XML, which botocore cannot read a code from.
        if code in DENIED_CODES or (status == 403 and _DENIED.search(message)):
            raise AwsAuthError(denied_message(service, exc.operation_name, message)) from exc
        if code in AUTH_CODES:
            raise AwsAuthError(
                f"{doing}: AWS denied it ({code}: {message}); "
                "check the credentials' IAM permissions or pick another --profile"
            ) from exc
        if code in LIMIT_CODES:
            hint = LIMIT_HINTS.get(code, "raise the limit or remove unused resources")
            raise AwsError(f"{doing}: {code}: {message}; {hint}") from exc
        if code.endswith("NotFound") or code.endswith(".Malformed"):
            raise NotFoundError(f"{doing}: {code}: {message}") from exc
        raise AwsError(f"{doing}: {code}: {message}") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise AwsAuthError(
            "no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile"
        ) from exc
    except ProfileNotFound as exc:
        raise AwsAuthError(f"{exc}; list profiles with `aws configure list-profiles`") from exc
    except NoRegionError as exc:
        raise UsageError("no AWS region set; pass --region or set AWS_REGION") from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise AwsError(f"{doing}: {unreachable_hint(exc)}") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{doing}: {exc}") from exc


# Where botocore takes an endpoint override from (the service's own variable first).
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SSM")


def unreachable_hint(exc: Exception) -> str:
    """Say that AWS could not be reached, naming the endpoint override when one is set."""
    import os

    url = getattr(exc, "kwargs", {}).get("endpoint_url") or "the AWS endpoint"
    variables = [v for v in (*ENDPOINT_VARIABLES, "AWS_ENDPOINT_URL") if os.environ.get(v)]
    if variables:
        return (
            f"nothing answers at {url}, which {variables[0]} names; start that endpoint, "
            f"or fix or unset {variables[0]} to use AWS"
        )
    return f"cannot reach {url}; check the network (and a proxy) and --region"
