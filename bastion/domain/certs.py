"""Per-operator SSH certificates: what each may say, how long it lives, who it names. Pure.

A certificate names one operator (its key id is the caller's ARN, from STS), one gateway user
(its principal), the addresses that operator is allowed from on the gateway group
(`source-address`) and a life no longer than their allow rule nor `DEFAULT_LIFETIME`. The login
certificate carries only `permit-port-forwarding`; the admin one carries no extension at all
(the admin user's forced command runs without a PTY or forwarding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bastion.domain.allowlist import is_expired, parse_note
from bastion.domain.errors import NotFoundError, UsageError
from bastion.domain.model import SecurityGroup
from bastion.domain.rules import rule_owner

DEFAULT_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(hours=24)
# Issued a minute early: a gateway clock slightly behind still accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=1)
LOGIN_EXTENSIONS = ("permit-port-forwarding",)
_SERIAL_RE = re.compile(r"^[0-9]{1,20}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9:/_+=,.@-]{1,256}$")
_PUBLIC_RE = re.compile(r"^(ssh-ed25519|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,2}( .*)?$")


@dataclass(frozen=True)
class CaKey:
    """The gateway CA's KMS key id and its public key (an OpenSSH line, and KMS's DER)."""

    key_id: str
    public_line: str
    public_der: bytes = field(repr=False)


@dataclass(frozen=True)
class CertificateRequest:
    """Everything a user certificate says; the adapter only signs it."""

    public_key: str
    principals: tuple[str, ...]
    key_id: str
    serial: int
    valid_after: datetime
    valid_before: datetime
    source_addresses: tuple[str, ...]
    extensions: tuple[str, ...] = LOGIN_EXTENSIONS
    force_command: str = ""


def operator_rules(group: SecurityGroup, port: int, operator: str, now: datetime) -> list[str]:
    """Return the CIDRs the gateway group admits `operator` from (their own, unexpired rules)."""
    owner = rule_owner(operator)
    cidrs = []
    for rule in group.ingress:
        note = parse_note(rule.description)
        if note is None or note.owner != owner or rule.cidr is None:
            continue
        if rule.from_port <= port <= rule.to_port and not is_expired(rule, now):
            cidrs.append(rule.cidr)
    return list(dict.fromkeys(cidrs))


def latest_rule_expiry(
    group: SecurityGroup, operator: str, cidrs: list[str], now: datetime
) -> datetime | None:
    """Return when the operator's last rule ends (None: one of them never expires)."""
    owner = rule_owner(operator)
    ends: list[datetime] = []
    for rule in group.ingress:
        note = parse_note(rule.description)
        if note is None or note.owner != owner or rule.cidr not in cidrs:
            continue
        if is_expired(rule, now):
            continue
        if note.expires_at is None:
            return None
        ends.append(note.expires_at)
    return max(ends) if ends else None


def plan_certificate(
    *,
    public_key: str,
    principal: str,
    operator: str,
    group: SecurityGroup,
    port: int,
    now: datetime,
    serial: int,
    lifetime: timedelta = DEFAULT_LIFETIME,
    admin: bool = False,
) -> CertificateRequest:
    """Describe the certificate `operator` gets for `principal` on this gateway, now."""
    line = public_key.strip()
    if not _PUBLIC_RE.match(line):
        raise UsageError(
            "the key to certify must be one OpenSSH public key line (ssh-ed25519 ...);"
            " pass --key with your key's .pub file"
        )
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise UsageError("--for must be between 1 minute and 24h for a certificate")
    if not _KEY_ID_RE.match(operator):
        raise UsageError(f"the caller ARN {operator!r} cannot be a certificate key id")
    cidrs = operator_rules(group, port, operator, now)
    if not cidrs:
        raise NotFoundError(
            f"{rule_owner(operator)} has no unexpired allow rule on {group.group_id}; "
            "run `bastion allow me --for 8h` (or ask someone who may) first"
        )
    end = now + lifetime
    rule_end = latest_rule_expiry(group, operator, cidrs, now)
    if rule_end is not None:
        end = min(end, rule_end)
    return CertificateRequest(
        public_key=" ".join(line.split()[:2]),
        principals=(principal,),
        key_id=operator,
        serial=serial,
        valid_after=now - CLOCK_SKEW,
        valid_before=end,
        source_addresses=tuple(cidrs),
        extensions=() if admin else LOGIN_EXTENSIONS,
    )


