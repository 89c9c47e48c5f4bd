"""Command `bastion allow`: add an expiring rule, list, revoke, prune."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.context import deps_for, guarded, settings_for
from bastion.cli.options import DryRunOpt, JsonOpt, NameOpt, examples
from bastion.cli.output import emit_json, plan_json, render_plan, render_rules


def allow(
    ctx: typer.Context,
    target: Annotated[
        str | None, typer.Argument(help="A CIDR or address, or `me` (your detected IP).")
    ] = None,
    for_: Annotated[str, typer.Option("--for", help="Lifetime: 90m, 8h, 7d, or never.")] = "8h",
    label: Annotated[
        str | None,
        typer.Option("--label", help="Name of the rule [default: me for `me`, else adhoc]."),
    ] = None,
    name: NameOpt = None,
    list_rules: Annotated[
        bool, typer.Option("--list", help="Show every rule, its owner and lifetime.")
    ] = False,
    revoke: Annotated[
        str | None, typer.Option("--revoke", help="Remove the rules with this LABEL or CIDR.")
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove expired rules (safe to run from cron).")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Revoke someone else's rule, or the last rule admitting your own IP.",
        ),
    ] = False,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="Permit a range wider than /24 (IPv4) or /56 (IPv6)."),
    ] = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Who may reach the gateway port: add an expiring rule, list, revoke, prune expired ones."""

    def run() -> None:
        from bastion.domain.errors import UsageError
        from bastion.usecases import allow as use

        chosen = [bool(target), list_rules, revoke is not None, prune]
        if sum(chosen) != 1:
            raise UsageError(
                "allow does one thing at a time; pass exactly one of: a CIDR (or `me`), --list, "
                "--revoke LABEL|CIDR, --prune"
            )
        settings = settings_for(ctx, name=name)
        deps = deps_for(ctx, json_output)
        if list_rules:
            result = use.list_rules(settings, deps)
        elif revoke is not None:
            result = use.revoke(settings, deps, revoke, force=force, dry_run=dry_run)
        elif prune:
            result = use.prune(settings, deps, dry_run=dry_run)
        else:
            assert target is not None
            result = use.allow(
                settings,
                deps,
                target,
                duration=for_,
                label=label,
                force=force,
                dry_run=dry_run,
                wide=wide,
            )
        if json_output:
            emit_json(
                {
                    "plan": plan_json(result.plan),
                    "dry_run": dry_run,
                    "security_group": result.group_id,
                    "rules": result.rules,
                }
            )
            return
        if not list_rules:
            render_plan(result.plan, dry_run)
        render_rules(result.rules, result.group_id)

    guarded(run)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command(
        epilog=examples(
            "bastion allow me --for 8h",
            "bastion allow 198.51.100.0/24 --label office --for 30d",
            "bastion allow --list",
            "bastion allow --revoke office",
            "bastion allow --prune   (for cron)",
        )
    )(allow)
