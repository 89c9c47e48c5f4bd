"""Use case `rotate`: replace the gateway's keys without ever locking the operator out.

Three ways: the login key in place (default, `login`), the host key in place (`--host-key`,
`host_key`), both over the key-management channel (`channel`); or a whole new generation,
blue/green (`--relaunch`, `relaunch`).
"""

from bastion.usecases.rotate.channel import RotateResult, parse_authorized_fingerprints
from bastion.usecases.rotate.host_key import rotate_host_key
from bastion.usecases.rotate.login import rotate_login
from bastion.usecases.rotate.relaunch import relaunch_gateway

__all__ = [
    "RotateResult",
    "parse_authorized_fingerprints",
    "relaunch_gateway",
    "rotate_host_key",
    "rotate_login",
]
