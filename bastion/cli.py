"""The command line: parse, call a use case, render its data. The only place that exits."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bastion.errors import EXIT_CODE_HELP, BastionError, ExitStatus

if TYPE_CHECKING:
    from bastion.gateway import Deps
    from bastion.model import Plan
    from bastion.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="bastion",
    help=(
        "Run the whole life of an SSH gateway (bastion) on AWS EC2: a custom SSH port open "
        "only to you, pinned host keys, app hosts reachable only through it.\n\n"
        "Examples:\n\n"
        "  bastion up --app-sg sg-app            create or converge the gateway\n\n"
        "  bastion status                         what exists, who may connect, drift\n\n"
        "  bastion up --dry-run                   show every AWS change without making it\n\n"
        "  bastion down                           remove everything bastion made\n\n"
        + EXIT_CODE_HELP
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameOpt = Annotated[
    str | None, typer.Option("--name", "-n", help="Gateway name [default: default].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout; no progress.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan (every change) and make none.")
]
AppSgOpt = Annotated[
    str | None,
    typer.Option("--app-sg", help="App security group (id or name) to admit SSH from the gateway."),
]
ReachOpt = Annotated[
    str | None,
    typer.Option(
        "--reach",
        help="Where this machine reaches sshd: public (default), private (VPN), or HOST:PORT "
        "(an SSM port forward or the local demo).",
    ),
]


class State:
    """Options shared by every command, kept on typer's context object."""

    def __init__(self) -> None:
        self.profile: str | None = None
        self.region: str | None = None
        self.verbosity = 0
        self.deps: Deps | None = None


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if isinstance(obj, State):
        return obj
    state = State()
    # Tests inject a Deps object; importing its module here would slow every start-up.
    if obj is not None:
        state.deps = obj
    ctx.find_root().obj = state
    return state


@app.callback()
def main_options(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option("--profile", help="AWS profile.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v info logs, -vv debug logs.")
    ] = 0,
) -> None:
    """Options for every command."""
    state = _state(ctx)
    state.profile, state.region, state.verbosity = profile, region, verbose
    _configure_logging(verbose)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    # Third-party chatter only at -vv and above.
    for noisy in ("botocore", "boto3", "urllib3", "paramiko"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)


def _settings(ctx: typer.Context, **flags: Any) -> Settings:
    from bastion.settings import load_settings

    state = _state(ctx)
    return load_settings({"profile": state.profile, "region": state.region, **flags})


def _deps(ctx: typer.Context, json_output: bool) -> Deps:
    from bastion.gateway import Deps

    state = _state(ctx)
    deps = state.deps or Deps()
    deps.reporter = _reporter(json_output)
    return deps


def _reporter(json_output: bool) -> Any:
    from bastion.progress import ConsoleReporter

    return ConsoleReporter(live=not json_output and sys.stderr.isatty())


@contextmanager
def _boundary() -> Iterator[None]:
    """Map every failure to one line on stderr and its exit code; the only error boundary."""
    try:
        yield
    except BastionError as exc:
        typer.echo(f"bastion: error: {exc.message}", err=True)
        logging.getLogger(__name__).debug("details", exc_info=True)
        raise typer.Exit(int(exc.exit_status)) from None
    except KeyboardInterrupt:
        typer.echo("bastion: interrupted; rerun the same command to finish", err=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        logging.getLogger(__name__).debug("unexpected failure", exc_info=True)
        typer.echo(
            f"bastion: internal error: {type(exc).__name__}: {exc} "
            "(rerun with -vv for details and report it)",
            err=True,
        )
        raise typer.Exit(int(ExitStatus.ERROR)) from None


def _run(fn: Callable[[], T]) -> T:
    with _boundary():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _render_plan(plan: Plan, dry_run: bool) -> None:
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


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "command": plan.command,
        "name": plan.name,
        "actions": [
            {"kind": a.kind, "summary": a.summary, "mutating": a.mutating} for a in plan.actions
        ],
        "warnings": list(plan.warnings),
    }


def _render_status(data: dict[str, Any]) -> None:
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
    allowed = ", ".join(f"{a['cidr']} ({a['label'] or 'foreign'})" for a in data["allowed"]) or "-"
    table.add_row("allowed", allowed)
    caller = data.get("caller") or "unknown"
    verdict = {True: "allowed", False: "NOT allowed", None: "unknown"}[data.get("caller_allowed")]
    table.add_row("your IP", f"{caller} ({verdict})")
    table.add_row("login key", str(data.get("login_key_fingerprint") or "-"))
    table.add_row("host key (pinned)", str(data.get("host_key_fingerprint") or "-"))
    table.add_row("age (days)", str(instance.get("age_days", "-")))
    sources = ", ".join(
        f"{s['source']}{' (gateway)' if s['is_gateway'] else ''}" for s in data["app_ssh_sources"]
    )
    table.add_row("app group SSH sources", f"{data.get('app_group') or '-'}: {sources or '-'}")
    table.add_row("drift", "\n".join(data["drift"]) or "none")
    console.print(table)


