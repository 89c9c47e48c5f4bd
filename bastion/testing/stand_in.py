"""Stand in for EC2 booting gateways: serve every running one; one loopback port, the newest.

For every running instance tagged as a bastion gateway in moto, a real sshd (LocalGateway) is
started from the instance's own user data, so that `bastion --reach 127.0.0.1:PORT` reaches it
just as it would reach a booted instance through a port forward. The port is a small TCP router:
each new connection asks moto which gateway runs at that moment (the newest generation when a
blue/green relaunch runs two) and is piped to that gateway's sshd. So a terminated gateway stops
answering at once, and the next connection meets its replacement: there is no window in which
the old host key answers for the new instance. Every running generation keeps its own sshd
until moto no longer runs it, so sessions open through the old one last through a blue/green
relaunch until the old instance is terminated, as on EC2.

Each gateway is booted as soon as moto runs it (a watcher polls), not on the first connection:
like a real instance, it makes its own host key and prints it on its console, which
`--console-dir` keeps (`INSTANCE_ID.console`) for the console seam in front of moto
(`bastion.testing.console`), so `bastion up` can pin the key before it connects.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bastion.testing.boot import running_gateway_id, running_gateway_ids
from bastion.testing.console import publish
from bastion.testing.local_gateway import LOOPBACK, LocalGateway

Target = tuple[str, int]


def running_gateway(ec2: Any, name: str) -> tuple[str, str] | None:
    """Return (instance id, user data) of the newest running gateway `name` in moto."""
    instance_id = running_gateway_id(ec2, name)  # the boot watcher's choice, the same rule
    return None if instance_id is None else (instance_id, user_data_of(ec2, instance_id))


def user_data_of(ec2: Any, instance_id: str) -> str:
    """Return an instance's user data as text (empty when it has none)."""
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    encoded = (attribute.get("UserData") or {}).get("Value", "")
    return base64.b64decode(encoded).decode() if encoded else ""


class GatewayPool:
    """The local sshd of each running gateway instance, booted when it runs, stopped when not.

    Every running generation is served, as EC2 would run them: during a blue/green relaunch
    the old one keeps its sshd (and the sessions open through it) while the new one boots
    beside it; new connections to the router go to the newest (see `current`), and each
    instance's own sshd port stays reachable directly (`serving`).
    """

    def __init__(
        self,
        ec2: Any,
        name: str,
        log: Callable[[str], None] = print,
        console_dir: Path | None = None,
    ) -> None:
        self._ec2 = ec2
        self._console_dir = console_dir
        self._name = name
        self._log = log
        self._lock = threading.Lock()
        self._booted: dict[str, LocalGateway] = {}

    def current(self) -> Target | None:
        """Return where the newest running gateway listens, after syncing the pool with moto."""
        with self._lock:
            running = running_gateway_ids(self._ec2, self._name)
            for instance_id in [i for i in self._booted if i not in running]:
                self._log(f"stand-in: {instance_id} is no longer running; stopping its sshd")
                self._booted.pop(instance_id).stop()
            for instance_id in running:
                if instance_id not in self._booted:
                    self._boot(instance_id)
            served = [i for i in running if i in self._booted]
            if not served:
                return None
            gateway = self._booted[served[0]]
            return gateway.host, gateway.port

    def serving(self) -> dict[str, Target]:
        """Return where each booted instance's own sshd listens."""
        with self._lock:
            return {i: (g.host, g.port) for i, g in self._booted.items()}

    def _boot(self, instance_id: str) -> None:
        user_data = user_data_of(self._ec2, instance_id)
        if not user_data:
            return
        # With the key-management channel, so that `bastion rotate` works here too.
        gateway = LocalGateway(user_data, install_keyctl=True).start()
        self._booted[instance_id] = gateway
        self._log(f"stand-in: {instance_id} boots as sshd on {LOOPBACK}:{gateway.port}")
        if self._console_dir is not None:
            publish(self._console_dir, instance_id, gateway.console_text())

    def stop(self) -> None:
        """Stop every sshd this pool started."""
        with self._lock:
            for gateway in self._booted.values():
                gateway.stop()
            self._booted.clear()


class Router:
    """Accept on 127.0.0.1:PORT and pipe each connection to the target chosen at accept time."""

    def __init__(self, port: int, choose: Callable[[], Target | None]) -> None:
        self._choose = choose
        self._listener = socket.create_server((LOOPBACK, port))
        self.port: int = self._listener.getsockname()[1]

    def serve_forever(self) -> None:
        """Route connections until the listener is closed."""
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._route, args=(client,), daemon=True).start()

    def close(self) -> None:
        """Stop accepting connections."""
        self._listener.close()

    def _route(self, client: socket.socket) -> None:
        with client:
            try:
                target = self._choose()
                if target is None:
                    return  # nothing runs: the client sees a closed connection, as on EC2
                upstream = socket.create_connection(target, timeout=5)
            except Exception as exc:  # a failed boot must not end the router
                print(f"stand-in: cannot route a connection: {exc}", file=sys.stderr, flush=True)
                return
            with upstream:
                upstream.settimeout(None)
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def watch(name: str, port: int, console_dir: Path | None = None, poll: float = 0.2) -> None:
    """Serve gateway `name` from moto on 127.0.0.1:`port` until interrupted."""
    import boto3

    pool = GatewayPool(
        boto3.client("ec2"), name, log=lambda line: print(line, flush=True), console_dir=console_dir
    )
    router = Router(port, pool.current)
    stop = threading.Event()

    def boot_when_launched() -> None:
        while not stop.wait(poll):
            try:
                pool.current()
            except Exception as exc:  # moto restarting, a failed boot: keep watching
                print(f"stand-in: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    threading.Thread(target=boot_when_launched, name="stand-in-watch", daemon=True).start()
    print(f"stand-in: routing 127.0.0.1:{router.port} to gateway {name!r}", flush=True)
    try:
        router.serve_forever()
    finally:
        stop.set()
        router.close()
        pool.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the router until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.stand_in")
    parser.add_argument("--name", default="default", help="gateway name")
    parser.add_argument("--port", type=int, required=True, help="loopback port for sshd")
    parser.add_argument("--console-dir", type=Path, help="write each gateway's console here")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        watch(args.name, args.port, args.console_dir)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"stand-in: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
