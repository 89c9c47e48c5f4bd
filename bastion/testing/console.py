"""A console for instances moto runs: what cloud-init prints, served as EC2's GetConsoleOutput.

moto answers `GetConsoleOutput` with the same fixed text for every instance, so the host key a
booted gateway prints on its console could never reach bastion. This is the test seam, outside
bastion's own code: the stand-ins (`stand_in.py`, `app_host.py`) and the boot tier write each
instance's console to `DIR/INSTANCE_ID.console`, and a small WSGI middleware in front of moto's
server app answers `GetConsoleOutput` for those instances (base64, the last 64 KB, as EC2 does)
and passes every other request to moto untouched. From the shell:

    python -m bastion.testing.console moto-server -p N --console-dir DIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

CONSOLE_LIMIT = 64 * 1024  # EC2 keeps only the last 64 KB of an instance's console
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def host_key_block(public_lines: Sequence[str], hostname: str = "ip-10-0-0-10") -> str:
    """Return what cloud-init prints about the host keys at the end of a first boot."""
    from bastion.domain.fingerprints import fingerprint

    stamp = datetime.now(UTC).strftime("%b %d %H:%M:%S")
    prefix = f"<14>{stamp} cloud-init: "
    lines = [f"{prefix}{'#' * 61}", f"{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----"]
    for line in public_lines:
        key_type = line.split()[0].replace("ssh-", "").upper()
        lines.append(f"{prefix}256 {fingerprint(line)} root@{hostname} ({key_type})")
    lines += [f"{prefix}-----END SSH HOST KEY FINGERPRINTS-----", f"{prefix}{'#' * 61}"]
    lines.append("-----BEGIN SSH HOST KEY KEYS-----")
    lines += [f"{' '.join(line.split()[:2])} root@{hostname}" for line in public_lines]
    lines.append("-----END SSH HOST KEY KEYS-----")
    return "\n".join(lines) + "\n"


def console_path(directory: Path, instance_id: str) -> Path:
    """Return where the console of `instance_id` is kept in `directory`."""
    if not _INSTANCE_ID.match(instance_id):
        raise ValueError(f"{instance_id!r} is not an instance id")
    return directory / f"{instance_id}.console"


def publish(directory: Path, instance_id: str, text: str, append: bool = True) -> Path:
    """Write (or add to) the console of `instance_id`, as the instance would print it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = console_path(directory, instance_id)
    old = path.read_text(encoding="utf-8") if append and path.exists() else ""
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".console-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(old + text)
    os.chmod(temp, 0o644)
    os.replace(temp, path)  # a reader never sees half a block
    return path


def console_output_xml(instance_id: str, text: str) -> bytes:
    """Return EC2's GetConsoleOutput answer: the last 64 KB, base64-encoded."""
    data = text.encode("utf-8", "replace")[-CONSOLE_LIMIT:]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<GetConsoleOutputResponse xmlns="{EC2_XMLNS}">'
        f"<requestId>{escape(os.urandom(8).hex())}</requestId>"
        f"<instanceId>{escape(instance_id)}</instanceId>"
        f"<timestamp>{stamp}</timestamp>"
        f"<output>{base64.b64encode(data).decode()}</output>"
        f"</GetConsoleOutputResponse>"
    ).encode()


class ConsoleMiddleware:
    """Answer GetConsoleOutput from the console folder; hand everything else to `app`."""

    def __init__(self, app: WsgiApp, directory: Path) -> None:
        self.app = app
        self.directory = directory

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
            answer = self._console(body)
            if answer is not None:
                start_response(
                    "200 OK",
                    [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))],
                )
                return [answer]
        return self.app(environ, start_response)

    def _console(self, body: bytes) -> bytes | None:
        if b"GetConsoleOutput" not in body:
            return None
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") != ["GetConsoleOutput"]:
            return None
        instance_id = (form.get("InstanceId") or [""])[0]
        try:
            path = console_path(self.directory, instance_id)
        except ValueError:
            return None
        if not path.exists():
            return None  # nobody booted it: moto's own (fixed) text
        return console_output_xml(instance_id, path.read_text(encoding="utf-8", errors="replace"))


def serve_moto(host: str, port: int, directory: Path) -> None:
    """Run moto's server app behind the console middleware until interrupted."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # as moto_server does
    directory.mkdir(parents=True, exist_ok=True)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host,
        port,
        ConsoleMiddleware(app, directory),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


def main(argv: list[str] | None = None) -> int:
    """Run moto_server with the console seam (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.console")
    commands = parser.add_subparsers(dest="command", required=True)
    moto = commands.add_parser("moto-server", help="moto_server answering real consoles")
    moto.add_argument("-H", "--host", default="127.0.0.1")
    moto.add_argument("-p", "--port", type=int, required=True)
    moto.add_argument("--console-dir", type=Path, required=True, help="INSTANCE_ID.console files")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve_moto(args.host, args.port, args.console_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
