"""A refused AWS call is one line naming the IAM action, the caller and the policy (exit 4)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from bastion.adapters.aws.errors import translated
from bastion.domain.errors import AwsAuthError, ExitStatus

ARN = "arn:aws:iam::123456789012:user/alice"


def _refuse(code: str, message: str, operation: str = "TerminateInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("code", "message", "action"),
    [
        (  # EC2 as it answers: the caller, the action, and an encoded blob
            "UnauthorizedOperation",
            f"You are not authorized to perform this operation. User: {ARN} is not authorized "
            "to perform: ec2:TerminateInstances on resource: arn:aws:ec2:us-east-1:123456789012:"
            "instance/i-0abc because no identity-based policy allows the ec2:TerminateInstances "
            "action. Encoded authorization failure message: AbCdEf0123",
            "ec2:TerminateInstances",
        ),
        (  # SSM and moto: AccessDenied(Exception) with the same sentence
            "AccessDeniedException",
            f"User: {ARN} is not authorized to perform: ssm:GetParameter on resource: "
            "arn:aws:ssm:us-east-1::parameter/aws/service/x",
            "ssm:GetParameter",
        ),
        (
            "AccessDenied",
            f"User: {ARN} is not authorized to perform: ec2:RunInstances",
            "ec2:RunInstances",
        ),
    ],
)
def test_a_refused_call_names_the_action_the_caller_and_the_policy(
    code: str, message: str, action: str
) -> None:
    with pytest.raises(AwsAuthError) as raised, translated("terminating i-0abc"):
        raise _refuse(code, message)
    assert raised.value.exit_status == ExitStatus.AWS_AUTH
    text = raised.value.message
    assert text.startswith(f"AWS refused {action} for {ARN}: add it to the policy")
    assert "policy/bastion.json" in text
    assert "\n" not in text and "Encoded" not in text  # one line, no blob


def test_a_refusal_without_the_sentence_names_the_operation_of_the_service() -> None:
    with pytest.raises(AwsAuthError) as raised, translated("resolving x", service="ssm"):
        raise _refuse("AccessDeniedException", "Access denied", "GetParameter")
    assert raised.value.message.startswith("AWS refused ssm:GetParameter for these credentials")


def test_bad_credentials_are_still_said_to_be_credentials() -> None:
    with pytest.raises(AwsAuthError) as raised, translated("listing"):
        raise _refuse("AuthFailure", "AWS was not able to validate the provided access credentials")
    assert "pick another --profile" in raised.value.message


def test_a_refusal_whose_code_botocore_could_not_read_is_still_a_refusal() -> None:
    xml = (
        "<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>User: "
        f"{ARN} is not authorized to perform: ssm:GetParameter</Message></Error></Errors>"
    )
    refused = ClientError(
        {"Error": {"Code": "403", "Message": xml}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "GetParameter",
    )
    with pytest.raises(AwsAuthError) as raised, translated("resolving x", service="ssm"):
        raise refused
    assert raised.value.message.startswith(f"AWS refused ssm:GetParameter for {ARN}: ")
