"""The command line: the ``batchplan`` group, and the one boundary where a
library failure (any ``BatchplanError``) becomes ``batchplan: error: ...`` on
stderr and an exit code.

Exit codes (also in the README):
  0  every line is valid (validate: the file is valid; wait: completed)
  1  some lines are invalid, and the plan is still printed (validate: invalid)
  2  usage error, unreadable or compressed input, or no requests at all
  141  standard output was closed early (`| head`); nothing is printed
"""

from __future__ import annotations

import os
import sys

import click

from batchplan._version import __version__
from batchplan.cli import batches, compare, config, files, ledger, pilot, reconcile
from batchplan.cli import run as run_commands
from batchplan.cli._options import EXIT_USAGE, Fail, os_error_message
from batchplan.errors import BatchplanError

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe

# How the CLI words a library error's hint (the setting that would change the outcome).
HINTS = {
    "force": "{message}; pass --force to overwrite it",
    "cluster": "--cluster {message}",
    "max_cost": "{message} (--max-cost)",
    "requests": "--requests: {message}",
    "parallel": "--parallel: {message}",
    "retries": "--retries: {message}",
}


def worded(exc: BatchplanError) -> str:
    """A library error as the CLI says it: with its hint worded as a flag."""
    template = HINTS.get(exc.hint or "")
    return template.format(message=str(exc)) if template else str(exc)


class Batchplan(click.Group):
    """The group, and the one boundary where a library failure becomes a
    one-line message and an exit code: any ``BatchplanError`` (its own code)
    and any ``OSError`` (2, naming the file). Commands catch an error only to
    change its wording or its code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BatchplanError as exc:
            raise Fail(worded(exc), exc.exit_code) from None
        except BrokenPipeError:
            closed_pipe()  # before click's own handler, which would exit 1
        except OSError as exc:
            raise Fail(os_error_message(exc), EXIT_USAGE) from None


@click.group(cls=Batchplan, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchplan")
@click.pass_context
def cli(ctx) -> None:
    """Plan, price and run DashScope (Qwen) Batch API jobs.

    Start with `batchplan compare FILE.jsonl`: exact prompt tokens, the
    real-time cost and the batch cost of every request, before you pay.

    \b
    Defaults for --region, --max-cost, --window and --output-tokens come
    from BATCHPLAN_* variables and batchplan.toml files (batchplan config).
    Shell completion: eval "$(_BATCHPLAN_COMPLETE=bash_source batchplan)"
    (zsh_source, fish_source for zsh and fish; see the README).
    """
    if not ctx.resilient_parsing:
        config.apply(ctx)



for command in (compare.compare, compare.prices, files.validate, files.split, batches.submit, batches.status,
                batches.list_batches, batches.wait, batches.cancel, batches.download, reconcile.reconcile,
                run_commands.run, run_commands.job, pilot.pilot, config.config_command, ledger.ledger):
    cli.add_command(command)


def closed_pipe() -> None:
    """The reader of standard output went away (`| head`): end as Unix tools
    do, with no message. Standard output goes to /dev/null first, so that the
    flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file behind sys.stdout (a test runner's)
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def main() -> None:
    # Not click's standalone mode, which turns Ctrl-C into "Aborted!" and exit 1.
    try:
        # NO_COLOR (no-color.org): no colour codes at all; without it click
        # still strips them whenever stdout is not a terminal.
        cli.main(prog_name="batchplan", standalone_mode=False, color=False if os.environ.get("NO_COLOR") else None)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("batchplan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        closed_pipe()
    except click.UsageError as exc:
        # One line, like every other error, with where to look.
        command = exc.ctx.command_path if exc.ctx else "batchplan"
        click.echo(f"batchplan: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)



