"""What a launch puts in user data when the gateway takes certificates: its CA and its KRL."""

from __future__ import annotations

from bastion.adapters.krl import build_krl
from bastion.adapters.render_certs import CertificateTrust
from bastion.domain.certs import CaKey
from bastion.domain.errors import NotFoundError
from bastion.domain.tags import base_tags
from bastion.usecases.ports import Cloud, Deps


def ensure_ca(aws: Cloud, name: str, operator: str, deps: Deps, dry_run: bool) -> CaKey | None:
    """Return the gateway's CA, making it in KMS first when it has none (not in a dry run)."""
    ca = aws.ca.find(name)
    if ca is not None or dry_run:
        if ca is None:
            deps.reporter.warn(f"would create the KMS CA alias/bastion-{name}-ca")
        return ca
    deps.reporter.step(f"create the KMS CA alias/bastion-{name}-ca (ECC_NIST_P256, SIGN_VERIFY)")
    when = deps.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return aws.ca.create(name, base_tags(name, "ca", operator, when))


def launch_trust(aws: Cloud, name: str, wanted: bool) -> CertificateTrust | None:
    """Return what a launch trusts: the CA and KRL when the gateway takes certificates.

    A key-mode launch asks KMS nothing (its caller may hold no KMS permission at all).
    """
    return certificate_trust(aws, name) if wanted else None


def certificate_trust(aws: Cloud, name: str) -> CertificateTrust:
    """Return the gateway's CA public key and its current revocations, read back from AWS."""
    ca = aws.ca.find(name)
    if ca is None:
        raise NotFoundError(
            f"gateway {name!r} takes certificates but its CA (alias/bastion-{name}-ca) is gone;"
            " run `bastion up --certificates` to make a new one"
        )
    return CertificateTrust(ca.public_line, build_krl(aws.ca.revocations(name), ca.public_line))
