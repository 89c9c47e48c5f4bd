"""Secrets in user data: a private key there outlives the instance (anyone who may call
DescribeInstanceAttribute reads it, and so does every process on the instance through IMDS).

User data is looked at the ways cloud-init reads it: plain, gzip'd, MIME multipart (parts
base64-encoded or not), and base64 (or gzip+base64) blobs inside it such as `write_files`
contents.
"""

from __future__ import annotations

import base64
import binascii
import email
import re
import zlib

from bastion.domain.audit import FAIL, Finding, Layout, Snapshot
from bastion.domain.tags import TAG_NAME

# PEM (`RSA`, `EC`, `DSA`, `ENCRYPTED`, PKCS#8 ``) and OpenSSH private key headers; PuTTY's too.
PRIVATE_KEY_MARKER = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d:"
)
_BASE64_BLOB = re.compile(rb"[A-Za-z0-9+/]{60,}={0,2}")
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DEPTH = 4
_MAX_SIZE = 1 << 20  # a gzip bomb stops here: EC2 user data is at most 16 KB before decoding


def _gunzip(data: bytes) -> bytes | None:
    try:
        return zlib.decompressobj(wbits=31).decompress(data, _MAX_SIZE)
    except zlib.error:
        return None


def _views(data: bytes, depth: int = 0) -> list[bytes]:
    """Return `data` and every decoding of it cloud-init (or a script in it) could make."""
    if depth > _MAX_DEPTH or not data:
        return []
    views = [data]
    if data.startswith(_GZIP_MAGIC):
        inflated = _gunzip(data)
        return views + (_views(inflated, depth + 1) if inflated else [])
    if data.lstrip().lower().startswith((b"content-type: multipart", b"mime-version")):
        message = email.message_from_bytes(data)
        for part in message.walk():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                views += _views(payload, depth + 1)
    for blob in _BASE64_BLOB.findall(data):
        try:
            decoded = base64.b64decode(blob + b"=" * (-len(blob) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        views += _views(decoded, depth + 1)
    return views


def carries_private_key(user_data: bytes) -> bool:
    """Tell whether user data holds a private key, plain or encoded."""
    return any(PRIVATE_KEY_MARKER.search(view) for view in _views(user_data))


def check_user_data_secrets(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """No gateway's user data carries a private key."""
    return [
        Finding(
            "user-data-private-key",
            FAIL,
            instance.instance_id,
            f"gateway {instance.tags.get(TAG_NAME, 'default')!r}'s user data carries a private "
            "key: anyone allowed DescribeInstanceAttribute, and every process on the gateway "
            "(through the metadata service), can read it",
            "treat the key as leaked: replace it wherever it is trusted, then relaunch the "
            "gateway without it (bastion's own user data never carries one)",
        )
        for instance in snapshot.gateways
        if carries_private_key(snapshot.user_data.get(instance.instance_id, b""))
    ]
