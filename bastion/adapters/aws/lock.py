"""The gateway lock held in AWS: one DynamoDB item per gateway, written only conditionally.

DynamoDB rather than an SSM parameter: SSM can create a parameter without overwriting one, but
cannot take over an expired one atomically. One conditional PutItem
(`attribute_not_exists(lock) OR lease_expires < :now`) both creates the lock and takes over a
lapsed lease, so two takers can never both win; a conditional DeleteItem or UpdateItem acts only
on the lease whose token is ours. The table is created on first use (PAY_PER_REQUEST, tagged).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bastion.adapters.aws.errors import translated
from bastion.domain.lease import Lease
from bastion.domain.tags import TAG_MANAGED, TAG_ROLE

TABLE = "bastion-locks"
ROLE_LOCK_TABLE = "lock-table"
_NOT_OURS = "ConditionalCheckFailedException"
_NO_TABLE = "ResourceNotFoundException"


class DynamoLocks:
    """Gateway leases in the `bastion-locks` table of this account and region."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client  # made on first use: commands that lock nothing never connect

    def take(self, lease: Lease, now: datetime) -> Lease | None:
        """Write `lease` unless another's is live; return the lease that stands (None: retry)."""
        condition = "attribute_not_exists(#lock) OR lease_expires < :now OR #token = :token"
        values = {":now": _number(now), ":token": {"S": lease.token}}
        try:
            self._put(lease, condition, values)
            return lease
        except _Refused as refused:
            if refused.code == _NO_TABLE:
                return self._lease_after_creating_table(lease, condition, values)
        return self.read(lease.gateway)

    def renew(self, lease: Lease) -> bool:
        """Extend our lease to `lease.expires`; False when it is no longer ours."""
        try:
            self._call(
                "renewing the gateway lock",
                "update_item",
                TableName=TABLE,
                Key=_key(lease.gateway),
                UpdateExpression="SET lease_expires = :until",
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={
                    ":until": _number(lease.expires),
                    ":token": {"S": lease.token},
                },
            )
        except _Refused:
            return False
        return True

    def release(self, lease: Lease) -> bool:
        """Delete the lock only if it is still ours; False (nothing deleted) otherwise."""
        try:
            self._call(
                "releasing the gateway lock",
                "delete_item",
                TableName=TABLE,
                Key=_key(lease.gateway),
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": lease.token}},
            )
        except _Refused:
            return False
        return True

    def break_lock(self, lease: Lease) -> Lease | None:
        """Write `lease` whoever holds the lock; return the lease it replaced, if any."""
        try:
            old = self._put(lease, None, None)
        except _Refused as refused:
            if refused.code != _NO_TABLE:
                raise
            self._create_table()
            old = self._put(lease, None, None)
        return _lease(old) if old else None

    def read(self, gateway: str) -> Lease | None:
        """Return the lease standing on `gateway`, if any (a consistent read)."""
        try:
            answer = self._call(
                "reading the gateway lock",
                "get_item",
                TableName=TABLE,
                Key=_key(gateway),
                ConsistentRead=True,
            )
        except _Refused:
            return None
        item = answer.get("Item")
        return _lease(item) if item else None

    def _lease_after_creating_table(
        self, lease: Lease, condition: str, values: dict[str, Any]
    ) -> Lease | None:
        self._create_table()
        try:
            self._put(lease, condition, values)
            return lease
        except _Refused as refused:
            if refused.code == _NO_TABLE:
                return None  # still being created: the caller polls
        return self.read(lease.gateway)

    def _put(
        self, lease: Lease, condition: str | None, values: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        item = {
            **_key(lease.gateway),
            "holder": {"S": lease.holder},
            "command": {"S": lease.command},
            "since": {"S": lease.since.isoformat()},
            "lease_expires": _number(lease.expires),
            "token": {"S": lease.token},
        }
        extra: dict[str, Any] = {"ReturnValues": "ALL_OLD"}
        if condition is not None:
            extra = {
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#lock": "lock", "#token": "token"},
                "ExpressionAttributeValues": values,
            }
        answer = self._call(
            "taking the gateway lock", "put_item", TableName=TABLE, Item=item, **extra
        )
        old = answer.get("Attributes")
        return old if isinstance(old, dict) else None

    def _create_table(self) -> None:
        try:
            self._call(
                f"creating the lock table {TABLE}",
                "create_table",
                TableName=TABLE,
                AttributeDefinitions=[{"AttributeName": "lock", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "lock", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                Tags=[
                    {"Key": TAG_MANAGED, "Value": "true"},
                    {"Key": TAG_ROLE, "Value": ROLE_LOCK_TABLE},
                ],
            )
        except _Refused as refused:
            if refused.code != "ResourceInUseException":  # another bastion made it first
                raise

    def _call(self, doing: str, operation: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        with translated(doing):
            try:
                return dict(getattr(self._client(), operation)(**params))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in (_NOT_OURS, _NO_TABLE, "ResourceInUseException"):
                    raise _Refused(code) from exc
                raise


class _Refused(Exception):
    """DynamoDB refused for a reason the lock handles itself (not ours, no table yet)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _key(gateway: str) -> dict[str, Any]:
    return {"lock": {"S": gateway}}


def _number(when: datetime) -> dict[str, str]:
    return {"N": f"{when.timestamp():.3f}"}


def _lease(item: dict[str, Any]) -> Lease:
    def text(name: str) -> str:
        return str(item.get(name, {}).get("S", "?"))

    expires = float(item.get("lease_expires", {}).get("N", "0"))
    try:
        since = datetime.fromisoformat(text("since"))
    except ValueError:
        since = datetime.fromtimestamp(0, UTC)
    return Lease(
        gateway=text("lock"),
        holder=text("holder"),
        command=text("command"),
        since=since,
        expires=datetime.fromtimestamp(expires, UTC),
        token=text("token"),
    )
