"""The certificate parts of the gateway's rendering: the trusted CA and the revocation list.

With certificates on, sshd trusts user certificates signed by the gateway's KMS CA
(`TrustedUserCAKeys`, the CA's public key, carried in user data: it is public) and refuses
every key and certificate the KRL names (`RevokedKeys`, a binary KRL made by `ssh-keygen -k`,
carried in user data at launch and replaced over the admin channel by `bastion revoke`). sshd
reads both files at every authentication, so a new KRL counts from the next login on; an
unreadable RevokedKeys file refuses every key, so the file always exists (an empty one revokes
nothing). A certificate's principal is the gateway user's name (sshd's default without an
AuthorizedPrincipalsFile), so a login certificate can never open the admin channel.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from bastion.domain.errors import UsageError

TRUSTED_USER_CA_KEYS_PATH = "/etc/ssh/bastion/trusted_user_ca_keys"
REVOKED_KEYS_PATH = "/etc/ssh/bastion/revoked_keys"
KRL_LIMIT = 2048  # of EC2's 16 KB of user data; a larger list is cut down with `bastion revoke`
_CA_RE = re.compile(r"^(ecdsa-sha2-nistp256|ssh-ed25519) [A-Za-z0-9+/]+={0,2}( [\x20-\x7e]*)?$")


@dataclass(frozen=True)
class CertificateTrust:
    """What sshd trusts and refuses when the gateway takes certificates."""

    ca_public_key: str
    revoked_krl: bytes = b""


def check_trust(trust: CertificateTrust) -> None:
    """Refuse a CA that is not one OpenSSH public key line, or a KRL too large for user data."""
    if not _CA_RE.match(trust.ca_public_key.strip()):
        raise UsageError("the CA public key must be one OpenSSH line (ecdsa-sha2-nistp256 ...)")
    if len(trust.revoked_krl) > KRL_LIMIT:
        raise UsageError(
            f"the revocation list is {len(trust.revoked_krl)} bytes, over {KRL_LIMIT};"
            " revoke whole operators by ARN instead of single serials"
        )


def certificate_files(trust: CertificateTrust) -> list[dict[str, object]]:
    """Return cloud-init write_files entries for the trusted CA and the KRL."""
    check_trust(trust)
    return [
        {
            "path": TRUSTED_USER_CA_KEYS_PATH,
            "owner": "root:root",
            "permissions": "0644",
            "content": trust.ca_public_key.strip() + "\n",
        },
        {
            "path": REVOKED_KEYS_PATH,
            "owner": "root:root",
            "permissions": "0644",
            "encoding": "b64",
            "content": base64.b64encode(trust.revoked_krl).decode(),
        },
    ]
