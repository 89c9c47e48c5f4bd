"""Talk SSH to the gateway with a pinned host key (the only importer of paramiko).

Host keys are never learned: the key bastion seeded at launch is put into a fresh client's host
key store and anything else is rejected (`RejectPolicy`); ~/.ssh/known_hosts, agents and default
key files are never consulted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko

from bastion.domain.errors import (
    GatewayUnavailable,
    HostKeyMismatchError,
    SshError,
    TimeoutExpired,
    UsageError,
)

_log = logging.getLogger(__name__)

_MISMATCH_ADVICE = (
    "the gateway is not the one bastion launched; do not connect"
    " — run `bastion status`/`bastion burn`"
)


@dataclass(frozen=True)
class Endpoint:
    """Where the gateway's sshd listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def known_hosts_name(endpoint: Endpoint) -> str:
    """Return the name OpenSSH and paramiko look a host key up under."""
    return endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"


def public_key_fingerprint(public_key: str) -> str:
    """Return the SHA256 fingerprint ("SHA256:...") of an OpenSSH public key line."""
    return _fingerprint_of_blob(_split_public_key(public_key)[1])


def tcp_reachable(endpoint: Endpoint, timeout: float = 3.0) -> bool:
    """Return whether a TCP connection to the endpoint opens within the timeout."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return True
    except OSError:
        return False


def verify_login(
    endpoint: Endpoint,
    user: str,
    private_key_path: Path,
    pinned_host_public_key: str,
    timeout: float = 10.0,
    *,
    forward_to: Endpoint | None = None,
) -> str:
    """Log in with the pinned host key and return the gateway's host key fingerprint.

    Authentication success is the proof for the forwarding-only login user (it has no shell);
    with `forward_to`, also open a direct-tcpip channel (what ProxyJump does) to that target.
    """
    with _connected(endpoint, user, private_key_path, pinned_host_public_key, timeout) as client:
        if forward_to is not None:
            _open_forward(client, endpoint, forward_to, timeout)
        return _server_fingerprint(client)


def run_keyctl(
    endpoint: Endpoint,
    user: str,
    private_key_path: Path,
    pinned_host_public_key: str,
    command: str,
    timeout: float = 10.0,
    *,
    stdin_data: str | None = None,
) -> str:
    """Send a request over the admin (key-management) channel and return its output.

    A secret (a host private key) travels as `stdin_data`, never in the command line.
    """
    with _connected(endpoint, user, private_key_path, pinned_host_public_key, timeout) as client:
        try:
            stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            if stdin_data is not None:
                stdin.write(stdin_data)
                stdin.flush()
            stdin.close()
            out = stdout.read().decode("utf-8", "replace")
            err = stderr.read().decode("utf-8", "replace").strip()
            status = stdout.channel.recv_exit_status()
        except TimeoutError as exc:
            raise TimeoutExpired(
                f"key-management request to {endpoint} got no answer within {timeout:g}s"
            ) from exc
        except paramiko.SSHException as exc:
            raise SshError(f"gateway {endpoint} refused the key-management request: {exc}") from exc
    if status != 0:
        detail = err.splitlines()[-1] if err else f"exit status {status}"
        raise SshError(f"key-management request {command.split()[0]!r} failed: {detail}")
    return out


@contextmanager
def _connected(
    endpoint: Endpoint,
    user: str,
    private_key_path: Path,
    pinned_host_public_key: str,
    timeout: float,
) -> Iterator[paramiko.SSHClient]:
    _quiet_paramiko()
    pinned = _pinned_key(pinned_host_public_key)
    login_key = _load_private_key(private_key_path)
    client = paramiko.SSHClient()
    # Only the pinned key, under the exact name paramiko looks up for this host and port.
    client.get_host_keys().add(known_hosts_name(endpoint), pinned.get_name(), pinned)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    _log.debug("connecting to %s as %s with key %s", endpoint, user, login_key.fingerprint)
    try:
        try:
            client.connect(
                hostname=endpoint.host,
                port=endpoint.port,
                username=user,
                pkey=login_key,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            raise HostKeyMismatchError(
                f"host key mismatch at {endpoint}: got {_fingerprint_of_key(exc.key)},"
                f" pinned {_fingerprint_of_key(exc.expected_key)}; {_MISMATCH_ADVICE}"
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise SshError(
                f"gateway {endpoint} refused login key {login_key.fingerprint} for user {user!r};"
                " run `bastion rotate` or check which key `bastion status` expects"
            ) from exc
        except TimeoutError as exc:
            raise TimeoutExpired(
                f"SSH to {endpoint} timed out after {timeout:g}s; check that the security group"
                " allows your IP (`bastion up` refreshes it) and that the gateway is running"
            ) from exc
        except paramiko.SSHException as exc:
            if _timed_out(exc, client):
                raise TimeoutExpired(
                    f"{endpoint} sent no SSH greeting within {timeout:g}s; is sshd (and not"
                    " something else) listening there, and is the gateway overloaded?"
                ) from exc
            if "host key" in str(exc).lower():
                # The server cannot present the pinned key type at all.
                raise HostKeyMismatchError(
                    f"gateway {endpoint} offers no host key of the pinned type"
                    f" ({pinned.get_name()}, pinned {_fingerprint_of_key(pinned)});"
                    f" {_MISMATCH_ADVICE}"
                ) from exc
            raise GatewayUnavailable(f"SSH handshake with {endpoint} failed: {exc}") from exc
        except OSError as exc:
            raise GatewayUnavailable(
                f"cannot connect to {endpoint}: {exc.strerror or exc}; check that the gateway is"
                " running and the security group allows your IP (`bastion up` refreshes it)"
            ) from exc
        yield client
    finally:
        client.close()


def _open_forward(
    client: paramiko.SSHClient, endpoint: Endpoint, target: Endpoint, timeout: float
) -> None:
    transport = client.get_transport()
    if transport is None:
        raise SshError(f"SSH connection to {endpoint} closed before forwarding was tried")
    try:
        channel = transport.open_channel(
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as exc:
        raise SshError(
            f"gateway {endpoint} accepted the login but refused forwarding to {target}"
            f" ({exc.text}); check the gateway's permit-open list"
        ) from exc
    except paramiko.SSHException as exc:
        raise SshError(f"forwarding through {endpoint} to {target} failed: {exc}") from exc
    channel.close()


def _server_fingerprint(client: paramiko.SSHClient) -> str:
    transport = client.get_transport()
    if transport is None:
        raise SshError("SSH connection closed before the host key could be read")
    return _fingerprint_of_key(transport.get_remote_server_key())


def _pinned_key(public_key: str) -> paramiko.PKey:
    key_type, blob = _split_public_key(public_key)
    try:
        return paramiko.PKey.from_type_string(key_type, blob)
    except (paramiko.SSHException, ValueError) as exc:
        raise UsageError(f"pinned host key is not a usable {key_type} public key: {exc}") from exc


def _load_private_key(path: Path) -> paramiko.PKey:
    try:
        key = paramiko.PKey.from_path(path)
        # An operator's certificate beside the key (`bastion cert`): offered instead of the key.
        certificate = path.with_name(path.name + "-cert.pub")
        if certificate.exists():
            key.load_certificate(str(certificate))
        return key
    except FileNotFoundError as exc:
        raise UsageError(f"private key {path} does not exist") from exc
    except PermissionError as exc:
        raise UsageError(f"private key {path} is not readable: {exc.strerror}") from exc
    except (paramiko.SSHException, ValueError) as exc:
        raise UsageError(
            f"private key {path} is not an unencrypted OpenSSH key paramiko can use: {exc}"
        ) from exc


def _split_public_key(public_key: str) -> tuple[str, bytes]:
    parts = public_key.split()
    if len(parts) < 2:
        raise UsageError("public key must look like 'ssh-ed25519 AAAA... [comment]'")
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UsageError(f"public key {parts[0]} has a malformed base64 part") from exc


def _fingerprint_of_key(key: paramiko.PKey) -> str:
    return _fingerprint_of_blob(key.asbytes())


def _fingerprint_of_blob(blob: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _timed_out(exc: BaseException, client: paramiko.SSHClient) -> bool:
    # When negotiation outlasts the timeout, paramiko's start_client returns quietly and the
    # next step fails with "No existing session"; a transport-thread timeout sits in the chain.
    if str(exc) == "No existing session":
        return True
    transport = client.get_transport()
    saved = transport.get_exception() if transport is not None else None
    for error in (exc, saved):
        while error is not None:
            if isinstance(error, TimeoutError):
                return True
            error = error.__cause__ or error.__context__
    return False


def _quiet_paramiko() -> None:
    # paramiko logs every failed handshake as an ERROR traceback from its transport thread;
    # those failures reach the user once, as the BastionError raised here.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
