"""IAM enforced under moto: users holding only a given policy, and the actions a run called.

moto checks IAM once `INITIAL_NO_AUTH_ACTION_COUNT` requests have passed (`enforced()` sets it
to 0 in-process; `reset_auth` does it on a moto_server). What moto checks, and what it does not
(read in moto 5.2's `moto/iam/access_control.py`):

- the action: a request is allowed only when some statement's `Action` matches `service:Operation`
  (wildcards too) and no statement denies it;
- the resource: moto asks every EC2/SSM request about the resource `*`, so a statement scoped to
  ARNs never matches; `as_moto_sees_it` widens each `Resource` to `*` so the actions are tested;
- `Condition` blocks: moto gives ordinary requests no condition values, so every condition holds
  (tag conditions are neither enforced nor testable here);
- `sts:GetCallerIdentity` is always allowed (as on AWS, where no policy can deny it).

Typical use (inside `mock_aws()`):

    user = create_user("alice", load_policy())
    with enforced():
        session = user.session("us-east-1")   # only the policy's actions succeed
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3

POLICY_PATH = Path(__file__).resolve().parents[2] / "policy" / "bastion.json"
"""The documented least-privilege policy (in the source tree, beside the package)."""

# No policy is needed (or can deny) these, so the document does not list them.
NEEDS_NO_PERMISSION = frozenset({"sts:GetCallerIdentity"})


def load_policy(path: Path = POLICY_PATH) -> dict[str, Any]:
    """Return the policy document at `path` (bastion's own by default)."""
    return dict(json.loads(path.read_text()))


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the policy's statements as a list (IAM allows a single one without a list)."""
    found = policy["Statement"]
    return list(found) if isinstance(found, list) else [found]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Return every action the policy allows by name, e.g. {'ec2:RunInstances', ...}."""
    return {
        action
        for statement in statements(policy)
        if statement.get("Effect") == "Allow"
        for action in _listed(statement.get("Action", []))
    }


def without_action(policy: dict[str, Any], action: str) -> dict[str, Any]:
    """Return a copy of the policy with `action` taken out of every statement."""
    trimmed = copy.deepcopy(policy)
    kept = []
    for statement in statements(trimmed):
        actions = [a for a in _listed(statement.get("Action", [])) if a != action]
        if actions:
            kept.append({**statement, "Action": actions})
    trimmed["Statement"] = kept
    return trimmed


def as_moto_sees_it(policy: dict[str, Any]) -> dict[str, Any]:
    """Return the policy with every `Resource` widened to `*`, the only resource moto asks about.

    The actions and effects stay as written; conditions stay too (moto lets them all hold).
    """
    widened = copy.deepcopy(policy)
    widened["Statement"] = [
        {**statement, "Resource": "*"} if "Resource" in statement else statement
        for statement in statements(widened)
    ]
    return widened


@dataclass(frozen=True)
class IamUser:
    """An IAM user in moto with its own access key."""

    name: str
    arn: str
    access_key_id: str
    secret_access_key: str

    def session(self, region: str = "us-east-1") -> boto3.Session:
        """Return a boto3 session acting as this user."""
        import boto3

        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=region,
        )

    def env(self) -> dict[str, str]:
        """Return the environment variables that make a subprocess (the CLI) act as this user."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def create_user(
    name: str, policy: dict[str, Any], iam: Any = None, *, widen: bool = True
) -> IamUser:
    """Create IAM user `name` holding only `policy` (inline) and an access key; return it.

    Call it before `enforced()` (or with an `iam` client whose caller may manage IAM). With
    `widen` the policy is stored `as_moto_sees_it`, so resource-scoped statements count.
    """
    if iam is None:
        import boto3

        iam = boto3.client("iam", region_name="us-east-1")
    document = as_moto_sees_it(policy) if widen else policy
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(
        UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document)
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return IamUser(name, str(arn), str(key["AccessKeyId"]), str(key["SecretAccessKey"]))


def replace_policy(user: IamUser, policy: dict[str, Any], iam: Any = None) -> None:
    """Give `user` `policy` instead of the one it holds (as moto sees it)."""
    if iam is None:
        import boto3

        iam = boto3.client("iam", region_name="us-east-1")
    iam.put_user_policy(
        UserName=user.name,
        PolicyName=f"{user.name}-policy",
        PolicyDocument=json.dumps(as_moto_sees_it(policy)),
    )


@contextmanager
def enforced() -> Iterator[None]:
    """Check every request against the caller's IAM policies while inside (in-process moto)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = before


def reset_auth(endpoint: str, unauthenticated: float = 0) -> float:
    """Make a moto_server check IAM after `unauthenticated` more requests; return the old count.

    `float("inf")` switches the checks off again (moto_server's default).
    """
    import urllib.request

    url = f"{endpoint}/moto-api/reset-auth"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not a moto_server endpoint: {endpoint}")
    # Not a form post: moto reads the raw body, which Flask empties for form content types.
    request = urllib.request.Request(  # noqa: S310 (checked above)
        url, data=str(unauthenticated).encode(), headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 (checked above)
        return float(json.loads(reply.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


def iam_action(model: Any) -> str:
    """Return the IAM action of a botocore operation model, e.g. `ec2:RunInstances`."""
    service = model.service_model
    prefix = service.signing_name or service.endpoint_prefix
    return f"{prefix}:{model.name}"


@dataclass
class ActionRecorder:
    """The IAM actions of every AWS call made through the sessions it is attached to."""

    actions: list[str] = field(default_factory=list)

    def attach(self, session: boto3.Session) -> boto3.Session:
        """Record the calls of every client `session` makes from now on; return the session."""
        session.events.register("before-call", self.record)
        return session

    def record(self, model: Any = None, **_: Any) -> None:
        """Note one call (a botocore `before-call` handler)."""
        if model is not None:
            self.actions.append(iam_action(model))

    @property
    def called(self) -> set[str]:
        """Return the distinct actions called, less those that need no permission."""
        return set(self.actions) - NEEDS_NO_PERMISSION


def guard_answered_calls(
    client: Any, policy: Callable[[], dict[str, Any]], user_arn: str, operations: list[str]
) -> None:
    """Check `operations` of `client` against the policy before a test's own handler answers them.

    A test that answers a call itself (say GetConsoleOutput, which moto answers with fixed
    text) keeps it from moto, and so from moto's IAM check; this refuses it as moto would.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult

    def check(model: Any = None, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        action = iam_action(model)
        verdict = IAMPolicy(json.dumps(as_moto_sees_it(policy()))).is_action_permitted(action)
        if verdict == PermissionResult.PERMITTED:
            return None
        return _denied_response(user_arn, action)

    for operation in operations:
        client.meta.events.register(
            f"before-call.{client.meta.service_model.service_name}.{operation}", check
        )


def _denied_response(user_arn: str, action: str) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    message = f"User: {user_arn} is not authorized to perform: {action}"
    http = AWSResponse("https://denied.invalid/", 403, HTTPHeaders(), None)
    parsed = {
        "Error": {"Code": "AccessDenied", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }
    return http, parsed
