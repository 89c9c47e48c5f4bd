"""ssh-audit finds nothing to fail on the gateway's sshd."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bastion.testing import LocalGateway


def audit(gateway: LocalGateway) -> tuple[int, dict[str, Any]]:
    """Run ssh-audit (JSON, no rate test) against the gateway; return exit status and report."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssh_audit",
            "-n",
            "--skip-rate-test",
            "-j",
            "-p",
            str(gateway.port),
            gateway.host,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, json.loads(result.stdout)


def test_ssh_audit_reports_no_failures(ssh_audit: None, gateway: LocalGateway) -> None:
    """No failing algorithm, no critical recommendation, no CVE (exit 2 = warnings only).

    Remaining warnings (on OpenSSH 9.2p1, Debian 12), accepted on purpose:
    - kex curve25519-sha256 and curve25519-sha256@libssh.org: "does not provide protection
      against post-quantum attacks". Kept because paramiko (bastion's own verifier) cannot
      speak sntrup761; on OpenSSH >= 9.9 images `post_quantum_kex` adds mlkem768x25519-sha256.
    - informational: "add rsa-sha2-256/512 host keys" (we serve one Ed25519 key on purpose) and
      the Terrapin note for chacha20-poly1305 (strict kex is supported by this server).
    """
    status, report = audit(gateway)
    failing = [
        (section, algorithm["algorithm"], algorithm["notes"]["fail"])
        for section in ("kex", "key", "enc", "mac")
        for algorithm in report[section]
        if algorithm.get("notes", {}).get("fail")
    ]
    assert failing == []
    assert "critical" not in report["recommendations"]
    assert report["cves"] == []
    assert status in (0, 2)
    warned = {
        algorithm["algorithm"]
        for section in ("kex", "key", "enc", "mac")
        for algorithm in report[section]
        if algorithm.get("notes", {}).get("warn")
    }
    assert warned <= {"curve25519-sha256", "curve25519-sha256@libssh.org"}
