"""What every command shares: global options, settings, Deps, and the one error boundary.

`boundary` is the only place that turns a failure into an exit code (see `ExitStatus`); the
parser's own errors, raised before any command runs, get the same one line from the root
command, `OneLineUsageErrors`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from typer.core import TyperGroup

from bastion.domain.errors import BastionError, ExitStatus, local_file_error

if TYPE_CHECKING:
    from bastion.domain.settings import Settings
    from bastion.wiring import Deps

T = TypeVar("T")
# click's exceptions, wherever this typer takes click from (its own copy since 0.2x).
_click_errors: Any = sys.modules[typer.BadParameter.__module__]
_ABORTS = (typer.Abort, getattr(_click_errors, "Abort", typer.Abort))


class State:
    """Options shared by every command, kept on typer's context object."""

    def __init__(self) -> None:
        self.profile: str | None = None
        self.region: str | None = None
        self.verbosity = 0
        self.deps: Deps | None = None


def state_of(ctx: typer.Context) -> State:
    """Return the options shared by every command (and the injected Deps, in tests)."""
    obj = ctx.find_root().obj
    if isinstance(obj, State):
        return obj
    state = State()
    # Tests inject a Deps object; importing its module here would slow every start-up.
    if obj is not None:
        state.deps = obj
    ctx.find_root().obj = state
    return state


def settings_for(ctx: typer.Context, **flags: Any) -> Settings:
    """Load the settings: defaults < config file < environment < these flags."""
    from bastion.adapters.config import load_settings

    state = state_of(ctx)
    return load_settings({"profile": state.profile, "region": state.region, **flags})


def deps_for(ctx: typer.Context, json_output: bool) -> Deps:
    """Return the injected Deps (or the real ones), reporting for people or scripts."""
    from bastion.wiring import Deps

    state = state_of(ctx)
    deps = state.deps or Deps()
    deps.reporter = reporter_for(json_output)
    return deps


def reporter_for(json_output: bool) -> Any:
    """Return where progress goes: a live line on a terminal, none for --json."""
    from bastion.cli.progress import ConsoleReporter

    return ConsoleReporter(live=not json_output and sys.stderr.isatty())


class OneLineUsageErrors(TyperGroup):
    """The root command: a usage error from the parser is one `bastion: error:` line (exit 2)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command line; parser errors become one line with what to do."""
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except getattr(_click_errors, "NoArgsIsHelpError", ()) as exc:
            exc.show()  # plain `bastion`: the help itself
            code = exc.exit_code
        except _click_errors.UsageError as exc:
            typer.echo(f"bastion: error: {usage_message(exc)}", err=True)
            code = exc.exit_code
        except _click_errors.ClickException as exc:
            typer.echo(f"bastion: error: {exc.format_message()}", err=True)
            code = exc.exit_code
        except _ABORTS:
            typer.echo("bastion: aborted; nothing more was done", err=True)
            code = int(ExitStatus.ERROR)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def usage_message(exc: Any) -> str:
    """Return click's complaint as `WHAT; WHAT TO DO`, with its suggestion kept."""
    where = exc.ctx.command_path if exc.ctx else "bastion"
    if isinstance(exc, _click_errors.NoSuchOption):
        what = f"no such option {exc.option_name}"
        if exc.possibilities:
            options = " or ".join(sorted(exc.possibilities))
            return f"{what}; did you mean {options}? (see `{where} --help`)"
        return f"{what}; see `{where} --help`"
    text = " ".join(exc.format_message().split()).rstrip(".")
    return f"{text}; see `{where} --help`"


@contextmanager
def boundary() -> Iterator[None]:
    """Map every failure to one line on stderr and its exit code; the only error boundary."""
    try:
        yield
    except BastionError as exc:
        _report(exc)
    except OSError as exc:  # a local file: read-only or full disk, a path through a file
        _report(local_file_error(exc))
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
    finally:
        _release_aws_locks()


def _release_aws_locks() -> None:
    """Release the AWS locks the command took (a read-only command never loaded the module)."""
    lease = sys.modules.get("bastion.usecases.shared.lease")
    if lease is not None:
        lease.release_aws_locks()


def _report(exc: BastionError) -> None:
    typer.echo(f"bastion: error: {exc.message}", err=True)
    logging.getLogger(__name__).debug("details", exc_info=True)
    raise typer.Exit(int(exc.exit_status)) from None


def guarded(fn: Callable[[], T]) -> T:
    """Run `fn` inside the error boundary."""
    with boundary():
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover
