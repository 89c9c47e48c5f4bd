"""The one place botocore's failures become `BastionError`s that say what to do."""

from __future__ import annotations

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


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn botocore failures into `BastionError`s that say what to do."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
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
        code, message = _from_xml_body(code, message)
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
    except EndpointConnectionError as exc:
        raise AwsError(
            f"{doing}: cannot reach AWS ({exc}); check the network and --region"
        ) from exc
    except BotoCoreError as exc:
        raise AwsError(f"{doing}: {exc}") from exc


def _from_xml_body(code: str, message: str) -> tuple[str, str]:
    """Read the error out of an XML body a JSON client left unparsed (moto's IAM denials)."""
    import re

    if not code.isdigit():
        return code, message
    found_code = re.search(r"<Code>([^<]+)</Code>", message)
    found_message = re.search(r"<Message>([^<]*)</Message>", message)
    if not found_code:
        return code, message
    return found_code.group(1), found_message.group(1) if found_message else message
