"""Rendering, shared by every command: JSON for scripts, rich tables for people (stdout)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    # The audit's fix plan spans the layout (its name is "*"), not one gateway.
    subject = "the layout" if plan.name == "*" else f"gateway {plan.name!r}"
    if not changes:
        console.print(f"{head}: nothing to change for {subject}.")
    else:
        console.print(f"{head} for {subject} ({len(changes)} change(s)):")
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
    """Print the status report: a table when it fits the width, else one field a line."""
    rows = status_rows(data)
    print_table(f"gateway {data['name']} ({data['region']})", ("field", "value"), rows, False)


def status_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Return the status report as (field, value) rows."""
    instance = data.get("instance") or {}
    rows: list[tuple[str, ...]] = [
        ("instance", f"{instance.get('id', '-')} ({instance.get('state', 'none')})"),
        ("address", f"{instance.get('public_ip') or '-'} / {instance.get('private_ip') or '-'}"),
        ("port", str(data.get("port"))),
        ("generation", str(instance.get("generation", "-"))),
        ("security group", str(data.get("security_group") or "-")),
    ]
    allowed = (
        ", ".join(
            f"{a['cidr']} ({a['label'] or 'foreign'}"
            + (f", {a['remaining']}" if a.get("expires_at") else "")
            + ")"
            for a in data["allowed"]
        )
        or "-"
    )
    rows.append(("allowed", allowed))
    caller = data.get("caller") or "unknown"
    verdict = {True: "allowed", False: "NOT allowed", None: "unknown"}[data.get("caller_allowed")]
    rows.append(("your IP", f"{caller} ({verdict})"))
    rows.append(("login key", str(data.get("login_key_fingerprint") or "-")))
    if "login_keys" in data:  # `status` asks the gateway; `up`'s report does not
        rows.append(("login keys on the gateway", login_keys_text(data["login_keys"])))
    rows.append(("host key", host_key_text(data)))
    rows.append(("age (days)", str(instance.get("age_days", "-"))))
    ages = [
        f"{what} {data.get(key) if data.get(key) is not None else '-'}"
        for what, key in (
            ("login", "login_key_age_days"),
            ("host", "host_key_age_days"),
            ("admin", "admin_key_age_days"),
        )
    ]
    rows.append(("key ages (days)", ", ".join(ages)))
    sources = ", ".join(
        f"{s['source']}{' (gateway)' if s['is_gateway'] else ''}" for s in data["app_ssh_sources"]
    )
    rows.append(("app group SSH sources", f"{data.get('app_group') or '-'}: {sources or '-'}"))
    incidents = "\n".join(
        f"{i['id']} {i['state']}: {i['reason'] or '(no reason)'}"
        + (f", contained in {i['time_to_contain_s']} s" if i.get("time_to_contain_s") else "")
        for i in data.get("incidents", [])[:5]
    )
    rows.append(("incidents", incidents or "none"))
    rows.append(("drift", "\n".join(data["drift"]) or "none"))
    return rows


def print_table(
    title: str, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], show_header: bool = True
) -> None:
    """Print rows as a table if it fits the console unwrapped, else one record per block.

    A table squeezed into 80 columns (a pipe, a narrow terminal) cuts or folds its cells, ids
    and dates among them; a block of `field: value` lines never cuts anything.
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    console = Console(soft_wrap=True, highlight=False)
    table = Table(title=title, show_header=show_header)
    for index, header in enumerate(headers):
        table.add_column(header, style="bold" if index == 0 and not show_header else None)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    # Measured unconstrained: against the console's width rich would report the squeezed one.
    natural = Measurement.get(console, console.options.update_width(100_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    console.print(Text(title))
    for row in rows:
        # A field/value list prints one field a line; other tables one block per row.
        fields = list(zip(headers, row, strict=True)) if show_header else [(row[0], row[1])]
        for number, (name, value) in enumerate(fields):
            lead = "- " if show_header and number == 0 else "  "
            first, *rest = value.splitlines() or [""]
            console.print(Text(f"{lead}{name}: {first}"))
            for line in rest:
                console.print(Text(f"    {line}"))


def host_key_text(data: dict[str, Any]) -> str:
    """Say the gateway's host key and whether this machine pins it (and any recovery)."""
    fingerprint = data.get("host_key_fingerprint")
    if not fingerprint:
        return "-"
    if not data.get("host_key_pinned", True):
        return f"{fingerprint} (from its tag; NOT pinned on this machine)"
    recovered = data.get("host_key_recovered")
    if recovered and recovered.get("fingerprint") == fingerprint:
        return f"{fingerprint} (pinned; recovered {recovered['at']} from {recovered['source']})"
    return f"{fingerprint} (pinned)"


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
    """Print who may reach the gateway, one row (or block) per rule."""
    if group_id is None:
        typer.echo("No gateway group: nobody may connect (run `bastion up`).")
        return
    rows = [
        (
            str(rule["cidr"] or rule["source_group"]),
            str(rule["port"]),
            rule["label"] or "(not bastion's)",
            str(rule["owner"] or "-") + (" (you)" if rule["mine"] else ""),
            str(rule["expires_at"] or "never"),
            "EXPIRED" if rule["expired"] else str(rule["remaining"]),
        )
        for rule in rules
    ]
    headers = ("source", "port", "label", "owner", "expires", "remaining")
    print_table(f"who may reach the gateway ({group_id})", headers, rows)


def render_findings(findings: list[dict[str, Any]]) -> None:
    """Print the audit's findings, one row (or block) per finding."""
    if not findings:
        typer.echo("Audit: every check passed.")
        return
    rows = [
        (item["severity"].upper(), item["id"], item["resource"], item["message"], item["fix"])
        for item in findings
    ]
    print_table("bastion audit", ("severity", "id", "resource", "finding", "fix"), rows)
