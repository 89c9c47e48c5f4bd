"""Stand in for EC2 booting gateways: watch moto and serve each running gateway's sshd locally.

For every running instance tagged as a bastion gateway in moto, read its own user data and
start a real sshd (LocalGateway) on one fixed loopback port, so that `bastion --reach
127.0.0.1:PORT` reaches it just as it would reach a booted instance through a port forward.
A relaunched gateway (new instance, new host key) replaces the old sshd on the same port.
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
import time
from types import FrameType
from typing import Any

from bastion.testing.local_gateway import LocalGateway


def running_gateway(ec2: Any, name: str) -> tuple[str, str] | None:
    """Return (instance id, user data) of gateway `name` if one is running in moto."""
    reservations = ec2.describe_instances(
        Filters=[
            {"Name": "tag:bastion:name", "Values": [name]},
            {"Name": "tag:bastion:role", "Values": ["gateway"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    if not instances:
        return None
    instance_id = instances[0]["InstanceId"]
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    encoded = (attribute.get("UserData") or {}).get("Value", "")
    return instance_id, base64.b64decode(encoded).decode() if encoded else ""


def watch(name: str, port: int, poll: float = 0.5) -> None:
    """Keep the local sshd in step with gateway `name` in moto until interrupted."""
    import boto3

    ec2 = boto3.client("ec2")
    current: tuple[str, LocalGateway] | None = None
    try:
        while True:
            found = running_gateway(ec2, name)
            if current and (found is None or found[0] != current[0]):
                print(f"stand-in: {current[0]} is gone; stopping its sshd", flush=True)
                current[1].stop()
                current = None
            if found and current is None and found[1]:
                # With the key-management channel, so that `bastion rotate` works here too.
                gateway = LocalGateway(found[1], port=port, install_keyctl=True).start()
                current = (found[0], gateway)
                print(f"stand-in: {found[0]} boots as sshd on 127.0.0.1:{port}", flush=True)
            time.sleep(poll)
    finally:
        if current:
            current[1].stop()


def main(argv: list[str] | None = None) -> int:
    """Run the watcher until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m bastion.testing.stand_in")
    parser.add_argument("--name", default="default", help="gateway name")
    parser.add_argument("--port", type=int, required=True, help="loopback port for sshd")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        watch(args.name, args.port)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"stand-in: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
