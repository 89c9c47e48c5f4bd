"""Short-lived certificates for the caller's own key, signed by the gateway's KMS CA.

Whoever IAM lets call `kms:Sign` on the gateway's CA gets one; the certificate names the caller
(key id = the STS ARN), the gateway user (principal), the caller's allowed addresses on the
gateway group (`source-address`) and lives at most as long as their allow rule (default 1 h).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bastion.adapters.keys import ensure_private_dir, write_public_text
from bastion.domain.certs import DEFAULT_LIFETIME, CaKey, plan_certificate
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.settings import Settings
from bastion.domain.tags import TAG_PORT
from bastion.usecases.ports import Cloud, Deps
from bastion.usecases.shared.context import Context, open_context
from bastion.usecases.shared.inventory import observe

log = logging.getLogger(__name__)
DEFAULT_KEY = Path("~/.ssh/id_ed25519.pub")


@dataclass(frozen=True)
class IssuedCertificate:
    """What `bastion cert` made and where it put it."""

    path: Path
    identity: Path
    key_id: str
    serial: int
    principal: str
    source_addresses: tuple[str, ...]
    valid_before: datetime

    def to_json(self) -> dict[str, object]:
        """Return the certificate's facts for `--json`."""
        return {
            "path": str(self.path),
            "identity": str(self.identity),
            "key_id": self.key_id,
            "serial": self.serial,
            "principal": self.principal,
            "source_addresses": list(self.source_addresses),
            "valid_before": self.valid_before.isoformat(),
        }


def require_ca(aws: Cloud, name: str) -> CaKey:
    """Return gateway `name`'s CA, or say how to make one."""
    ca = aws.ca.find(name)
    if ca is None:
        raise NotFoundError(
            f"gateway {name!r} has no certificate authority in KMS; run"
            " `bastion up --certificates` to make one"
        )
    return ca


def identity_path(context: Context, admin: bool) -> Path:
    """Return the gateway folder's pointer to the operator's own key for this user.

    A symlink to the operator's private key (never a copy), with the certificate beside it
    as `NAME-cert.pub`: OpenSSH and paramiko both load a key's `-cert.pub` with it.
    """
    return context.files.root / ("admin_identity" if admin else "login_identity")


def certificate_path(context: Context, admin: bool) -> Path:
    """Return where this operator's certificate for the gateway lives (beside its pins)."""
    identity = identity_path(context, admin)
    return identity.with_name(identity.name + "-cert.pub")


def _point_at(link: Path, private_key: Path) -> None:
    """Make `link` a symlink to the operator's private key, replacing an older one atomically."""
    if link.is_symlink() and link.resolve() == private_key.resolve():
        return
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(private_key.resolve())
    tmp.replace(link)


def issue_certificate(
    settings: Settings,
    deps: Deps,
    key: Path | None = None,
    lifetime: timedelta = DEFAULT_LIFETIME,
    admin: bool = False,
    context: Context | None = None,
    only: frozenset[str] | None = None,
) -> IssuedCertificate:
    """Sign a certificate for the caller's public key; write it to the gateway folder.

    `only` names the instance meant when others carry the gateway's tags (identity's proof).
    """
    context = context or open_context(settings, deps)
    public_path = (key or DEFAULT_KEY).expanduser()
    if public_path.suffix != ".pub":
        public_path = public_path.with_name(public_path.name + ".pub")
    try:
        public_line = public_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(
            f"{public_path} does not exist; pass --key with your SSH key's .pub file"
            " (ssh-keygen -t ed25519 makes one)"
        ) from None
    observed = observe(context.aws, settings.name, None, only=only)
    if observed.group is None or observed.instance is None:
        raise NotFoundError(f"gateway {settings.name!r} is not running; run `bastion up` first")
    port = int(observed.instance.tags.get(TAG_PORT, settings.port))
    ca = require_ca(context.aws, settings.name)
    principal = settings.admin_user if admin else settings.login_user
    request = plan_certificate(
        public_key=public_line,
        principal=principal,
        operator=context.operator,
        group=observed.group,
        port=port,
        now=deps.clock.now(),
        serial=secrets.randbits(63),  # unique enough to revoke one certificate alone
        lifetime=lifetime,
        admin=admin,
    )
    deps.reporter.step(f"sign a {principal} certificate for {context.operator} with KMS")
    line = context.aws.ca.issue(ca, request)
    path = certificate_path(context, admin)
    ensure_private_dir(path.parent)
    _point_at(identity_path(context, admin), public_path.with_suffix(""))
    write_public_text(path, line + "\n")
    log.info("certificate serial %s for %s written to %s", request.serial, request.key_id, path)
    return IssuedCertificate(
        path=path,
        identity=identity_path(context, admin),
        key_id=request.key_id,
        serial=request.serial,
        principal=principal,
        source_addresses=request.source_addresses,
        valid_before=request.valid_before,
    )


def operator_key(context: Context) -> Path | None:
    """Return the public key the operator's last `bastion cert` used here (None: the default)."""
    identity = identity_path(context, admin=False)
    return Path(str(identity.resolve()) + ".pub") if identity.is_symlink() else None


def refresh_login_certificate(context: Context, deps: Deps) -> Path | None:
    """On a certificate gateway, sign a fresh login certificate; return the identity to use.

    The key is the one the last `bastion cert` pointed at, else (on a machine without the
    gateway's login key) ~/.ssh/id_ed25519.pub when it exists; otherwise None (key mode).
    """
    identity = identity_path(context, admin=False)
    key = operator_key(context)
    if key is None:
        if context.files.login_key.exists() or not DEFAULT_KEY.expanduser().exists():
            return None
        key = DEFAULT_KEY
    issue_certificate(context.settings, deps, key=key, context=context)
    return identity
