"""The audit's network checks: who reaches the gateway port, the app group and the database.

Sources are measured as address space (`domain.cidr.coverage`), not one rule at a time: rules
that together admit every public address are world-open however they are split, within one
group or across the groups of one gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.domain.audit import (
    DB_PORTS,
    FAIL,
    WARN,
    WEB_PORTS,
    Finding,
    Layout,
    Snapshot,
    live_gateways,
    manual_fix,
    ports_of,
    revoke_own,
    source_of,
)
from bastion.domain.cidr import coverage, is_wide, widest_allowed
from bastion.domain.model import Action, IngressRule, SecurityGroup
from bastion.domain.tags import TAG_NAME

# What the app group may admit, by port: the web ports (from the load balancer) and SSH (from
# the gateway); anything else on it is a door nobody planned.
APP_PORTS = (22, *WEB_PORTS)


@dataclass(frozen=True)
class _Opening:
    """Rules (of one group, or of one gateway's groups) that together admit the Internet."""

    resource: str
    where: str
    rules: tuple[tuple[SecurityGroup, IngressRule], ...]
    ports: tuple[int, ...]


def _world_open_ports(rules: Sequence[IngressRule], ports: Sequence[int]) -> list[int]:
    return [
        p
        for p in ports
        if coverage(r.cidr for r in rules if r.cidr and r.admits_port(p)).world_open
    ]


def _contributing(
    pairs: Sequence[tuple[SecurityGroup, IngressRule]], ports: Sequence[int]
) -> tuple[tuple[SecurityGroup, IngressRule], ...]:
    return tuple(
        (g, r)
        for g, r in pairs
        if r.cidr
        and any(r.admits_port(p) for p in ports)
        and coverage([r.cidr]).public_addresses > 0
    )


def world_openings(snapshot: Snapshot, layout: Layout) -> list[_Opening]:
    """Find every rule, group and gateway whose sources cover the Internet on a gateway port."""
    openings: list[_Opening] = []
    by_id = {g.group_id: g for g in snapshot.groups}
    for group in snapshot.groups:
        explained: set[int] = set()
        for rule in group.ingress:
            alone = _world_open_ports([rule], layout.ports)
            if alone:
                openings.append(
                    _Opening(group.group_id, group.name, ((group, rule),), tuple(alone))
                )
                explained |= set(alone)
        together = [p for p in _world_open_ports(group.ingress, layout.ports) if p not in explained]
        if together:
            pairs = _contributing([(group, r) for r in group.ingress], together)
            where = f"the rules of {group.name}"
            openings.append(_Opening(group.group_id, where, pairs, tuple(together)))
    for instance in live_gateways(snapshot):
        groups = [by_id[g] for g in instance.security_group_ids if g in by_id]
        by_group = {p for g in groups for p in _world_open_ports(g.ingress, layout.ports)}
        rules = [r for g in groups for r in g.ingress]
        together = [p for p in _world_open_ports(rules, layout.ports) if p not in by_group]
        if together:
            pairs = _contributing([(g, r) for g in groups for r in g.ingress], together)
            name = instance.tags.get(TAG_NAME, "default")
            where = f"gateway {name!r}'s groups ({', '.join(g.group_id for g in groups)})"
            openings.append(_Opening(instance.instance_id, where, pairs, tuple(together)))
    return openings


def check_world_open(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """SSH (22) or a gateway port reachable from every public address, in any group."""
    findings = []
    for opening in world_openings(snapshot, layout):
        ports = ",".join(map(str, opening.ports))
        if len(opening.rules) == 1:
            group, rule = opening.rules[0]
            action = revoke_own(group, rule)
            findings.append(
                Finding(
                    "world-open-ssh",
                    FAIL,
                    group.group_id,
                    f"{group.name} admits tcp/{ports} from {rule.cidr} (rule {rule.rule_id}): "
                    "anyone on the Internet can try to log in",
                    action.summary if action else manual_fix(group, rule),
                    action,
                )
            )
            continue
        cidrs = [str(r.cidr) for _, r in opening.rules]
        own = [(g, r) for g, r in opening.rules if r.label is not None]
        action = None
        if len(own) == len(opening.rules) and len({g.group_id for g, _ in own}) == 1:
            group = own[0][0]
            action = Action(
                "revoke_rule",
                f"revoke {', '.join(cidrs)} ({', '.join(r.rule_id for _, r in own)}) on "
                f"{group.group_id}",
                {"group_id": group.group_id, "rule_ids": sorted(r.rule_id for _, r in own)},
            )
        findings.append(
            Finding(
                "world-open-ssh",
                FAIL,
                opening.resource,
                f"{opening.where} admit tcp/{ports} from {', '.join(cidrs)}, which together "
                f"cover {coverage(cidrs).describe()}: anyone on the Internet can try to log in",
                action.summary
                if action
                else "; ".join(manual_fix(g, r) for g, r in opening.rules if r.label is None)
                + (" and revoke bastion's own with `bastion allow --revoke`" if own else ""),
                action,
            )
        )
    return findings


def check_wide_sources(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """A gateway port open to a range wider than /24 (IPv4) or /56 (IPv6)."""
    counted = {r.rule_id for o in world_openings(snapshot, layout) for _, r in o.rules}
    on_gateways = {g for i in live_gateways(snapshot) for g in i.security_group_ids}
    gateway_ids = {g.group_id for g in layout.gateway_groups} | on_gateways
    findings = []
    for group in (g for g in snapshot.groups if g.group_id in gateway_ids):
        for rule in group.ingress:
            open_ports = [p for p in layout.ports if rule.admits_port(p)]
            if not (rule.cidr and open_ports and is_wide(rule.cidr)) or rule.rule_id in counted:
                continue
            action = revoke_own(group, rule)
            findings.append(
                Finding(
                    "wide-source",
                    FAIL,
                    group.group_id,
                    f"{group.name} admits tcp/{','.join(map(str, open_ports))} from {rule.cidr} "
                    f"(rule {rule.rule_id}), wider than {widest_allowed(rule.cidr)}: it covers "
                    f"{coverage([rule.cidr]).describe()}",
                    action.summary if action else manual_fix(group, rule),
                    action,
                )
            )
    return findings


def check_app_ssh(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The app group admits SSH only from the current gateway group."""
    findings = []
    gateway_ids = {g.group_id for g in layout.gateway_groups}
    for app in layout.app:
        ssh = [r for r in app.ingress if r.admits_port(22)]
        for rule in ssh:
            if rule.source_group in layout.current_gateway_ids:
                continue
            if rule.source_group in gateway_ids:
                what = f"an old gateway generation ({rule.source_group})"
            elif rule.source_group:
                what = f"group {rule.source_group}, which is not the gateway"
            elif rule.cidr and rule.cidr.endswith(("/32", "/128")):
                what = f"the address {rule.cidr}"
            else:
                what = f"the network {rule.cidr}"
            action = revoke_own(app, rule)
            findings.append(
                Finding(
                    "app-ssh-source",
                    FAIL,
                    app.group_id,
                    f"{app.name} admits SSH from {what} (rule {rule.rule_id}); only the current "
                    "gateway should",
                    action.summary if action else manual_fix(app, rule),
                    action,
                )
            )
        if layout.current_gateway_ids and not any(
            r.source_group in layout.current_gateway_ids for r in ssh
        ):
            findings.append(
                Finding(
                    "app-ssh-missing",
                    WARN,
                    app.group_id,
                    f"{app.name} does not admit SSH from the current gateway group",
                    f"run `bastion up --app-sg {app.group_id}`",
                )
            )
    return findings


def check_app_ports(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The app group admits nothing but tcp 80/443 (load balancer) and 22 (gateway)."""
    return [
        _finding_source(
            "app-port-other",
            app,
            rule,
            "only tcp 80/443 from the load balancer and 22 from the gateway",
        )
        for app in layout.app
        for rule in app.ingress
        if not (rule.protocol == "tcp" and rule.from_port == rule.to_port in APP_PORTS)
    ]


def check_db(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The database group admits nothing but the app group, on any port."""
    app_ids = {g.group_id for g in layout.app}
    return [
        _finding_source(
            "db-source",
            db,
            rule,
            f"only the app group (it is the database: {'/'.join(map(str, DB_PORTS))} from the app)",
        )
        for db in layout.dbs
        for rule in db.ingress
        if rule.source_group not in app_ids
    ]


def check_app_web(snapshot: Snapshot, layout: Layout) -> list[Finding]:
    """The app group admits 80/443 only from the load balancer group (when --elb-sg is given)."""
    if layout.elb is None:
        return []
    findings = []
    for app in layout.app:
        findings += [
            _finding_source("app-web-source", app, rule, "80/443 only from the load balancer")
            for rule in app.ingress
            if any(rule.admits_port(p) for p in WEB_PORTS)
            and rule.source_group != layout.elb.group_id
        ]
    return findings


def _finding_source(check: str, group: SecurityGroup, rule: IngressRule, should: str) -> Finding:
    action = revoke_own(group, rule)
    return Finding(
        check,
        FAIL,
        group.group_id,
        f"{group.name} admits {ports_of(rule)} from {source_of(rule)} (rule {rule.rule_id}); it "
        f"should admit {should}",
        action.summary if action else manual_fix(group, rule),
        action,
    )