@app.command(epilog="Example: bastion up --app-sg sg-0abc1234 --port 62222")
def up(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    port: Annotated[
        int | None, typer.Option("--port", help="sshd port on the gateway [default: 62222].")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", help="CIDR allowed to reach the port (repeatable); replaces IP detection."
        ),
    ] = None,
    allow_anywhere: Annotated[
        bool,
        typer.Option("--allow-anywhere", help="Permit 0.0.0.0/0 or ::/0 in --allow (dangerous)."),
    ] = False,
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", help="EC2 type [default: t3.micro].")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image", help="al2023 (default), debian13, ubuntu24.04, ami-..., or ssm:/param."
        ),
    ] = None,
    subnet: Annotated[
        str | None, typer.Option("--subnet", help="Subnet id [default: a default subnet].")
    ] = None,
    reach: ReachOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for the instance and sshd.")
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Skip the SSH check after launch.")
    ] = False,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Create or converge the gateway: key, group, sshd on a custom port, sg-app pointed at it."""

    def run() -> None:
        from bastion.gateway import up as run_up

        settings = _settings(
            ctx,
            name=name,
            app_sg=app_sg,
            port=port,
            allow=tuple(allow or ()),
            allow_anywhere=allow_anywhere or None,
            instance_type=instance_type,
            image=image,
            subnet=subnet,
            reach=reach,
            wait_timeout=timeout,
            verify=False if no_verify else None,
        )
        result = run_up(settings, _deps(ctx, json_output), dry_run=dry_run)
        if json_output:
            _emit_json(
                {"plan": _plan_json(result.plan), "dry_run": dry_run, "status": result.status}
            )
            return
        _render_plan(result.plan, dry_run)
        if result.status:
            _render_status(result.status)

    _run(run)


@app.command(epilog="Example: bastion status --json | jq .drift")
def status(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the gateway: instance, addresses, port, who may connect, keys, sg-app, drift."""

    def run() -> None:
        from bastion.gateway import status as run_status

        settings = _settings(ctx, name=name, app_sg=app_sg)
        data = run_status(settings, _deps(ctx, json_output))
        if json_output:
            _emit_json(data)
        else:
            _render_status(data)

    _run(run)


@app.command(epilog="Example: bastion down --dry-run")
def down(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove everything bastion made for the gateway (sg-app's reference first)."""

    def run() -> None:
        from bastion.gateway import down as run_down

        settings = _settings(ctx, name=name, app_sg=app_sg)
        result = run_down(settings, _deps(ctx, json_output), dry_run=dry_run)
        if json_output:
            _emit_json({"plan": _plan_json(result.plan), "dry_run": dry_run})
        else:
            _render_plan(result.plan, dry_run)

    _run(run)


def _duration(text: str) -> timedelta:
    import re

    from bastion.errors import UsageError

    match = re.fullmatch(r"(\d{1,5})([dhm])", text.strip())
    if not match:
        raise UsageError(f"--if-older-than {text!r} is not a duration; use e.g. 30d, 12h or 90m")
    unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


@app.command(
    epilog="Examples: bastion rotate --dry-run;  bastion rotate --if-older-than 30d  (for cron)"
)
def rotate(
    ctx: typer.Context,
    name: NameOpt = None,
    reach: ReachOpt = None,
    if_older_than: Annotated[
        str | None,
        typer.Option("--if-older-than", help="Rotate only when the login key is older, e.g. 30d."),
    ] = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Replace the login key in place: new key added and proven before the old one is removed."""

    def run() -> None:
        from bastion.rotate import rotate_login

        settings = _settings(ctx, name=name, reach=reach)
        older = _duration(if_older_than) if if_older_than else None
        result = rotate_login(settings, _deps(ctx, json_output), dry_run, older)
        if json_output:
            _emit_json(
                {
                    "plan": _plan_json(result.plan),
                    "dry_run": dry_run,
                    "skipped": result.skipped_reason,
                }
            )
        elif result.skipped_reason:
            typer.echo(f"Nothing to do: {result.skipped_reason}.")
        else:
            _render_plan(result.plan, dry_run)

    _run(run)


def main() -> None:
    """Entry point of the `bastion` script."""
    app()
