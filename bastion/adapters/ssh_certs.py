"""OpenSSH user certificates signed by a CA whose private key never leaves KMS.

The second door to `cryptography` (beside adapters.keys): cryptography's
`SSHCertificateBuilder.sign()` takes any `ec.EllipticCurvePrivateKey`, so `RemoteP256Key` is one
whose `sign()` hands the digest to a callback (KMS `Sign`); KMS returns DER ECDSA signatures,
the form cryptography itself produces. Nothing else of the key exists here: every other private
operation refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.domain.certs import CertificateRequest
from bastion.domain.errors import UsageError

DigestSigner = Callable[[bytes], bytes]
"""Sign a message (ECDSA over its SHA-256); return the DER signature (KMS `Sign`, RAW)."""
# KMS signs RAW messages up to 4096 bytes; a certificate body is well under 1 KB.
RAW_LIMIT = 4096


class RemoteP256Key(ec.EllipticCurvePrivateKey):
    """A P-256 private key held elsewhere: only `sign` and `public_key` work."""

    def __init__(self, public: ec.EllipticCurvePublicKey, sign_digest: DigestSigner) -> None:
        self._public = public
        self._sign_digest = sign_digest

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if not isinstance(algorithm, hashes.SHA256):
            raise UsageError("the KMS CA signs with ECDSA SHA-256 only")
        message = bytes(data)
        if len(message) > RAW_LIMIT:
            raise UsageError("the certificate is too large for KMS to sign; use fewer addresses")
        return self._sign_digest(message)

    def exchange(self, algorithm: Any, peer_public_key: Any) -> NoReturn:
        raise UsageError("the KMS CA key only signs")

    def private_numbers(self) -> NoReturn:
        raise UsageError("the KMS CA's private key never leaves KMS")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> NoReturn:
        raise UsageError("the KMS CA's private key never leaves KMS")

    def __copy__(self) -> RemoteP256Key:
        return self

    def __deepcopy__(self, memo: Any) -> RemoteP256Key:
        return self


def ca_public_line(public_der: bytes, comment: str) -> str:
    """Return the CA's public key (KMS GetPublicKey's DER) as one OpenSSH line."""
    public = serialization.load_der_public_key(public_der)
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise UsageError("the CA key in KMS is not ECC_NIST_P256; adopt or create a P-256 key")
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}".strip()


def sign_certificate(
    request: CertificateRequest, public_der: bytes, sign_digest: DigestSigner
) -> str:
    """Build and sign the user certificate `request` describes; return its OpenSSH line."""
    try:
        subject = serialization.load_ssh_public_key(request.public_key.encode())
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{request.public_key.split()[0]} keys cannot be certified here; use an Ed25519 key"
            " (ssh-keygen -t ed25519)"
        ) from exc
    ca_public = serialization.load_der_public_key(public_der)
    if not isinstance(ca_public, ec.EllipticCurvePublicKey):
        raise UsageError("the CA key in KMS is not an elliptic-curve key")
    builder = (
        serialization.SSHCertificateBuilder()
        .public_key(subject)  # type: ignore[arg-type]
        .serial(request.serial)
        .type(serialization.SSHCertificateType.USER)
        .key_id(request.key_id.encode())
        .valid_principals([p.encode() for p in request.principals])
        .valid_after(int(request.valid_after.timestamp()))
        .valid_before(int(request.valid_before.timestamp()))
        .add_critical_option(b"source-address", ",".join(request.source_addresses).encode())
    )
    if request.force_command:
        builder = builder.add_critical_option(b"force-command", request.force_command.encode())
    for extension in request.extensions:
        builder = builder.add_extension(extension.encode(), b"")
    certificate = builder.sign(RemoteP256Key(ca_public, sign_digest))
    return certificate.public_bytes().decode() + f" {request.key_id}"
