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

ROLE_KEY_PAIR = "login-key"
ROLE_GATEWAY_GROUP = "gateway-group"
ROLE_INSTANCE = "gateway"
