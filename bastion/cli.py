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
        "  bastion up --app-sg sg-app      create or converge the gateway\n\n"
        "  bastion status                  what exists, who may connect, drift\n\n"
        "  bastion ssh-config --write      then `ssh app-1` goes through the gateway\n\n"
        "  bastion rotate --if-older-than 30d   new login key when due\n\n"
        "  bastion burn --reason '...'     incident: contain, keep evidence, relaunch\n\n"
        "  bastion audit                   check the whole layout (for CI)\n\n"
        "  bastion down                    remove everything bastion made\n\n" + EXIT_CODE_HELP
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
    from bastion.redact import RedactSecrets

    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())  # botocore's debug lines carry user data
    # Third-party chatter only at -vv and above.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
    # paramiko logs its transport thread's failures with tracebacks (e.g. no banner yet while
    # sshd boots); bastion reports them itself as one line, so paramiko speaks only at -vvv.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbosity >= 3 else logging.CRITICAL)


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
    restrict_forwarding: Annotated[
        bool,
        typer.Option(
            "--restrict-forwarding",
            help="At launch, let the login forward only to the running app hosts' IP:22 "
            "(PermitOpen); app hosts added later need a relaunch.",
        ),
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
            restrict_forwarding=restrict_forwarding or None,
        )
        result = run_up(settings, _deps(ctx, json_output), dry_run=dry_run)
        if json_output:
            _emit_json(
                {
                    "plan": _plan_json(result.plan),
                    "dry_run": dry_run,
                    "status": result.status,
                    "ssh_config": result.ssh_config,
                }
            )
            return
        _render_plan(result.plan, dry_run)
        if result.status:
            _render_status(result.status)
        if result.ssh_config:
            typer.echo(f"SSH config kept current: {result.ssh_config}", err=True)

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
    epilog="Examples: bastion rotate --dry-run;  bastion rotate --if-older-than 30d  (for cron);  "
    "bastion rotate --host-key;  bastion rotate --relaunch --app-sg sg-0abc1234"
)
def rotate(
    ctx: typer.Context,
    name: NameOpt = None,
    reach: ReachOpt = None,
    host_key: Annotated[
        bool,
        typer.Option(
            "--host-key",
            help="Replace the gateway's host key in place (known_hosts trusts both meanwhile).",
        ),
    ] = False,
    relaunch: Annotated[
        bool,
        typer.Option(
            "--relaunch",
            help="Blue/green: launch a new generation with new keys, move sg-app to it, "
            "then destroy the old one.",
        ),
    ] = False,
    app_sg: AppSgOpt = None,
    if_older_than: Annotated[
        str | None,
        typer.Option(
            "--if-older-than",
            help="Rotate only when the key (or, with --relaunch, the instance) is older, e.g. 30d.",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Replace the gateway's keys without a lockout: each new key is proven before the old goes.

    By default the login key, in place; --host-key the host key, in place; --relaunch a whole
    new generation (new login, admin and host keys), blue/green. Rerun after any interruption.
    """

    def run() -> None:
        from bastion.errors import UsageError
        from bastion.rotate import relaunch_gateway, rotate_host_key, rotate_login

        if host_key and relaunch:
            raise UsageError(
                "--host-key and --relaunch exclude each other; a relaunch makes new keys"
            )
        settings = _settings(ctx, name=name, reach=reach, app_sg=app_sg)
        older = _duration(if_older_than) if if_older_than is not None else None
        use_case = relaunch_gateway if relaunch else rotate_host_key if host_key else rotate_login
        result = use_case(settings, _deps(ctx, json_output), dry_run, older)
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


@app.command(
    "ssh-config",
    epilog="Examples: bastion ssh-config;  bastion ssh-config --write --app-user ec2-user "
    "--app-identity ~/.ssh/app_ed25519   (then: ssh app-1);  bastion ssh-config --json | jq .hosts",
)
def ssh_config_command(
    ctx: typer.Context,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    reach: ReachOpt = None,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Install it as ~/.ssh/config.d/bastion-NAME and Include that from ~/.ssh/config "
            "(one line at the top, once, with a backup); `bastion up` keeps it current.",
        ),
    ] = False,
    app_user: Annotated[
        str | None, typer.Option("--app-user", help="Login user on the app hosts, e.g. ec2-user.")
    ] = None,
    app_identity: Annotated[
        str | None, typer.Option("--app-identity", help="Private key file for the app hosts.")
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--hosts",
            help="Host pattern for app hosts by address (repeatable), instead of the VPC range, "
            "e.g. '10.0.*'.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Print (or --write) an OpenSSH config: the pinned gateway, app hosts via ProxyJump."""

    def run() -> None:
        from pathlib import Path

        from bastion.access import SshConfigOptions, ssh_config
        from bastion.sshconfig import host_blocks

        settings = _settings(ctx, name=name, app_sg=app_sg, reach=reach)
        options = SshConfigOptions(
            app_user=app_user,
            app_identity=Path(app_identity) if app_identity else None,
            hosts=tuple(hosts or ()),
        )
        result = ssh_config(settings, _deps(ctx, json_output), options, write=write)
        if json_output:
            gateway = result.config.gateway
            _emit_json(
                {
                    "config": result.text,
                    "written": str(result.path) if result.path else None,
                    "changed": result.changed,
                    "include_added": bool(result.include and result.include.added),
                    "backup": str(result.include.backup)
                    if result.include and result.include.backup
                    else None,
                    "gateway": {
                        "alias": gateway.alias,
                        "host": gateway.host,
                        "port": gateway.port,
                        "user": gateway.user,
                    },
                    "hosts": [
                        {"aliases": list(b.aliases), "address": b.address}
                        for b in host_blocks(result.config)
                    ],
                    "patterns": list(result.config.patterns),
                    "warnings": list(result.warnings),
                }
            )
            return
        if result.path is None:
            typer.echo(result.text, nl=False)
            return
        how = "written" if result.changed else "already current"
        typer.echo(f"{result.path}: {how}")
        if result.include and result.include.added:
            backup = f" (backup: {result.include.backup})" if result.include.backup else ""
            typer.echo(f"{result.include.path}: Include line added at the top{backup}")
        aliases = [b.aliases[0] for b in host_blocks(result.config)]
        typer.echo(f"Try: ssh {aliases[0] if aliases else result.config.gateway.alias}")

    _run(run)


@app.command(
    "ssh",
    epilog="Examples: bastion ssh   (the gateway's forwarding-only login; Ctrl-C ends it);  "
    "bastion ssh app-1;  bastion ssh app-1 -- -L 8080:localhost:80 uptime",
)
def ssh_command(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Argument(help="App host alias or address; none: the gateway itself."),
    ] = None,
    ssh_args: Annotated[
        list[str] | None, typer.Argument(help="After --: options and command for ssh.")
    ] = None,
    name: NameOpt = None,
    app_sg: AppSgOpt = None,
    reach: ReachOpt = None,
) -> None:
    """Run the real ssh with the generated config: to HOST through ProxyJump, or the gateway."""

    def run() -> None:
        from bastion.access import exec_ssh
        from bastion.access import ssh_command as command_line

        target, extra = host, list(ssh_args or ())
        if target is not None and target.startswith("-"):  # `bastion ssh -- -v`
            extra.insert(0, target)
            target = None
        settings = _settings(ctx, name=name, app_sg=app_sg, reach=reach)
        deps = _deps(ctx, json_output=True)
        argv = command_line(settings, deps, target, extra)
        logging.getLogger(__name__).info("exec %s", " ".join(argv))
        exec_ssh(argv, deps)

    _run(run)


@app.command(
    epilog="Examples: bastion burn --reason 'odd logins at 03:12';  bastion burn --dry-run;  "
    "bastion burn --resume inc-20260101T031500Z-ab12"
)
def burn(
    ctx: typer.Context,
    name: NameOpt = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the incident record.")] = "",
    no_relaunch: Annotated[
        bool, typer.Option("--no-relaunch", help="Contain, preserve and destroy; launch nothing.")
    ] = False,
    keep_instance: Annotated[
        bool,
        typer.Option(
            "--keep-instance", help="Leave the instance stopped and isolated for forensics."
        ),
    ] = False,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Carry on an interrupted incident by id.")
    ] = None,
    reach: ReachOpt = None,
    app_sg: AppSgOpt = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="CIDR allowed to reach the new gateway (repeatable)."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait for each state change and for sshd."),
    ] = None,
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Incident: contain the gateway first, keep evidence, destroy it, relaunch with new keys."""

    def run() -> None:
        import re

        from bastion.burn import burn as run_burn
        from bastion.burn import describe_steps
        from bastion.errors import UsageError

        if resume is not None and not re.fullmatch(r"inc-\d{8}T\d{6}Z-[0-9a-f]{4}", resume):
            raise UsageError(
                f"--resume {resume!r} is not an incident id; they look like "
                "inc-20260101T031500Z-ab12 (see the incidents folder)"
            )
        settings = _settings(
            ctx,
            name=name,
            reach=reach,
            app_sg=app_sg,
            allow=tuple(allow or ()),
            wait_timeout=timeout,
        )
        result = run_burn(
            settings,
            _deps(ctx, json_output),
            reason=reason,
            relaunch=not no_relaunch,
            keep_instance=keep_instance,
            resume=resume,
            dry_run=dry_run,
        )
        incident = result.incident
        if json_output:
            _emit_json(
                {
                    "incident": incident.__dict__,
                    "record": str(result.record_path),
                    "steps": describe_steps(result.steps, result.calls),
                    "dry_run": dry_run,
                }
            )
            return
        head = "Plan" if dry_run else "Done"
        typer.echo(f"{head} for incident {incident.incident_id} on gateway {incident.name!r}:")
        for item in describe_steps(result.steps, result.calls):
            typer.echo(f"  + {item['summary']}")
            for call in item.get("calls", []):
                typer.echo(f"      {call}")
        if dry_run:
            typer.echo("Dry run: nothing was changed.")
            return
        relaunched = incident.relaunch
        if relaunched:
            typer.echo(
                f"New gateway {relaunched.get('instance_id')} (generation "
                f"{relaunched.get('generation')}), "
                f"host key {relaunched.get('host_key_fingerprint')}"
            )
        typer.echo(
            f"Contained in {incident.timings.get('time_to_contain_s')} s; "
            f"report: {result.record_path} (and report.md beside it)"
        )

    _run(run)


def _render_rules(rules: list[dict[str, Any]], group_id: str | None) -> None:
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


@app.command(
    epilog="Examples: bastion allow me --for 8h;  bastion allow 198.51.100.0/24 --label office "
    "--for 30d;  bastion allow --list;  bastion allow --revoke office;  "
    "bastion allow --prune  (for cron)"
)
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
    dry_run: DryRunOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Who may reach the gateway port: add an expiring rule, list, revoke, prune expired ones."""

    def run() -> None:
        from bastion import allow as use
        from bastion.errors import UsageError

        chosen = [bool(target), list_rules, revoke is not None, prune]
        if sum(chosen) != 1:
            raise UsageError(
                "pass exactly one of: a CIDR (or `me`), --list, --revoke LABEL|CIDR, --prune"
            )
        settings = _settings(ctx, name=name)
        deps = _deps(ctx, json_output)
        if list_rules:
            result = use.list_rules(settings, deps)
        elif revoke is not None:
            result = use.revoke(settings, deps, revoke, force=force, dry_run=dry_run)
        elif prune:
            result = use.prune(settings, deps, dry_run=dry_run)
        else:
            assert target is not None
            result = use.allow(
                settings, deps, target, duration=for_, label=label, force=force, dry_run=dry_run
            )
        if json_output:
            _emit_json(
                {
                    "plan": _plan_json(result.plan),
                    "dry_run": dry_run,
                    "security_group": result.group_id,
                    "rules": result.rules,
                }
            )
            return
        if not list_rules:
            _render_plan(result.plan, dry_run)
        _render_rules(result.rules, result.group_id)

    _run(run)


def _render_findings(findings: list[dict[str, Any]]) -> None:
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


@app.command(
    epilog="Examples: bastion audit --app-sg sg-app --db-sg sg-rds --elb-sg sg-elb;  "
    "bastion audit --json  (exits 9 on any failure, for CI);  bastion audit --fix --dry-run"
)
def audit(
    ctx: typer.Context,
    app_sg: Annotated[
        str | None,
        typer.Option("--app-sg", help="App group [default: groups admitting the gateway]."),
    ] = None,
    db_sg: Annotated[
        str | None, typer.Option("--db-sg", help="Database group: 3306/5432 only from the app.")
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
        from bastion.allow import parse_duration
        from bastion.audit import AuditOptions
        from bastion.audit import audit as run_audit
        from bastion.errors import AuditFailed, UsageError

        age = parse_duration(max_key_age)
        if age is None:
            raise UsageError("--max-key-age needs a duration such as 90d")
        settings = _settings(ctx, port=port)
        options = AuditOptions(app_sg, db_sg, elb_sg, age, settings.port)
        result = run_audit(settings, _deps(ctx, json_output), options, fix=fix, dry_run=dry_run)
        findings = [f.to_dict() for f in result.findings]
        if json_output:
            _emit_json(
                {
                    "findings": findings,
                    "failures": len(result.failures),
                    "fix_plan": _plan_json(result.plan),
                    "fixed": [f.to_dict() for f in result.fixed],
                    "dry_run": dry_run,
                }
            )
        else:
            if fix or dry_run:
                _render_plan(result.plan, dry_run or not fix)
            _render_findings(findings)
        if result.failures:
            raise AuditFailed(
                f"{len(result.failures)} check(s) failed "
                f"({', '.join(sorted({f.check for f in result.failures}))}); "
                "see the fix column, or `bastion audit --fix --dry-run` for what bastion can repair"
            )

    _run(run)


def main() -> None:
    """Entry point of the `bastion` script."""
    app()
