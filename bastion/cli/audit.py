"""Command `bastion audit`: check the whole layout; exit 9 on a failure."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import JsonOpt, examples
from bastion.cli.output import (
    emit_json,
    login_keys_text,
    plan_json,
    render_findings,
    render_plan,
)


def audit(
    ctx: typer.Context,
    app_sg: Annotated[
        str | None,
        typer.Option("--app-sg", help="App group [default: groups admitting the gateway]."),
    ] = None,
    db_sg: Annotated[
        str | None,
        typer.Option(
            "--db-sg",
            help="Database group: only the app [default: groups the app reaches on 3306/5432].",
        ),
    ] = None,
    elb_sg: Annotated[
        str | None, typer.Option("--elb-sg", help="Load balancer group: app's only 80/443 source.")
    ] = None,
    max_key_age: Annotated[
        str, typer.Option("--max-key-age", help="Oldest acceptable login key, e.g. 90d.")
    ] = "90d",
    port: Annotated[
        int | None, typer.Option("--port", help="Gateway sshd port [default: 62222].")
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair what bastion owns (its rules and groups) only.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what --fix would change; change nothing.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check the whole layout: open SSH, sg-app/sg-rds sources, gateway hardening, incidents."""

    def run() -> None:
        from bastion.domain.allowlist import parse_duration
        from bastion.domain.audit import AuditOptions
        from bastion.domain.errors import AuditFailed, UsageError
        from bastion.usecases.audit import audit as run_audit

        age = parse_duration(max_key_age, "--max-key-age")
        if age is None:
            raise UsageError("--max-key-age needs a duration; pass e.g. --max-key-age 90d")
        settings = settings_for(ctx, port=port)
        options = AuditOptions(app_sg, db_sg, elb_sg, age, settings.port)
        result = run_audit(settings, deps_for(ctx, json_output), options, fix=fix, dry_run=dry_run)
        findings = [f.to_dict() for f in result.findings]
        if json_output:
            emit_json(
                {
                    "findings": findings,
                    "failures": len(result.failures),
                    "fix_plan": plan_json(result.plan),
                    "fixed": [f.to_dict() for f in result.fixed],
                    "login_keys": result.login_keys,
                    "serial_console_access": result.serial_console_access,
                    "dry_run": dry_run,
                }
            )
        else:
            if fix or dry_run:
                render_plan(result.plan, dry_run or not fix)
            render_findings(findings)
            for instance_id, report in result.login_keys.items():
                typer.echo(f"login keys of {instance_id}: {login_keys_text(report)}")
        if result.failures:
            raise AuditFailed(
                f"{len(result.failures)} check(s) failed "
                f"({', '.join(sorted({f.check for f in result.failures}))}); "
                "see the fix column, or `bastion audit --fix --dry-run` for what bastion can repair"
            )

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        epilog=examples(
            "bastion audit --app-sg sg-app --db-sg sg-rds --elb-sg sg-elb",
            "bastion audit --json   (exits 9 on any failure, for CI)",
            "bastion audit --fix --dry-run",
        )
    )(audit)
