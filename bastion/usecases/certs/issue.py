"""Use case `cert` (its steps are shared: `ssh` and `ssh-config` issue one on demand too)."""

from __future__ import annotations

from bastion.usecases.shared.certificates import (
    IssuedCertificate,
    certificate_path,
    identity_path,
    issue_certificate,
    require_ca,
)

__all__ = [
    "IssuedCertificate",
    "certificate_path",
    "identity_path",
    "issue_certificate",
    "require_ca",
]
