"""Test doubles shipped with bastion: a local stand-in for a launched gateway."""

from bastion.testing.local_gateway import LocalGateway, LocalGatewayError, free_port, sshd_binary

__all__ = ["LocalGateway", "LocalGatewayError", "free_port", "sshd_binary"]
