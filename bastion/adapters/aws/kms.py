"""The gateway's certificate authority: an asymmetric KMS key, and its revocation list in SSM.

The CA is a `SIGN_VERIFY` `ECC_NIST_P256` key named by the alias `alias/bastion-NAME-ca` and
tagged `bastion:ca=NAME`; its private half never leaves KMS, so whoever IAM lets call
`kms:Sign` on it can issue certificates and nobody else can. The revocations (serials, key ids,
keys) live in the SSM parameter `/bastion/NAME/revoked-certificates`, read back at every launch.
"""

from __future__ import annotations

import functools
from typing import Any

from bastion.adapters.aws.errors import translated
from bastion.domain.certs import CaKey, CertificateRequest
from bastion.domain.errors import NotFoundError

TAG_CA = "bastion:ca"
KEY_SPEC = "ECC_NIST_P256"
SIGNING_ALGORITHM = "ECDSA_SHA_256"


def alias_for(name: str) -> str:
    """Return the KMS alias of gateway `name`'s CA."""
    return f"alias/bastion-{name}-ca"


def revocations_parameter(name: str) -> str:
    """Return the SSM parameter holding gateway `name`'s revocations."""
    return f"/bastion/{name}/revoked-certificates"


class CertificateAuthority:
    """KMS (the CA key) and SSM (its revocations) for one account and region."""

    def __init__(self, session: Any, config: Any) -> None:
        self._session, self._config = session, config

    @functools.cached_property
    def _kms(self) -> Any:
        with translated("creating the KMS client", service="kms"):
            return self._session.client("kms", config=self._config)

    @functools.cached_property
    def _ssm(self) -> Any:
        with translated("creating the SSM client", service="ssm"):
            return self._session.client("ssm", config=self._config)

    def find(self, name: str) -> CaKey | None:
        """Return gateway `name`'s CA, or None when it has none."""
        from botocore.exceptions import ClientError

        with translated(f"reading the CA key {alias_for(name)} (kms:DescribeKey)", service="kms"):
            try:
                described = self._kms.describe_key(KeyId=alias_for(name))["KeyMetadata"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                    raise
                return None
        if described.get("KeyState") != "Enabled":
            return None
        return self._ca(str(described["KeyId"]), name)

    def create(self, name: str, tags: dict[str, str]) -> CaKey:
        """Make gateway `name`'s CA key (and its alias); return it."""
        with translated("creating the CA key in KMS (kms:CreateKey)", service="kms"):
            key_id = str(
                self._kms.create_key(
                    KeyUsage="SIGN_VERIFY",
                    KeySpec=KEY_SPEC,
                    Description=f"bastion {name}: SSH user certificate authority",
                    Tags=[{"TagKey": k, "TagValue": v} for k, v in {**tags, TAG_CA: name}.items()],
                )["KeyMetadata"]["KeyId"]
            )
        with translated("naming the CA key (kms:CreateAlias)", service="kms"):
            self._kms.create_alias(AliasName=alias_for(name), TargetKeyId=key_id)
        return self._ca(key_id, name)

    def adopt(self, name: str, key_id: str) -> CaKey:
        """Name an existing P-256 signing key as gateway `name`'s CA (alias and tag)."""
        with translated(f"tagging {key_id} as the CA (kms:TagResource)", service="kms"):
            self._kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": TAG_CA, "TagValue": name}])
        ca = self._ca(key_id, name)
        with translated("naming the CA key (kms:CreateAlias)", service="kms"):
            self._kms.create_alias(AliasName=alias_for(name), TargetKeyId=key_id)
        return ca

    def issue(self, ca: CaKey, request: CertificateRequest) -> str:
        """Sign `request` with the CA in KMS; return the certificate's OpenSSH line."""

        def sign_digest(message: bytes) -> bytes:
            with translated(
                f"signing the certificate with {alias_for_key(ca)} (kms:Sign)", service="kms"
            ):
                answer = self._kms.sign(
                    KeyId=ca.key_id,
                    Message=message,
                    MessageType="RAW",
                    SigningAlgorithm=SIGNING_ALGORITHM,
                )
            return bytes(answer["Signature"])

        from bastion.adapters.ssh_certs import sign_certificate  # cryptography: only when signing

        return sign_certificate(request, ca.public_der, sign_digest)

    def revocations(self, name: str) -> str:
        """Return gateway `name`'s KRL specification ("" when nothing was revoked)."""
        try:
            with translated("reading the revocations (ssm:GetParameter)", service="ssm"):
                answer = self._ssm.get_parameter(Name=revocations_parameter(name))
        except NotFoundError:
            return ""
        value = str(answer["Parameter"]["Value"])
        return "" if value.strip() == "-" else value

    def store_revocations(self, name: str, spec: str) -> None:
        """Replace gateway `name`'s KRL specification."""
        with translated("storing the revocations (ssm:PutParameter)", service="ssm"):
            self._ssm.put_parameter(
                Name=revocations_parameter(name),
                Value=spec or "-",  # SSM refuses an empty value
                Type="String",
                Overwrite=True,
            )

    def _ca(self, key_id: str, name: str) -> CaKey:
        with translated("reading the CA's public key (kms:GetPublicKey)", service="kms"):
            answer = self._kms.get_public_key(KeyId=key_id)
        der = bytes(answer["PublicKey"])
        from bastion.adapters.ssh_certs import ca_public_line

        return CaKey(key_id, ca_public_line(der, f"bastion-{name}-ca"), der)


def alias_for_key(ca: CaKey) -> str:
    """Return the CA's comment (its alias) for messages."""
    return ca.public_line.rsplit(" ", 1)[-1]
