"""EC2's console for in-process moto: each instance prints its own host key, as cloud-init does.

moto answers GetConsoleOutput with fixed text. `FakeConsoles` answers it (through a botocore
handler that a test's `Deps.on_ec2` registers, so bastion's own adapter, base64 and all, runs)
with the block cloud-init prints at first boot: an Ed25519 key made on the instance's first read
(the key the instance made itself), or whatever a test set for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from botocore.awsrequest import AWSResponse

from bastion.adapters.aws.client import Ec2
from bastion.adapters.keys import generate_key
from bastion.testing.console import console_output_xml, host_key_block
from tests.faults import ec2_error


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class FakeConsoles:
    """The consoles of moto's instances: a fresh host key per instance, or a test's text."""

    keys: dict[str, str] = field(default_factory=dict)  # instance id -> host public key
    texts: dict[str, str] = field(default_factory=dict)  # instance id -> console (a test's)
    silent: bool = False  # nothing printed yet (a boot that never finishes)
    latest: str | None = None  # the key of the instance that booted last
    reads: list[str] = field(default_factory=list)
    # Boots the instance for real (a local sshd) and returns the key it made, when given
    # (None: not one it boots, say an app host; that one gets a key made here).
    boot: Callable[[str], str | None] | None = None
    # Refuse `Latest=True` as EC2 does on instance types without a live console buffer.
    refuse_latest: bool = False
    requests: list[dict[str, list[str]]] = field(default_factory=list)

    def attach(self, ec2: Ec2) -> None:
        """Answer this client's GetConsoleOutput calls."""
        ec2.ec2.meta.events.register_first("before-send.ec2.GetConsoleOutput", self.handle)

    def key_of(self, instance_id: str) -> str:
        """Return the host key instance `instance_id` made at its first boot."""
        if instance_id not in self.keys:
            made = (self.boot(instance_id) if self.boot else None) or generate_key("").public_line
            self.keys[instance_id] = " ".join(made.split()[:2])
            self.latest = self.keys[instance_id]
        return self.keys[instance_id]

    def text(self, instance_id: str) -> str:
        """Return the console of `instance_id`."""
        if instance_id in self.texts:
            return self.texts[instance_id]
        if self.silent:
            return "Booting...\n"
        return "cloud-init: modules final\n" + host_key_block([self.key_of(instance_id)])

    def handle(self, request: Any = None, **_: Any) -> AWSResponse | None:
        body = request.body if request is not None else b""
        if isinstance(body, bytes):
            body = body.decode()
        form = parse_qs(str(body))
        instance_id = (form.get("InstanceId") or [""])[0]
        if not instance_id:
            return None
        self.requests.append(form)
        request.url = "https://console.invalid/"  # keep in-process moto from answering too
        if self.refuse_latest and form.get("Latest") == ["true"]:
            return ec2_error("UnsupportedOperation", 400, "latest console output not supported")
        self.reads.append(instance_id)
        xml = console_output_xml(instance_id, self.text(instance_id))
        return AWSResponse("https://console.invalid/", 200, {}, _Raw(xml))
