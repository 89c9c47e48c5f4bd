"""Fixtures for tests against a real OpenSSH sshd on loopback.

A missing sshd, ssh client, cloud-init, ssh-audit or root skips these tests on a laptop, but fails
them when CI=true: CI must never pass by skipping the tests that matter most.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from bastion.adapters.render import SshdParams, UserDataParams, render_user_data
from bastion.adapters.ssh import Endpoint
from bastion.testing import LocalGateway, sshd_binary
from bastion.testing.app_host import LocalAppHost


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, or fail it when running in CI."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this must not be skipped in CI)")
    pytest.skip(reason)


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair with its private half written to a 0600 file."""

    private_pem: str
    public: str
    path: Path


def make_key_pair(directory: Path, name: str) -> KeyPair:
    """Generate an Ed25519 key pair and write the private key 0600 from the first byte."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
    return KeyPair(private_pem=pem, public=f"{public} {name}@test", path=path)


@dataclass(frozen=True)
class GatewayKeys:
    host: KeyPair
    login: KeyPair
    admin: KeyPair
    stranger: KeyPair


@pytest.fixture(scope="session")
def sshd() -> str:
    """Return the sshd binary, as root (sshd switches users; LocalGateway runs useradd)."""
    binary = sshd_binary()
    require(binary is not None, "/usr/sbin/sshd is missing; install openssh-server")
    require(os.geteuid() == 0, "real-sshd tests need root (useradd, privilege separation)")
    assert binary is not None
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return binary


@pytest.fixture(scope="session")
def ssh_client() -> str:
    """Return the OpenSSH client binary."""
    binary = shutil.which("ssh")
    require(binary is not None, "the OpenSSH client `ssh` is missing; install openssh-client")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def ssh_keygen() -> str:
    """Return the ssh-keygen binary (bastion-keyctl fingerprints keys with it)."""
    binary = shutil.which("ssh-keygen")
    require(binary is not None, "ssh-keygen is missing; install openssh-client")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def cloud_init() -> str:
    """Return the cloud-init binary."""
    binary = shutil.which("cloud-init")
    require(binary is not None, "cloud-init is missing; install the Debian package cloud-init")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def ssh_audit() -> None:
    """Require the ssh_audit module (PyPI ssh-audit) in this interpreter."""
    require(
        importlib.util.find_spec("ssh_audit") is not None,
        "ssh-audit is missing; pip install ssh-audit",
    )


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> GatewayKeys:
    """Return fresh host, login, admin and unknown ("stranger") keys."""
    directory = tmp_path_factory.mktemp("keys")
    return GatewayKeys(
        host=make_key_pair(directory, "host"),
        login=make_key_pair(directory, "login"),
        admin=make_key_pair(directory, "admin"),
        stranger=make_key_pair(directory, "stranger"),
    )


def gateway_user_data(
    keys: GatewayKeys, image_family: str = "debian13", sshd: SshdParams | None = None
) -> str:
    """Render the user data a gateway with these keys would boot with."""
    return render_user_data(
        UserDataParams(
            sshd=sshd or SshdParams(port=2222),
            image_family=image_family,
            login_public_key=keys.login.public,
            admin_public_key=keys.admin.public,
            vpc_cidrs=("127.0.0.0/8",),  # the stand-in's app hosts live on loopback addresses
        )
    )


@pytest.fixture(scope="session")
def user_data_for() -> Callable[..., str]:
    """Return the function that renders a gateway's user data for the given keys."""
    return gateway_user_data


@pytest.fixture(scope="session")
def gateway(sshd: str, keys: GatewayKeys) -> Iterator[LocalGateway]:
    """Run one local gateway, from rendered user data, for the whole session."""
    with LocalGateway(gateway_user_data(keys), host_key=keys.host.private_pem) as running:
        yield running


@pytest.fixture(scope="session")
def behind(sshd: str, keys: GatewayKeys) -> Iterator[LocalAppHost]:
    """Run a host behind the gateway: a real sshd on 127.0.0.N:22 (the login user forwards to
    port 22 only) admitting `bastion-app` with the "stranger" key."""
    with LocalAppHost(keys.stranger.public, user="bastion-app") as running:
        yield running


@pytest.fixture()
def endpoint(gateway: LocalGateway) -> Endpoint:
    """Return where the session's local gateway listens."""
    return Endpoint(gateway.host, gateway.port)
