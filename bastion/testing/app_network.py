"""A stand-in for the VPC behind a booted gateway: a network namespace the gateway is wired into.

`AppNetwork` makes a network namespace with a bridge. Each booted gateway gets a veth pair: one
end (`ens5`, as on a Nitro instance) in the gateway's namespace with its private address, the
other on the bridge. App hosts listen on addresses of the bridge (a real sshd, see
`app_host.LocalAppHost(netns=...)`). The bridge also carries stand-ins for EC2's instance metadata
addresses (169.254.169.254 and fd00:ec2::254, routed from the gateway through `ens5` as on EC2),
so that tests can show what the gateway's login user can and cannot reach without ever
addressing the real metadata service or another host: every address lives in a namespace made
here, and `stop()` removes it.

`python -m bastion.testing.app_network listen ADDR:PORT... --log FILE` runs small TCP servers (one
per address; each answers one line and logs every connection), started in a namespace with
`ip netns exec` or `nsenter --net`; `add-host NETNS ADDR` gives a running stand-in (say the one
`python -m bastion.testing.boot serve --vpc-netns NETNS` made) one more app host address.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

METADATA_V4 = "169.254.169.254"
METADATA_V6 = "fd00:ec2::254"
# The gateway's and the bridge's IPv6 addresses share fd00:ec2::/64 with the metadata address,
# so its replies route back on the link; the VPC itself has no IPv6 CIDR here.
GATEWAY_V6 = "fd00:ec2::10"
BRIDGE = "vpc0"
GUEST_DEVICE = "ens5"
NETNS_PREFIX = "bastion-vpc-"
_SERIALS = itertools.count(1)


class AppNetworkError(Exception):
    """The stand-in network could not be made."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AppNetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


class AppNetwork:
    """A namespace standing in for the VPC: a bridge, app host addresses, metadata stand-ins."""

    def __init__(self, cidr: str, name: str | None = None) -> None:
        self.network = ipaddress.ip_network(cidr)
        self.name = name or f"{NETNS_PREFIX}{os.getpid()}-{next(_SERIALS)}"
        self.netns_path = Path("/run/netns") / self.name
        self.addresses: list[str] = []
        self._links = itertools.count(1)
        self._servers: list[subprocess.Popen[bytes]] = []
        self._created = False

    @property
    def prefix(self) -> int:
        """Return the VPC CIDR's prefix length."""
        return self.network.prefixlen

    def start(self) -> AppNetwork:
        """Make the namespace, its bridge and the metadata stand-in addresses."""
        _ip("netns", "add", self.name)
        self._created = True
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", self.name, "link", "set", BRIDGE, "up")
        _ip("-n", self.name, "addr", "add", f"{METADATA_V4}/32", "dev", BRIDGE)
        _ip("-n", self.name, "-6", "addr", "add", f"{METADATA_V6}/64", "dev", BRIDGE, "nodad")
        # The gateways are on the link, whatever addresses the app hosts have.
        _ip("-n", self.name, "route", "add", str(self.network), "dev", BRIDGE)
        return self

    def add_host(self, address: str) -> str:
        """Give the bridge one more address of the VPC (an app host listens there)."""
        if ipaddress.ip_address(address) not in self.network:
            raise AppNetworkError(f"{address} is not in the VPC stand-in {self.network}")
        add_host(self.name, address)
        self.addresses.append(address)
        return address

    def attach(self, netns: Path, address: str) -> None:
        """Wire a gateway's namespace in: `ens5` with `address`, and EC2's metadata routes."""
        peer = f"gw{os.getpid() % 10000}n{next(self._links)}"
        if netns.parent != Path("/run/netns"):
            raise AppNetworkError(f"{netns} is not a named network namespace")
        target = ["-n", netns.name]
        _ip("link", "add", peer, "netns", self.name, "type", "veth", "peer", "name", GUEST_DEVICE,
            "netns", netns.name)  # fmt: skip
        _ip("-n", self.name, "link", "set", peer, "master", BRIDGE, "up")
        _ip(*target, "addr", "add", f"{address}/{self.prefix}", "dev", GUEST_DEVICE)
        _ip(*target, "-6", "addr", "add", f"{GATEWAY_V6}/64", "dev", GUEST_DEVICE, "nodad")
        _ip(*target, "link", "set", GUEST_DEVICE, "up")
        # As on EC2: the metadata service is a link-local neighbour behind the instance's NIC.
        _ip(*target, "route", "add", f"{METADATA_V4}/32", "dev", GUEST_DEVICE)

    def listen(self, endpoints: Sequence[str], log: Path, netns: Path | None = None) -> None:
        """Run small TCP servers on `endpoints` (ADDR:PORT) in this namespace (or `netns`)."""
        namespace = netns or self.netns_path
        process = subprocess.Popen(
            ["nsenter", f"--net={namespace}", sys.executable, "-m", "bastion.testing.app_network",
             "listen", "--log", str(log), *endpoints],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        self._servers.append(process)
        assert process.stdout is not None
        ready = process.stdout.readline()  # "ready" once every socket listens
        if not ready.startswith(b"ready"):
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AppNetworkError(f"listeners on {' '.join(endpoints)} did not start: {error}")

    def run(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run a command in this namespace."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns_path}", *command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def stop(self) -> None:
        """Stop the listeners, kill whatever runs in the namespace, delete it."""
        for process in self._servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self._servers.clear()
        if self._created:
            pids = _ip("netns", "pids", self.name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "delete", self.name, check=False)
            self._created = False

    def __enter__(self) -> AppNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def add_host(netns: str, address: str) -> None:
    """Give the bridge of the VPC stand-in `netns` the address `address` (an app host's)."""
    _ip("-n", netns, "addr", "add", f"{address}/32", "dev", BRIDGE)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """Split `ADDR:PORT` or `[V6]:PORT`."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def _serve(endpoints: Sequence[str], log: Path) -> None:
    lock = threading.Lock()
    listeners = []
    for endpoint in endpoints:
        host, port = split_endpoint(endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
        listeners.append((endpoint, sock))

    def accept(endpoint: str, sock: socket.socket) -> None:
        while True:
            client, peer = sock.accept()
            with lock, log.open("a") as out:
                out.write(f"{endpoint} from {peer[0]}\n")
            with contextlib.suppress(OSError), client:
                client.sendall(f"stand-in {endpoint}\n".encode())

    for endpoint, sock in listeners:
        threading.Thread(target=accept, args=(endpoint, sock), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    """Run the listeners (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.app_network")
    commands = parser.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen", help="TCP servers that log each connection")
    listen.add_argument("--log", type=Path, required=True)
    listen.add_argument("endpoints", nargs="+", metavar="ADDR:PORT")
    host = commands.add_parser("add-host", help="give the VPC stand-in NETNS an app address")
    host.add_argument("netns")
    host.add_argument("address")
    args = parser.parse_args(argv)
    if args.command == "add-host":
        add_host(args.netns, args.address)
        return 0

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    _serve(args.endpoints, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
