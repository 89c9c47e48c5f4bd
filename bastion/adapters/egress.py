"""The login user's egress rule on the gateway: tcp/22 into the VPC, nothing else.

sshd opens every direct-tcpip forward (`ssh -J`/`-W`) from the login user's own session
process, so a forward starts on the instance itself: security groups and ACLs never see the
metadata service (169.254.169.254, fd00:ec2::254) or the gateway's loopback, and the IMDS hop
limit does not apply. `PermitOpen *:22` limits forwards to port 22 by the text the client sends;
this rule limits what that user's sockets reach, whatever the text: an owner match on the login
user's uid (`-m owner --uid-owner`, which iptables-nft turns into nftables' `meta skuid`) sends
its packets through one chain that accepts tcp/22 to the VPC's CIDRs and rejects everything
else, the loopback (the gateway's own addresses route there) first. root's egress (OS updates
on 443) is untouched. The commands run in cloud-init's `bootcmd`, before sshd starts and on
every boot; each run rebuilds the chain, so a rerun changes nothing.

cloud-init's bootcmd runs before its users module, so on the first boot the login user does not
exist yet: the rule names the fixed uid the user data gives it (`LOGIN_UID`).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence

from bastion.domain.errors import UsageError

CHAIN = "BASTION-LOGIN"
# Outside every range Debian, Ubuntu, Amazon Linux and systemd hand out (system users below
# 1000, regular ones to 60000, systemd's dynamic users 61184-65519, containers from 524288).
LOGIN_UID = 200222
APP_SSH_PORT = 22
# systemd-resolved's stub, for a jump to a name sshd resolves on the gateway (Ubuntu resolves
# through it; Debian and Amazon Linux ask resolved over its socket).
RESOLVER_STUB = "127.0.0.53"


def login_egress_commands(
    cidrs: Sequence[str], uid: int = LOGIN_UID, install: str = ""
) -> tuple[str, ...]:
    """Return the shell commands that confine the login user's sockets to tcp/22 in `cidrs`.

    `install` (a shell command) runs first when iptables is missing; without iptables the
    gateway says so on its console and keeps PermitOpen as the only limit.
    """
    v4, v6 = _split(cidrs)
    if not v4:
        raise UsageError("the login user's egress rule needs the VPC's IPv4 CIDR")
    owner = f"-m owner --uid-owner {uid}"
    lines = []
    if install:
        lines.append(f"command -v iptables >/dev/null || {install} || true")
    for tool, allowed, stub in (("iptables", v4, True), ("ip6tables", v6, False)):
        rules = [f"-N {CHAIN} 2>/dev/null", f"-F {CHAIN}"]
        if stub:
            rules.append(f"-A {CHAIN} -d {RESOLVER_STUB} -p udp --dport 53 -j ACCEPT")
        rules.append(f"-A {CHAIN} -o lo -j REJECT")
        rules += [
            f"-A {CHAIN} -d {cidr} -p tcp --dport {APP_SSH_PORT} -j ACCEPT" for cidr in allowed
        ]
        rules.append(f"-A {CHAIN} -j REJECT")
        rules.append(
            f"-C OUTPUT {owner} -j {CHAIN} 2>/dev/null || {tool} -w -I OUTPUT 1 {owner} -j {CHAIN}"
        )
        body = "; ".join(f"{tool} -w {rule}" for rule in rules)
        lines.append(
            f"if command -v {tool} >/dev/null; then {body}; else echo"
            f" {shlex.quote(f'bastion: no {tool}: the login user is confined by PermitOpen only')}"
            " >/dev/console; fi"
        )
    return tuple(lines)


def _split(cidrs: Sequence[str]) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise UsageError(f"VPC CIDR {cidr!r} is not a network (e.g. 10.0.0.0/16)") from None
        (v4 if network.version == 4 else v6).append(str(network))
    return sorted(set(v4)), sorted(set(v6))
