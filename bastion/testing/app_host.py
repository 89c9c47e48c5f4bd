"""Stand in for an app instance behind the gateway: a plain sshd on port 22 with one user.

Unlike the gateway stand-in, this is an ordinary SSH server: a normal user with a shell, one
authorized key, its own Ed25519 host key. It exists so that tests and `scripts/demo` can run a
command on an "app host" through the gateway with ProxyJump. The gateway lets its login user
forward to port 22 only, so an app host listens on 22 of an address of its own: a loopback
address 127.0.0.N of this machine (`free_loopback_address`), or an address of the VPC stand-in
(`app_network.AppNetwork`) inside its network namespace (`netns`). It needs root (sshd
switches to the user, which it creates when missing). From the shell:
`python -m bastion.testing.app_host [--host ADDR] [--netns NAME] --user app --authorized-key K.pub`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType

from bastion.testing.local_gateway import (
    DEFAULT_PARENT,
    LOOPBACK,
    PRIVSEP_DIR,
    START_TIMEOUT,
    LocalGatewayError,
    _ensure_user,
    _write,
    sshd_binary,
)

APP_USER = "bastion-app"


def free_loopback_address() -> str:
    """Return a loopback address 127.0.0.N (N >= 2) whose port 22 is free right now."""
    for n in random.sample(range(2, 255), 253):
        address = f"127.0.0.{n}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 22))
            except OSError:
                continue
            return address
    raise LocalGatewayError("no loopback address 127.0.0.N has a free port 22")


class LocalAppHost:
    """A real sshd on HOST:22 admitting `user` (shell /bin/sh) with one public key."""

    def __init__(
        self,
        authorized_key: str,
        user: str = APP_USER,
        port: int = 22,
        host: str | None = None,
        netns: str | None = None,
    ) -> None:
        self.authorized_key = authorized_key.strip()
        self.user = user
        self.port = port
        # In another network namespace the address is the caller's; here a free loopback one.
        self.host = host or (LOOPBACK if netns else free_loopback_address())
        self.netns = netns
        DEFAULT_PARENT.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Under /run, not /tmp: sshd's StrictModes refuses world-writable parents.
        self.workdir = Path(tempfile.mkdtemp(prefix="app-", dir=DEFAULT_PARENT))
        self.workdir.chmod(0o755)
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.log_path = self.workdir / "sshd.log"
        self.host_public_key = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalAppHost:
        """Make a host key, write the config and start sshd."""
        binary = sshd_binary()
        if binary is None:
            raise LocalGatewayError("/usr/sbin/sshd is missing; install openssh-server")
        if os.geteuid() != 0:
            raise LocalGatewayError("LocalAppHost needs root: sshd must switch to the app user")
        _ensure_user(self.user, "/bin/sh", home="/")  # a home that exists: sshd chdirs there
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key_path)],
            check=True,
            capture_output=True,
        )
        self.host_public_key = " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])
        keys_dir = self.workdir / "authorized_keys"
        keys_dir.mkdir(mode=0o755)
        _write(keys_dir / self.user, self.authorized_key + "\n", 0o644)
        config = self.workdir / "sshd_config"
        _write(
            config,
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {self.host}",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {keys_dir}/%u",
                    "AuthenticationMethods publickey",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    # PAM for account handling: the user's password is locked ("!").
                    "UsePAM yes",
                    f"AllowUsers {self.user}",
                    "LogLevel VERBOSE",
                    "",
                ]
            ),
            0o600,
        )
        command = [binary, "-f", str(config)]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise LocalGatewayError(f"sshd -t rejects the app host config: {check.stderr.strip()}")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [*command, "-D", "-e"], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self._wait_until_listening()
        return self

    def console_text(self) -> str:
        """Return what cloud-init would print on this host's console about its host key."""
        from bastion.testing.console import host_key_block

        return host_key_block([self.host_public_key], "app-host")

    def publish_console(self, directory: Path, instance_id: str) -> Path:
        """Write this host's console as that of EC2 instance `instance_id` (the console seam)."""
        from bastion.testing.console import publish

        return publish(directory, instance_id, self.console_text())

    def known_hosts_line(self) -> str:
        """Return the known_hosts line for this host as ssh looks it up (ADDR, or `[ADDR]:PORT`)."""
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_public_key}\n"

    def log_text(self) -> str:
        """Return what sshd has logged so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop sshd and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalAppHost:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = " | ".join(self.log_text().strip().splitlines()[-5:])
                self.stop()
                raise LocalGatewayError(f"app host sshd exited at start: {tail}")
            if self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise LocalGatewayError(f"app host sshd did not listen on {self.host}:{self.port}")

    def _listening(self) -> bool:
        if self.netns is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        # Not connecting from here: the address is only routable inside the namespace.
        found = subprocess.run(
            ["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{self.port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return any(word.endswith(f":{self.port}") for word in found.split())


def main(argv: list[str] | None = None) -> int:
    """Run an app host stand-in in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.app_host")
    parser.add_argument("--port", type=int, default=22, help="port (default 22)")
    parser.add_argument("--host", help="address (default: a free 127.0.0.N)")
    parser.add_argument("--netns", help="network namespace to listen in (ip netns name)")
    parser.add_argument("--user", default=APP_USER, help="login user (created if missing)")
    parser.add_argument("--authorized-key", type=Path, required=True, help="public key file")
    parser.add_argument("--known-hosts", type=Path, help="write its known_hosts line here")
    parser.add_argument("--console-dir", type=Path, help="publish its console here ...")
    parser.add_argument("--instance-id", help="... as the console of this EC2 instance")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        host = LocalAppHost(
            args.authorized_key.read_text(), args.user, args.port, args.host, args.netns
        ).start()
    except (OSError, LocalGatewayError, subprocess.CalledProcessError) as exc:
        print(f"app host: {exc}", file=sys.stderr)
        return 1
    if args.console_dir and args.instance_id:
        host.publish_console(args.console_dir, args.instance_id)
    if args.known_hosts:
        args.known_hosts.write_text(host.known_hosts_line())
    print(f"app host listening on {host.host}:{host.port} as {host.user}", flush=True)
    try:
        while host._process is not None and host._process.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        host.stop()


if __name__ == "__main__":
    sys.exit(main())
