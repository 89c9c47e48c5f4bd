"""Rendering, shared by every command: JSON for scripts, rich tables for people (stdout)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from bastion.domain.model import Plan


def emit_json(data: Any) -> None:
    """Print `data` as indented, sorted JSON."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def render_plan(plan: Plan, dry_run: bool) -> None:
    """Print a plan (or what was applied), one line per action."""
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    changes = plan.changes
    head = "Plan" if dry_run else "Applied"
    if not changes:
        console.print(f"{head}: nothing to change for gateway {plan.name!r}.")
    else:
        console.print(f"{head} for gateway {plan.name!r} ({len(changes)} change(s)):")
        for action in plan.actions:
            marker = "+" if action.mutating else "·"
            console.print(f"  {marker} {action.summary}", markup=False)
    if dry_run:
        console.print("Dry run: nothing was changed.")


def plan_json(plan: Plan) -> dict[str, Any]:
    """Return a plan as JSON-ready data."""
    return {
        "command": plan.command,
        "name": plan.name,
        "actions": [
            {"kind": a.kind, "summary": a.summary, "mutating": a.mutating} for a in plan.actions
        ],
        "warnings": list(plan.warnings),
    }


def render_status(data: dict[str, Any]) -> None:
    """Print the status report as a table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    table = Table(title=f"gateway {data['name']} ({data['region']})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    instance = data.get("instance") or {}
    table.add_row("instance", f"{instance.get('id', '-')} ({instance.get('state', 'none')})")
    table.add_row(
        "address", f"{instance.get('public_ip') or '-'} / {instance.get('private_ip') or '-'}"
    )
    table.add_row("port", str(data.get("port")))
    table.add_row("generation", str(instance.get("generation", "-")))
    table.add_row("security group", str(data.get("security_group") or "-"))
    allowed = (
        ", ".join(
            f"{a['cidr']} ({a['label'] or 'foreign'}"
            + (f", {a['remaining']}" if a.get("expires_at") else "")
            + ")"
            for a in data["allowed"]
        )
        or "-"
    )
    table.add_row("allowed", allowed)
    caller = data.get("caller") or "unknown"
    verdict = {True: "allowed", False: "NOT allowed", None: "unknown"}[data.get("caller_allowed")]
    table.add_row("your IP", f"{caller} ({verdict})")
    table.add_row("login key", str(data.get("login_key_fingerprint") or "-"))
    if "login_keys" in data:  # `status` asks the gateway; `up`'s report does not
        table.add_row("login keys on the gateway", login_keys_text(data["login_keys"]))
    table.add_row("host key (pinned)", str(data.get("host_key_fingerprint") or "-"))
    table.add_row("age (days)", str(instance.get("age_days", "-")))
    ages = [
        f"{what} {data.get(key) if data.get(key) is not None else '-'}"
        for what, key in (
            ("login", "login_key_age_days"),
            ("host", "host_key_age_days"),
            ("admin", "admin_key_age_days"),
        )
    ]
    table.add_row("key ages (days)", ", ".join(ages))
    sources = ", ".join(
        f"{s['source']}{' (gateway)' if s['is_gateway'] else ''}" for s in data["app_ssh_sources"]
    )
    table.add_row("app group SSH sources", f"{data.get('app_group') or '-'}: {sources or '-'}")
    incidents = "\n".join(
        f"{i['id']} {i['state']}: {i['reason'] or '(no reason)'}"
        + (f", contained in {i['time_to_contain_s']} s" if i.get("time_to_contain_s") else "")
        for i in data.get("incidents", [])[:5]
    )
    table.add_row("incidents", incidents or "none")
    table.add_row("drift", "\n".join(data["drift"]) or "none")
    console.print(table)


def login_keys_text(report: dict[str, Any]) -> str:
    """Describe the gateway's authorized login keys, or why they were not read."""
    if not report.get("checked"):
        return f"not checked: {report.get('reason') or 'unknown reason'}"
    lines = [
        f"{k['fingerprint']} {'(bastion)' if k['known'] else 'UNKNOWN: not put there by bastion'}"
        for k in report.get("keys", [])
    ]
    return "\n".join(lines) or "none"


def render_rules(rules: list[dict[str, Any]], group_id: str | None) -> None:
    """Print who may reach the gateway, one row per rule."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if group_id is None:
        console.print("No gateway group: nobody may connect (run `bastion up`).")
        return
    table = Table(title=f"who may reach the gateway ({group_id})")
    for column in ("source", "port", "label", "owner", "expires", "remaining"):
        table.add_column(column)
    for rule in rules:
        table.add_row(
            str(rule["cidr"] or rule["source_group"]),
            str(rule["port"]),
            rule["label"] or "(not bastion's)",
            str(rule["owner"] or "-") + (" (you)" if rule["mine"] else ""),
            str(rule["expires_at"] or "never"),
            "EXPIRED" if rule["expired"] else str(rule["remaining"]),
        )
    console.print(table)


def render_findings(findings: list[dict[str, Any]]) -> None:
    """Print the audit's findings as a table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if not findings:
        console.print("Audit: every check passed.")
        return
    table = Table(title="bastion audit")
    for column in ("severity", "id", "resource", "finding", "fix"):
        table.add_column(column, overflow="fold")
    for item in findings:
        table.add_row(
            item["severity"].upper(), item["id"], item["resource"], item["message"], item["fix"]
        )
    console.print(table)
