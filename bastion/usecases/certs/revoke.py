"""Use case `revoke`: refuse a certificate (serial), an operator (key id = ARN) or a key.

The revocations live in the SSM parameter `/bastion/NAME/revoked-certificates` (stored first,
so every later launch carries them in its user data) and, as a KRL made by `ssh-keygen -k`,
on the gateway (`RevokedKeys`), replaced over the admin channel; sshd reads it at each login.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from bastion.adapters.krl import build_krl
from bastion.adapters.render_certs import CertificateTrust, check_trust
from bastion.domain.certs import parse_revocations
from bastion.domain.errors import UsageError
from bastion.domain.settings import Settings
from bastion.usecases.certs.admin import open_admin_channel
from bastion.usecases.certs.issue import require_ca
from bastion.usecases.ports import Deps
from bastion.usecases.shared.context import open_context

SPEC_LIMIT = 4096  # an SSM String parameter of the standard tier


@dataclass(frozen=True)
class RevokeResult:
    """What the gateway's revocation list holds now."""

    spec: str
    gateway_answer: str

    def to_json(self) -> dict[str, object]:
        """Return the result for `--json`."""
        return {"revocations": self.spec.splitlines(), "gateway": self.gateway_answer}


def _target_text(target: str) -> str:
    """Return a public key file's line when `target` names one, else `target` itself."""
    path = Path(target).expanduser()
    if target.endswith(".pub") and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return target


def revoke(settings: Settings, deps: Deps, target: str, key: Path | None = None) -> RevokeResult:
    """Add `target` to the gateway's revocations and install the new KRL on the gateway."""
    ctx = open_context(settings, deps, lock_for="revoke")
    ca = require_ca(ctx.aws, settings.name)
    updated = parse_revocations(ctx.aws.ca.revocations(settings.name)).adding(_target_text(target))
    if len(updated.spec().encode()) > SPEC_LIMIT:
        raise UsageError(
            f"the revocation list would exceed SSM's {SPEC_LIMIT} bytes; revoke whole operators"
            " by ARN (or their keys) instead of single serials"
        )
    krl = build_krl(updated.spec(), ca.public_line)
    check_trust(CertificateTrust(ca.public_line, krl))
    deps.reporter.step(f"store the revocations in /bastion/{settings.name}/revoked-certificates")
    ctx.aws.ca.store_revocations(settings.name, updated.spec())
    channel = open_admin_channel(ctx, deps, key)
    deps.reporter.step(f"install the revocation list on {channel.instance.instance_id}")
    answer = channel.keyctl("set-revoked-keys", base64.b64encode(krl).decode() + "\n")
    return RevokeResult(updated.spec(), answer.strip())
