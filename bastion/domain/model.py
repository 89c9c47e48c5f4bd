"""Frozen data: what the user wants, what AWS has, and the plan between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bastion.domain.tags import TAG_GENERATION, TAG_PORT

RULE_PREFIX = "bastion"
"""Descriptions of rules bastion owns start with this, then `:label`."""

LABEL_ME = "me"

LIVE_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class Subnet:
    """The subnet a gateway launches into."""

    subnet_id: str
    vpc_id: str
    vpc_cidr: str
    # Every CIDR associated with the VPC (IPv4 and IPv6), the primary one first.
    vpc_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Image:
    """An AMI and the device its root volume is attached as."""

    image_id: str
    root_device_name: str
    root_volume_gib: int = 8


@dataclass(frozen=True)
class GatewaySpec:
    """The gateway the user asked for."""

    name: str
    port: int
    allowed_cidrs: tuple[str, ...]
    instance_type: str
    image: str
    subnet_id: str | None
    app_sg: str | None
    login_user: str
    admin_user: str
    operator: str


@dataclass(frozen=True)
class IngressRule:
    """One ingress rule of a security group, as bastion reads it."""

    rule_id: str
    protocol: str
    from_port: int
    to_port: int
    cidr: str | None = None
    source_group: str | None = None
    description: str = ""

    @property
    def label(self) -> str | None:
        """Return the bastion label (`me`, `office`...) or None for rules bastion does not own."""
        head = self.description.split(" ", 1)[0]
        prefix, _, label = head.partition(":")
        return label if prefix == RULE_PREFIX and label else None

    @property
    def owner(self) -> str | None:
        """Return who added an owned rule (`bastion:LABEL by WHO ...`), if it says."""
        words = self.description.split()
        return words[2] if self.label and len(words) > 2 and words[1] == "by" else None

    def admits_port(self, port: int) -> bool:
        """Tell whether this rule opens tcp `port`."""
        return self.protocol in ("tcp", "-1") and (
            self.protocol == "-1" or self.from_port <= port <= self.to_port
        )


@dataclass(frozen=True)
class SecurityGroup:
    """A security group with its ingress and egress rules."""

    group_id: str
    name: str
    vpc_id: str
    tags: dict[str, str] = field(default_factory=dict)
    ingress: tuple[IngressRule, ...] = ()
    egress: tuple[IngressRule, ...] = ()


@dataclass(frozen=True)
class KeyPairInfo:
    """An EC2 key pair owned by bastion."""

    name: str
    key_pair_id: str
    fingerprint: str
    created_at: datetime | None


@dataclass(frozen=True)
class InstanceInfo:
    """A gateway instance as EC2 describes it."""

    instance_id: str
    state: str
    public_ip: str | None
    private_ip: str | None
    subnet_id: str | None
    vpc_id: str | None
    key_name: str | None
    image_id: str
    launch_time: datetime | None
    security_group_ids: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    interface_ids: tuple[str, ...] = ()
    volume_ids: tuple[str, ...] = ()
    metadata_http_tokens: str | None = None
    instance_profile_arn: str | None = None
    instance_type: str = ""

    @property
    def generation(self) -> int:
        """Return the gateway generation this instance belongs to."""
        return int(self.tags.get(TAG_GENERATION, "1"))

    @property
    def port(self) -> int | None:
        """Return the SSH port recorded at launch."""
        value = self.tags.get(TAG_PORT)
        return int(value) if value else None


@dataclass(frozen=True)
class ObservedGateway:
    """Everything AWS says about one named gateway."""

    name: str
    key_pair: KeyPairInfo | None
    group: SecurityGroup | None
    instance: InstanceInfo | None
    app_group: SecurityGroup | None
    stale_groups: tuple[SecurityGroup, ...] = ()
    other_key_pairs: tuple[KeyPairInfo, ...] = ()
    standby: InstanceInfo | None = None
    retiring: tuple[InstanceInfo, ...] = ()

    @property
    def exists(self) -> bool:
        """Tell whether AWS holds anything of this gateway."""
        return bool(self.key_pair or self.group or self.instance or self.stale_groups)


@dataclass(frozen=True)
class LocalKeys:
    """What the operator's machine holds for one gateway (fingerprints only)."""

    login_fingerprint: str | None
    admin_fingerprint: str | None
    pinned_host_key: str | None
    # Files missing beside what they are copies of (e.g. login_ed25519.pub, known_hosts).
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ref:
    """A value known only once an earlier action has run, e.g. a new group id."""

    name: str

    def __str__(self) -> str:
        return f"<{self.name}>"


@dataclass(frozen=True)
class Action:
    """One step of a plan: a side effect, a wait or a check."""

    kind: str
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    mutating: bool = True


@dataclass(frozen=True)
class Plan:
    """An ordered list of actions plus what the user should know before it runs."""

    command: str
    name: str
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[Action, ...]:
        """Return the actions that change something."""
        return tuple(a for a in self.actions if a.mutating)
