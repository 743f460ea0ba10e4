"""The command line: the ``batchplan`` group, and the one boundary where a
library failure (any ``BatchplanError``) becomes ``batchplan: error: ...`` on
stderr and an exit code.

Exit codes (also in the README):
  0  every line is valid (validate: the file is valid; wait: completed)
  1  some lines are invalid, and the plan is still printed (validate: invalid)
  2  usage error, unreadable or compressed input, or no requests at all
"""

from __future__ import annotations

import sys

import click

from batchplan._version import __version__
from batchplan.cli import batches, compare, files, reconcile
from batchplan.cli import run as run_commands
from batchplan.cli._options import EXIT_USAGE, Fail, os_error_message
from batchplan.errors import BatchplanError

# How the CLI words a library error's hint (the setting that would change the outcome).
HINTS = {
    "force": "{message}; pass --force to overwrite it",
    "cluster": "--cluster {message}",
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
        except OSError as exc:
            raise Fail(os_error_message(exc), EXIT_USAGE) from None


@click.group(cls=Batchplan, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchplan")
def cli() -> None:
    """Plan, price and run DashScope (Qwen) Batch API jobs.

    Start with `batchplan compare FILE.jsonl`: exact prompt tokens, the
    real-time cost and the batch cost of every request, before you pay.
    """



for command in (compare.compare, compare.prices, files.validate, files.split, batches.submit, batches.status,
                batches.list_batches, batches.wait, batches.cancel, batches.download, reconcile.reconcile):
    cli.add_command(command)
for command in (run_commands.run, run_commands.job):  # batchplan run; batchplan job status|cancel
    cli.add_command(command)


from batchplan.cli import pilot  # noqa: E402 - batchplan pilot (issue 15)

cli.add_command(pilot.pilot)


def main() -> None:
    # Not click's standalone mode, which turns Ctrl-C into "Aborted!" and exit 1.
    try:
        cli.main(prog_name="batchplan", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("batchplan: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other error, with where to look.
        command = exc.ctx.command_path if exc.ctx else "batchplan"
        click.echo(f"batchplan: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)



