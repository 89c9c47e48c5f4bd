"""Run a gateway's sshd on loopback, built only from the instance's own cloud-init user data.

The stand-in does what cloud-init would do on the instance, minus the package manager: it takes
/etc/ssh/sshd_config, the authorized_keys files and the users from the user data, makes the
instance's own Ed25519 host key (as cloud-init's `ssh_genkeytypes` does at first boot; a key
seeded through `ssh_keys` is used instead, should user data carry one), writes the files into a
private directory, keeps what cloud-init would print on the console (`console_text`),
rewrites only the filesystem paths in the config (HostKey, AuthorizedKeysFile, PidFile,
Include; with `install_keyctl`, the key-management command too), drops what this machine's older
sshd cannot parse (newer key exchanges, PerSourcePenalties) and starts `sshd -D` on 127.0.0.1.
It runs no bootcmd: the login user's egress rule (an owner match on the gateway's firewall) would
confine this machine's own user, so only `PermitOpen *:22` confines its forwards here, and app
hosts stand in on port 22 of 127.0.0.N (`app_host`); the boot tier (`boot.py`) applies and tests
the rule. It needs root (sshd switches to the gateway's system users, which it creates when
missing). Run it from the shell with
`python -m bastion.testing.local_gateway --user-data FILE --port N`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from bastion.domain.errors import BastionError

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
# sshd's StrictModes walks up from each authorized_keys file and refuses group- or
# world-writable parents, so /tmp (1777) cannot hold them; /run is root-owned 0755.
DEFAULT_PARENT = Path("/run/bastion-local-gateway")
START_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"

_PATH_KEYWORDS = re.compile(
    r"^(\s*)(HostKey|AuthorizedKeysFile|PidFile|Include|TrustedUserCAKeys|RevokedKeys)(\s+)(\S.*)$",
    re.I,
)
_KEX_LINE = re.compile(r"^(\s*KexAlgorithms\s+)(\S+)\s*$", re.I)
_PENALTIES_LINE = re.compile(r"^\s*PerSourcePenalties\s", re.I)
_FORCE_COMMAND = re.compile(r"^(\s*ForceCommand\s+)(.*)$", re.I)
_SUDOERS_DIR = Path("/etc/sudoers.d")


class LocalGatewayError(BastionError):
    """The local stand-in gateway could not be prepared or started."""


def sshd_binary() -> str | None:
    """Return the path of the OpenSSH server binary, or None when it is not installed."""
    return SSHD if os.access(SSHD, os.X_OK) else None


def free_port() -> int:
    """Return a TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalGateway:
    """A real sshd on loopback configured exactly as the user data configures the gateway."""

    host = LOOPBACK

    def __init__(
        self,
        user_data: str,
        port: int | None = None,
        workdir: Path | None = None,
        install_keyctl: bool = False,
        host_key: str | None = None,
    ) -> None:
        """`host_key` (OpenSSH private key) stands in for the key the instance made, for tests."""
        self._cloud_config = _parse_user_data(user_data)
        self.port = port if port is not None else free_port()
        self._own_workdir = workdir is None
        self.workdir = workdir if workdir is not None else _make_workdir()
        self._private_dir = self.workdir / "private"
        self.authorized_keys_dir = self.workdir / "authorized_keys"
        self.sshd_config_path = self._private_dir / "sshd_config"
        self.log_path = self._private_dir / "sshd.log"
        self.host_key_path = self._private_dir / "ssh_host_ed25519_key"
        self.staged_config_dir = self._private_dir / "sshd_config.d"
        # The certificate trust (TrustedUserCAKeys, RevokedKeys), when the user data has it.
        self.trust_dir = self.workdir / "trust"
        self.revoked_keys_path = self.trust_dir / "revoked_keys"
        self.install_keyctl = install_keyctl
        keys = self._cloud_config.get("ssh_keys") or {}
        self.host_public_key: str = str(keys.get("ed25519_public", "")).strip()
        self._host_private_key: str = host_key or str(keys.get("ed25519_private", ""))
        self.users: tuple[tuple[str, str, str | None], ...] = _users(self._cloud_config)
        self._sudoers_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalGateway:
        """Write the gateway's files, check the config with `sshd -t` and start sshd."""
        binary = sshd_binary()
        if binary is None:
            raise LocalGatewayError(f"{SSHD} is missing; install openssh-server")
        if os.geteuid() != 0:
            raise LocalGatewayError(
                "LocalGateway needs root: sshd must switch to the gateway's users"
                " (and creates them with useradd); run the tests as root or in a container"
            )
        self._write_files()
        for name, shell, home in self.users:
            _ensure_user(name, shell, home)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        command = [
            binary,
            "-f",
            str(self.sshd_config_path),
            "-p",
            str(self.port),
            "-o",
            f"ListenAddress={LOOPBACK}",
        ]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise LocalGatewayError(f"sshd -t rejects the gateway config: {check.stderr.strip()}")
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [*command, "-D", "-e"], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        """Stop sshd and remove the files this gateway wrote."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._sudoers_path is not None:
            self._sudoers_path.unlink(missing_ok=True)
            self._sudoers_path = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def console_text(self, hostname: str = "ip-10-0-0-10") -> str:
        """Return what cloud-init prints on the console about this gateway's host key."""
        from bastion.testing.console import host_key_block

        if not self.host_public_key:
            raise LocalGatewayError("the gateway has no host key yet; start it first")
        return host_key_block([self.host_public_key], hostname)

    def wait(self) -> int:
        """Block until sshd exits and return its exit status."""
        if self._process is None:
            raise LocalGatewayError("the local gateway is not running")
        return self._process.wait()

    def log_text(self) -> str:
        """Return what sshd has logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_files(self) -> None:
        self.workdir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._private_dir.mkdir(mode=0o700, exist_ok=True)
        self.authorized_keys_dir.mkdir(mode=0o755, exist_ok=True)
        config = _file_content(self._cloud_config, "/etc/ssh/sshd_config")
        keys_dir = _authorized_keys_dir(config)
        for path, content in _write_files(self._cloud_config):
            if str(Path(path).parent) == keys_dir:
                _write(self.authorized_keys_dir / Path(path).name, content, 0o644)
        self._write_trust(config)
        if self._host_private_key.strip():
            _write(self.host_key_path, _with_newline(self._host_private_key), 0o600)
            derived = subprocess.run(
                ["ssh-keygen", "-y", "-f", str(self.host_key_path)],
                capture_output=True,
                text=True,
                check=False,
            )
            self.host_public_key = " ".join(derived.stdout.split()[:2]) or self.host_public_key
        else:
            self.host_public_key = _generate_host_key(self.host_key_path)
        original = config
        config = _fit_to_local_sshd(self._rewrite_paths(config))
        if self.install_keyctl:
            config = self._install_keyctl(config, keys_dir, original)
        _write(self.sshd_config_path, config, 0o600)

    def _rewrite_paths(self, config: str) -> str:
        replacements = {
            "hostkey": str(self.host_key_path),
            "authorizedkeysfile": f"{self.authorized_keys_dir}/%u",
            "pidfile": str(self._private_dir / "sshd.pid"),
            "include": f"{self.staged_config_dir}/*.conf",
            "trustedusercakeys": str(self.trust_dir / "trusted_user_ca_keys"),
            "revokedkeys": str(self.revoked_keys_path),
        }

        def replace(match: re.Match[str]) -> str:
            indent, keyword, space, value = match.groups()
            if keyword.lower() == "hostkey":
                # Several HostKey files (the staged one of a host-key rotation): keep each name.
                return f"{indent}{keyword}{space}{self._private_dir / Path(value.strip()).name}"
            return f"{indent}{keyword}{space}{replacements[keyword.lower()]}"

        return "\n".join(_PATH_KEYWORDS.sub(replace, line) for line in config.split("\n"))

    def _install_keyctl(self, config: str, keys_dir: str, original: str) -> str:
        # The real script lives in /usr/local/sbin with a sudoers drop-in; here both point into
        # the workdir so the host's /usr/local/sbin is left alone.
        keyctl_files = [(p, c) for p, c in _write_files(self._cloud_config) if "keyctl" in p]
        script = next(((p, c) for p, c in keyctl_files if not p.startswith("/etc/sudoers")), None)
        sudoers = next(((p, c) for p, c in keyctl_files if p.startswith("/etc/sudoers")), None)
        if script is None or sudoers is None:
            raise LocalGatewayError("the user data installs no key-management script")
        script_path = self.workdir / "bin" / Path(script[0]).name
        script_path.parent.mkdir(mode=0o755, exist_ok=True)
        text = script[1].replace(keys_dir, str(self.authorized_keys_dir))
        # The host keys and the pid file (for the reload) live in the private dir here.
        for keyword, local in (
            ("hostkey", self.host_key_path),
            ("pidfile", self._private_dir / "sshd.pid"),
            ("include", self.staged_config_dir / "*.conf"),
            ("revokedkeys", self.revoked_keys_path),
        ):
            for line in original.splitlines():
                match = _PATH_KEYWORDS.match(line)
                if match and match.group(2).lower() == keyword:
                    value = match.group(4).strip()
                    if keyword == "include":  # keyctl names the folder, not the glob
                        value, local = str(Path(value).parent), local.parent
                    text = text.replace(value, str(local))
                    break
        # sshd logs to a file here (`-e`), not to a journal: keyctl reads who logged in there.
        text = text.replace(
            "${BASTION_KEYCTL_SSHD_LOG:-}", f"${{BASTION_KEYCTL_SSHD_LOG:-{self.log_path}}}"
        )
        _write(script_path, text, 0o755)
        self._sudoers_path = _SUDOERS_DIR / f"bastion-local-gateway-{self.port}"
        _write(self._sudoers_path, sudoers[1].replace(script[0], str(script_path)), 0o440)
        return "\n".join(
            _FORCE_COMMAND.sub(
                lambda m: m.group(1) + m.group(2).replace(script[0], str(script_path)), line
            )
            for line in config.split("\n")
        )

    def _write_trust(self, config: str) -> None:
        """Write the TrustedUserCAKeys and RevokedKeys files the config names, as cloud-init."""
        wanted = {}
        for line in config.splitlines():
            match = _PATH_KEYWORDS.match(line)
            if match and match.group(2).lower() in ("trustedusercakeys", "revokedkeys"):
                wanted[match.group(4).strip()] = match.group(2).lower()
        if not wanted:
            return
        self.trust_dir.mkdir(mode=0o755, exist_ok=True)
        for entry in self._cloud_config.get("write_files") or []:
            if isinstance(entry, dict) and entry.get("path") in wanted:
                local = self.trust_dir / Path(str(entry["path"])).name
                local.write_bytes(_bytes_of(entry))
                local.chmod(0o644)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_text().strip().splitlines()[-5:]
                self.stop()
                raise LocalGatewayError(f"sshd exited at start: {' | '.join(tail)}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise LocalGatewayError(f"sshd did not listen on {self.host}:{self.port} within 10s")


def _generate_host_key(path: Path) -> str:
    """Make an Ed25519 host key at `path` (as cloud-init does at first boot); return it."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalGatewayError(f"ssh-keygen could not make a host key: {result.stderr.strip()}")
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _make_workdir() -> Path:
    DEFAULT_PARENT.mkdir(mode=0o755, parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gw-", dir=DEFAULT_PARENT))
    # Traversable by the gateway users: sshd reads authorized_keys with the user's identity.
    workdir.chmod(0o755)
    return workdir


def _parse_user_data(user_data: str) -> dict[str, Any]:
    if not user_data.startswith("#cloud-config"):
        raise LocalGatewayError("user data is not a #cloud-config document")
    loaded = yaml.safe_load(user_data)
    if not isinstance(loaded, dict):
        raise LocalGatewayError("user data is not a YAML mapping")
    return loaded


def _write_files(cloud_config: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(entry["path"]), _content_of(entry))
        for entry in cloud_config.get("write_files") or []
        if isinstance(entry, dict) and "path" in entry
    ]


