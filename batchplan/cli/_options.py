"""What every command shares: exit codes, the one-line failure, option types
and options, and the small edges (paths, progress bars, overwrite checks).

Nothing here holds a business rule; each helper turns a user's text into a
library value or a library failure into one line.
"""

from __future__ import annotations

import glob
import os
import sys
from decimal import Decimal, InvalidOperation

import click

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
    from batchplan.planning.images import parse_image_size

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
    """The shipped catalog, with ``prices`` merged over it (a CatalogError
    reaches the user through the group's one boundary)."""
    from batchplan.catalog.catalog import load_catalog

    return load_catalog(prices)


def from_config(name: str, ctx: click.Context | None = None) -> bool:
    """Whether option ``name`` of the running command took its value from
    the settings (not from the command line)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return False
    return ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT_MAP


def output_assumption(output_tokens, output_ratio, calibrate, catalog=None, calibrate_input=None, planned=()):
    """The output assumption the options choose. ``--calibrate`` joins its
    output to ``calibrate_input``, else to the ``planned`` files when they are
    its input, else maps its models through ``catalog`` (calibrate.py)."""
    from batchplan.planning.output import CALIBRATED, PER_REQUEST, RATIO, OutputAssumption

    if output_tokens is not None and (output_ratio is not None or calibrate is not None):
        if from_config("output_tokens"):
            output_tokens = None  # a configured default gives way to the assumption chosen on the command line
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
        from batchplan.catalog.catalog import default_catalog
        from batchplan.jobs.calibrate import calibrate as run_calibration

        found = run_calibration(calibrate, catalog or default_catalog(), calibrate_input, planned)
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
    from batchplan.jobs.rules import window_hours
    from batchplan.planning.realtime import RealtimeOptions

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


