"""The real `GatewayProbe`: reach, log in to and talk to a gateway's sshd through `adapters.ssh`.

paramiko is imported on first use only, so commands that never open SSH never load it.
"""

from __future__ import annotations

from pathlib import Path


class OpenSshProbe:
    """Check a gateway with paramiko: pinned host key, RejectPolicy, the login key."""

    def tcp_reachable(self, host: str, port: int) -> bool:
        """Tell whether tcp `host:port` accepts a connection."""
        from bastion.adapters.ssh import Endpoint, tcp_reachable

        return tcp_reachable(Endpoint(host, port))

    def verify_login(
        self, host: str, port: int, user: str, key_path: str, pinned_host_key: str
    ) -> str:
        """Log in with the key, refusing any host key but the pinned one."""
        from bastion.adapters.ssh import Endpoint, verify_login

        return verify_login(Endpoint(host, port), user, Path(key_path), pinned_host_key)

    def keyctl(
        self,
        host: str,
        port: int,
        user: str,
        key_path: str,
        pinned_host_key: str,
        command: str,
        stdin: str | None = None,
    ) -> str:
        """Run one request over the key-management channel (secrets on stdin only)."""
        from bastion.adapters.ssh import Endpoint, run_keyctl

        return run_keyctl(
            Endpoint(host, port), user, Path(key_path), pinned_host_key, command, stdin_data=stdin
        )