def _content_of(entry: dict[str, Any]) -> str:
    """Return a write_files entry's content as cloud-init writes it (gz+b64 unpacked)."""
    content = str(entry.get("content", ""))
    encoding = str(entry.get("encoding", "text/plain")).lower()
    if encoding in ("gz+b64", "gzip+b64", "gz+base64", "gzip+base64"):
        return gzip.decompress(base64.b64decode(content)).decode()
    if encoding in ("b64", "base64"):
        return base64.b64decode(content).decode(errors="replace")  # a binary KRL: see _bytes_of
    return content


def _bytes_of(entry: dict[str, Any]) -> bytes:
    """Return a write_files entry's content as bytes (a binary KRL travels as b64)."""
    if str(entry.get("encoding", "")).lower() in ("b64", "base64"):
        return base64.b64decode(str(entry.get("content", "")))
    return _content_of(entry).encode()


def _file_content(cloud_config: dict[str, Any], path: str) -> str:
    for file_path, content in _write_files(cloud_config):
        if file_path == path:
            return content
    raise LocalGatewayError(f"the user data writes no {path}")


def _authorized_keys_dir(config: str) -> str:
    for line in config.splitlines():
        match = _PATH_KEYWORDS.match(line)
        if match and match.group(2).lower() == "authorizedkeysfile":
            return str(Path(match.group(4).split()[0]).parent)
    raise LocalGatewayError("the sshd_config has no AuthorizedKeysFile")