@dataclass(frozen=True)
class Revocations:
    """What the gateway's KRL revokes: certificate serials, key ids and whole public keys."""

    serials: tuple[int, ...] = ()
    key_ids: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def spec(self) -> str:
        """Return the KRL specification `ssh-keygen -k` reads (one `kind: value` a line)."""
        lines = [f"serial: {s}" for s in self.serials]
        lines += [f"id: {i}" for i in self.key_ids]
        lines += [f"key: {k}" for k in self.keys]
        return "".join(f"{line}\n" for line in lines)

    def adding(self, target: str) -> Revocations:
        """Return these revocations plus `target`: a serial, a key id (ARN) or a public key."""
        value = target.strip()
        if _SERIAL_RE.match(value):
            return Revocations(tuple(sorted({*self.serials, int(value)})), self.key_ids, self.keys)
        if _PUBLIC_RE.match(value):
            body = " ".join(value.split()[:2])
            return Revocations(self.serials, self.key_ids, tuple(dict.fromkeys((*self.keys, body))))
        if _KEY_ID_RE.match(value) and value.startswith("arn:"):
            ids = tuple(dict.fromkeys((*self.key_ids, value)))
            return Revocations(self.serials, ids, self.keys)
        raise UsageError(
            f"cannot revoke {target!r}; give a certificate serial, an operator's ARN (key id)"
            " or a public key line"
        )


def parse_revocations(spec: str) -> Revocations:
    """Read a KRL specification written by `Revocations.spec`."""
    result = Revocations()
    for line in spec.splitlines():
        kind, _, value = line.partition(":")
        if value.strip():
            result = result.adding(value.strip())
        elif kind.strip():
            raise UsageError(f"unreadable revocation line {line!r}")
    return result


# sshd LogLevel VERBOSE, for a certificate login:
#   Accepted publickey for bastion from 127.0.0.2 port 50123 ssh2: ED25519-CERT SHA256:... ID
#   arn:aws:iam::123456789012:user/alice (serial 42) CA ECDSA SHA256:...
# Whole messages only: a bare log line, or the journal's "TIME HOST sshd[PID]: " before it.
_PREFIX = r"^(?:\S+ \S+ sshd(?:-session|-auth)?\[\d+\]: )?"
_CERT_LOGIN_RE = re.compile(
    _PREFIX
    + r"Accepted publickey for (?P<user>\S+) from (?P<address>\S+) port (?P<port>\d+) ssh2: "
    r"\S+-CERT (?P<fingerprint>SHA256:\S+) ID (?P<key_id>\S+) \(serial (?P<serial>\d+)\) CA "
)
_STAMP_RE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*)\s")
_END_RE = re.compile(
    _PREFIX + r"(?:Disconnected from|Connection closed by|Received disconnect from)"
    r"(?: user| authenticating user| invalid user)? (?:\S+ )?(?P<address>[0-9a-fA-F:.]+) port "
    r"(?P<port>\d+)"
)


@dataclass(frozen=True)
class Session:
    """One certificate login, as the gateway's sshd logged it."""

    operator: str
    user: str
    address: str
    port: int
    serial: int
    started: str
    ended: str


def certificate_sessions(log: str) -> list[Session]:
    """Return every certificate login in an sshd log, with its end when the log has one."""
    found: list[dict[str, str]] = []
    for line in log.splitlines():
        stamp_match = _STAMP_RE.match(line)
        stamp = stamp_match.group("stamp") if stamp_match else ""
        login = _CERT_LOGIN_RE.match(line)
        if login:
            found.append({**login.groupdict(), "started": stamp, "ended": ""})
            continue
        end = _END_RE.match(line)
        if end:
            for session in reversed(found):
                same = (session["address"], session["port"]) == (end["address"], end["port"])
                if same and not session["ended"]:
                    session["ended"] = stamp or "ended"
                    break
    return [
        Session(
            operator=s["key_id"],
            user=s["user"],
            address=s["address"],
            port=int(s["port"]),
            serial=int(s["serial"]),
            started=s["started"],
            ended=s["ended"],
        )
        for s in found
    ]
