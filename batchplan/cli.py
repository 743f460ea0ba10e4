"""The command line: parse arguments, call the library, render the result.

Exit codes (also in the README):
  0  every line is valid (validate: the file is valid; wait: completed)
  1  some lines are invalid, and the plan is still printed (validate: invalid)
  2  usage error, unreadable or compressed input, or no requests at all
"""

from __future__ import annotations

import glob
import os
import sys
from decimal import Decimal, InvalidOperation

import click

from . import __version__

EXIT_OK = 0
EXIT_INVALID_LINES = 1
EXIT_USAGE = 2


class Fail(click.ClickException):
    """A one-line error on stderr and a documented exit code; never a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"batchplan: error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchplan")
def cli() -> None:
    """Plan, price and run DashScope (Qwen) Batch API jobs.

    Start with `batchplan compare FILE.jsonl`: exact prompt tokens, the
    real-time cost and the batch cost of every request, before you pay.
    """


class Amount(click.ParamType):
    """A decimal number of zero or more, read exactly (never through float)."""

    name = "amount"

    def convert(self, value, param, ctx):
        if isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a number", param, ctx)
        if not amount.is_finite() or amount < 0:
            self.fail("must be a number of zero or more", param, ctx)
        if amount > self.LARGEST:
            self.fail(f"must be at most {self.LARGEST:,}", param, ctx)
        return amount

    LARGEST = Decimal(10) ** 12


AMOUNT = Amount()


class Seconds(click.FloatRange):
    """A finite number of seconds (click's FloatRange lets nan and inf through)."""

    name = "seconds"

    def convert(self, value, param, ctx):
        seconds = super().convert(value, param, ctx)
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds


def region_option(help_text: str = "Region: intl (Singapore, USD) or cn (Beijing, CNY)."):
    """--region, intl by default."""
    return click.option("--region", type=click.Choice(["intl", "cn"]), default="intl", show_default=True, help=help_text)


PRICES_OPTION = click.option(
    "--prices", "prices_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
    help="Your own catalog JSON, merged over the shipped one (same schema, see docs/catalog.md).",
)


def _image_size(ctx, param, value):
    from .images import parse_image_size

    if value is None:
        return None
    try:
        return parse_image_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


IMAGE_SIZE_OPTION = click.option(
    "--image-size", default=None, metavar="WxH", callback=_image_size,
    help="Size to assume for remote image URLs, which are not fetched (e.g. 1024x768) "
         "[default: each counts as the model's per-image maximum]. data: images are measured.",
)


def expand_paths(patterns: tuple[str, ...]) -> list[str]:
    """Paths as given, with globs expanded (for shells that do not)."""
    paths: list[str] = []
    for pattern in patterns:
        if not os.path.exists(pattern) and glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise Fail(f"{pattern}: no file matches")
            paths.extend(matches)
        else:
            paths.append(pattern)
    return paths


def load_catalog_or_fail(prices: str | None):
    from .catalog import CatalogError, load_catalog

    try:
        return load_catalog(prices)
    except CatalogError as exc:
        raise Fail(str(exc)) from None


def output_assumption(output_tokens, output_ratio, calibrate, catalog=None, calibrate_input=None, planned=()):
    """The output assumption the options choose. ``--calibrate`` joins its
    output to ``calibrate_input``, else to the ``planned`` files when they are
    its input, else maps its models through ``catalog`` (calibrate.py)."""
    from .output import CALIBRATED, PER_REQUEST, RATIO, OutputAssumption

    chosen = [o for o in (output_tokens, output_ratio, calibrate) if o is not None]
    if len(chosen) > 1:
        raise click.UsageError("choose one of --output-tokens, --output-ratio and --calibrate")
    if output_tokens is not None:
        return OutputAssumption(PER_REQUEST, tokens=output_tokens)
    if output_ratio is not None:
        return OutputAssumption(RATIO, ratio=output_ratio)
    if calibrate_input is not None and calibrate is None:
        raise click.UsageError("--calibrate-input goes with --calibrate OUTPUT")
    if calibrate is not None:
        from .calibrate import CalibrationError
        from .calibrate import calibrate as run_calibration
        from .catalog import default_catalog

        try:
            found = run_calibration(calibrate, catalog or default_catalog(), calibrate_input, planned)
        except CalibrationError as exc:
            raise Fail(str(exc)) from None
        return OutputAssumption(CALIBRATED, per_model=found.per_model, source=found.describe(),
                                calibration=found.document())
    return OutputAssumption()


def os_error_message(exc: OSError, name: str = "") -> str:
    """An OSError as one line naming the file."""
    return f"{exc.filename or name}: {exc.strerror or exc}"


def file_size(*paths: str) -> int:
    """Bytes in the regular files among ``paths`` (0 for anything else), for
    a progress bar's total."""
    total = 0
    for path in paths:
        try:
            total += os.path.getsize(path) if os.path.isfile(path) else 0
        except OSError:
            pass
    return total


def refuse_overwrite(path: str, force: bool) -> None:
    if os.path.exists(path) and not force:
        raise Fail(f"{path}: already exists; pass --force to overwrite it")


def progress_bar(total: int, quiet: bool, desc: str):
    """A tqdm bar on stderr, only when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=desc,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
        leave=False,
    )


def realtime_options(cache_mode: str, free_quota: str | None, rpm: int | None, tpm: int | None, window: str):
    from .batch_api import window_hours
    from .realtime import RealtimeOptions

    tokens = None
    if free_quota is not None and free_quota != "catalog":
        try:
            tokens = int(free_quota.replace(",", "").replace("_", ""))
        except ValueError:
            raise click.BadParameter(f"{free_quota!r} is not a number of tokens (give a number, or put --free-quota after the files)",
                                     param_hint="--free-quota") from None
        if tokens < 0:
            raise click.BadParameter("must be zero or more tokens", param_hint="--free-quota")
    try:
        hours = window_hours(window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None
    return RealtimeOptions(cache=cache_mode, free_quota=free_quota is not None, free_quota_tokens=tokens, rpm=rpm, tpm=tpm, window_hours=hours)


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@region_option("Price region: intl (Singapore, USD) or cn (Beijing, CNY).")
@PRICES_OPTION
@click.option("--output-tokens", type=click.IntRange(min=0), default=None,
              help="Expected output tokens per request, instead of the worst case.")
@click.option("--output-ratio", type=AMOUNT, default=None, metavar="R",
              help="Expected output as R times each request's input tokens.")
@click.option("--calibrate", type=click.Path(dir_okay=False), default=None, metavar="OUTPUT",
              help="Expected output per model from an earlier run's Batch output file (mean completion tokens), "
                   "keyed by the model each request named (see --calibrate-input).")
@click.option("--calibrate-input", type=click.Path(dir_okay=False), default=None, metavar="INPUT",
              help="The input file of the --calibrate run, joined to it by custom_id. Default: the FILEs, when "
                   "every custom_id of OUTPUT is in them; else OUTPUT's models map through the catalog "
                   "(a dated snapshot to its base).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as a JSON document (docs/json.md).")
@click.option("--per-request", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write one row per input line to PATH (.jsonl or .csv).")
@click.option("--force", is_flag=True, help="Overwrite --per-request or --html PATH if it exists.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes for large files [default: available cores].")
@click.option("--sample", default=None, metavar="FRACTION|N",
              help="Estimate from lines read at random byte offsets, with a 95% confidence interval: a fraction of "
                   "the bytes (0.01 reads about 1% of each file) or a number of lines. Line numbers become byte offsets.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for --sample.")
@click.option("--cache", "cache_mode", type=click.Choice(["none", "expected", "best"]), default="none", show_default=True,
              help="Context cache on the real-time side: none (list prices); best (every repeat of a shared prefix hits); "
                   "expected (as best, implicit hits in whole 256-token blocks). Batch never gets a cache.")
@click.option("--free-quota", is_flag=False, flag_value="catalog", default=None, metavar="[TOKENS]",
              help="Take the free quota off the real-time side, per model: the region's catalog figure, or TOKENS per model. Never batch.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Your account's requests per minute, for every model (overrides the catalog).")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Your account's tokens per minute, for every model (overrides the catalog).")
@click.option("--window", default="24h", show_default=True, help="Batch completion window to compare the real-time duration with: 24h to 336h, or 1d to 14d.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write a self-contained HTML report (tables, charts) to PATH; needs the html extra.")
@IMAGE_SIZE_OPTION
@click.option("--cluster", default=None, metavar="ADDRESS", envvar="BATCHPLAN_CLUSTER", show_envvar=True,
              help="Count on a Dask cluster: 'local' starts one on this machine (--workers processes), or give a "
                   "scheduler address like tcp://host:8786. Workers read the files from the same path as this "
                   "machine (a shared file system) and need batchplan installed. Needs pip install 'batchplan[cluster]'.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no warnings on stderr.")
def compare(files, region, prices_file, output_tokens, output_ratio, calibrate, calibrate_input, as_json, per_request, force,
            workers, sample, seed, cache_mode, free_quota, rpm, tpm, window, html_path, image_size, cluster, quiet):
    """Tokens and real-time vs batch cost of batch FILE(s).

    Counts every request's prompt tokens as DashScope bills them, assumes
    output tokens (the worst case unless you say otherwise), and prices each
    request at its own tier, real-time and through the Batch API (50%).
    Several files or globs give one combined plan plus a row per file.
    Then the real-time side as DashScope would bill it (--cache, --free-quota)
    and as long as it would take at the account's limits (--rpm, --tpm),
    against batch, with a verdict per model and for the whole plan.

    \b
    Each invalid line is listed on stderr as PATH:LINE: reason (the first
    20, then a count; --json and --per-request have them all).

    \b
    Exit codes:
      0  every line is valid
      1  some lines are invalid (they are listed; the plan is still printed)
      2  usage error, unreadable or compressed input, or no requests at all
    """
    from .images import ImageAssumption
    from .plan import Planner, plan_files, unique_paths
    from .reading import InputError
    from .report import PerRequestWriter, document, per_request_format, table, warning_lines

    paths = unique_paths(expand_paths(files))
    catalog = load_catalog_or_fail(prices_file)
    assumption = output_assumption(output_tokens, output_ratio, calibrate, catalog, calibrate_input, paths)
    options = realtime_options(cache_mode, free_quota, rpm, tpm, window)
    if html_path:
        from .html_report import require_html

        try:
            require_html()
        except ImportError as exc:
            raise Fail(str(exc)) from None
        refuse_overwrite(html_path, force)
    planner = Planner(catalog, region, assumption, realtime_stats=bool(options.collects or html_path),
                      images=ImageAssumption(image_size))
    writer = None
    if per_request:
        try:
            per_request_format(per_request)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--per-request") from None
        refuse_overwrite(per_request, force)
    sizes = file_size(*paths)
    try:
        if per_request:
            writer = PerRequestWriter(per_request)
        with progress_bar(sizes, quiet, "planning") as bar:
            if sample is not None:
                from .sampling import parse_sample, plan_sample

                try:
                    size = parse_sample(sample)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--sample") from None
                sampling = dict(planner=planner, workers=workers, on_request=writer.write if writer else None,
                                on_progress=bar.update)
                if cluster:
                    from .cluster import ClusterError, open_client

                    try:
                        with open_client(cluster, workers) as client:
                            result = plan_sample(paths, size, seed, client=client, **sampling)
                    except ClusterError as exc:
                        raise Fail(str(exc)) from None
                else:
                    result = plan_sample(paths, size, seed, **sampling)
                result.decide(options, catalog)
            elif cluster:
                from .cluster import ClusterError, plan_files_on_cluster

                try:
                    result = plan_files_on_cluster(paths, address=cluster, planner=planner, workers=workers,
                                                   on_request=writer.write if writer else None, on_progress=bar.update)
                except ClusterError as exc:
                    raise Fail(str(exc)) from None
                result.decide(options, catalog)
            else:
                result = plan_files(paths, planner=planner, workers=workers, realtime=options,
                                    on_request=writer.write if writer else None, on_progress=bar.update)
    except InputError as exc:
        if writer:
            writer.abort()
        raise Fail(str(exc)) from None
    except OSError as exc:
        if writer:
            writer.abort()
        raise Fail(os_error_message(exc)) from None
    except BaseException:
        if writer:
            writer.abort()
        raise
    if writer:
        writer.commit()
    if html_path:
        from .html_report import write_html

        try:
            write_html(result, html_path, catalog)
        except OSError as exc:
            raise Fail(os_error_message(exc, html_path)) from None
    if as_json:
        import json

        click.echo(json.dumps(document(result), ensure_ascii=False, indent=2))
    else:
        click.echo(table(result))
    if not quiet or result.exit_code == 2:
        for line in warning_lines(result):
            click.echo(line, err=True)
    if result.plan.requests == 0:
        click.echo("batchplan: error: no valid requests in " + ", ".join(paths), err=True)
    sys.exit(result.exit_code)


@cli.command()
@region_option()
@PRICES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the merged catalog as JSON.")
def prices(region, prices_file, as_json):
    """Print the price catalog: prices per tier, limits, sources and dates."""
    from .report import prices_table

    catalog = load_catalog_or_fail(prices_file)
    if as_json:
        import json

        click.echo(json.dumps(catalog.raw, ensure_ascii=False, indent=2))
    else:
        click.echo(prices_table(catalog, region))


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


# The Batch API commands live beside this module; importing them registers
# them on the group. They import their heavy dependencies (openai) lazily.
from . import cli_batch, cli_files, cli_reconcile  # noqa: E402,F401