def _users(cloud_config: dict[str, Any]) -> tuple[tuple[str, str, str | None], ...]:
    return tuple(
        (
            str(user["name"]),
            str(user.get("shell", "/usr/sbin/nologin")),
            str(user["homedir"]) if user.get("homedir") else None,
        )
        for user in cloud_config.get("users") or []
        if isinstance(user, dict) and "name" in user
    )


def _fit_to_local_sshd(config: str) -> str:
    """Drop the options this machine's sshd is too old for (the image's sshd has them)."""
    known = set(
        subprocess.run(
            ["ssh", "-Q", "kex"], capture_output=True, text=True, check=False
        ).stdout.split()
    )
    version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", version)
    penalties = found is not None and (int(found.group(1)), int(found.group(2))) >= (9, 8)
    lines = []
    for line in config.split("\n"):
        kex = _KEX_LINE.match(line)
        if kex and known:
            kept = [name for name in kex.group(2).split(",") if name in known]
            line = kex.group(1) + ",".join(kept)
        if _PENALTIES_LINE.match(line) and not penalties:
            continue
        lines.append(line)
    return "\n".join(lines)


def _ensure_user(name: str, shell: str, home: str | None = None) -> None:
    if home:
        Path(home).mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        pwd.getpwnam(name)
    except KeyError:
        _add_user(name, shell, home)
    # As cloud-init's hashed_passwd "*": no password matches, yet the account is not locked
    # ("!"), which sshd without PAM would refuse.
    home_option = ["-d", home] if home else []
    subprocess.run(["usermod", "-p", "*", *home_option, name], capture_output=True, check=False)


def _add_user(name: str, shell: str, home: str | None) -> None:
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", shell]
        + (["--home-dir", home] if home else [])
        + [name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalGatewayError(f"useradd {name} failed: {result.stderr.strip()}")


def _write(path: Path, content: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(path, mode)  # O_CREAT's mode is masked by the umask and ignored for old files


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run a local gateway in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.local_gateway")
    parser.add_argument("--user-data", type=Path, required=True, help="cloud-config file")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1")
    parser.add_argument("--install-keyctl", action="store_true", help="enable the admin channel")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        gateway = LocalGateway(
            args.user_data.read_text(encoding="utf-8"),
            port=args.port,
            install_keyctl=args.install_keyctl,
        )
        gateway.start()
    except (OSError, BastionError) as exc:
        print(f"local gateway: {exc}", file=sys.stderr)
        return 1
    print(f"local gateway listening on {gateway.host}:{gateway.port}", flush=True)
    try:
        status = gateway.wait()
        print(f"local gateway: sshd exited with status {status}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
