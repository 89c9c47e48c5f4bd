"""Tags: the only shared state. Everything bastion owns is found again through them."""

from __future__ import annotations

TAG_MANAGED = "bastion:managed"
TAG_NAME = "bastion:name"
TAG_ROLE = "bastion:role"
TAG_GENERATION = "bastion:generation"
TAG_PORT = "bastion:port"
TAG_KEY_FINGERPRINT = "bastion:key-fingerprint"
TAG_HOST_KEY_FINGERPRINT = "bastion:host-key-fingerprint"
TAG_ADMIN_KEY_FINGERPRINT = "bastion:admin-key-fingerprint"
TAG_LOGIN_USER = "bastion:login-user"
TAG_CREATED_BY = "bastion:created-by"
TAG_CREATED_AT = "bastion:created-at"
TAG_IMAGE = "bastion:image"
TAG_INCIDENT = "bastion:incident"
TAG_INCIDENT_STATE = "bastion:incident-state"
TAG_INCIDENT_APP_GROUPS = "bastion:incident-app-groups"  # who trusted the burnt gateway
# Blue/green (`rotate --relaunch`): the new generation is a standby until promoted; the old one
# is retiring from then until it is terminated. Neither is "the" gateway while so tagged.
TAG_STANDBY = "bastion:standby"
TAG_RETIRING = "bastion:retiring"
TAG_HOST_KEY_CREATED_AT = "bastion:host-key-created-at"
TAG_ADMIN_KEY_CREATED_AT = "bastion:admin-key-created-at"
TAG_CERTIFICATES = "bastion:certificates"  # "true": the instance trusts the gateway's KMS CA

ROLE_KEY_PAIR = "login-key"
ROLE_GATEWAY_GROUP = "gateway-group"
ROLE_INSTANCE = "gateway"


def key_pair_name(name: str, fingerprint: str) -> str:
    """Return the EC2 key pair name for a login key: unique per key, so rotation can overlap."""
    digest = "".join(ch for ch in fingerprint.removeprefix("SHA256:") if ch.isalnum())[:10]
    return f"bastion-{name}-{digest}"


def group_name(name: str, generation: int) -> str:
    """Return the gateway group's name for one generation, e.g. `bastion-default-gw-1`."""
    return f"bastion-{name}-gw-{generation}"


def base_tags(name: str, role: str, operator: str, when: str) -> dict[str, str]:
    """Return the tags every bastion resource carries."""
    return {
        "Name": f"bastion-{name}",
        TAG_MANAGED: "true",
        TAG_NAME: name,
        TAG_ROLE: role,
        TAG_CREATED_BY: operator[-255:],
        TAG_CREATED_AT: when,
    }
