"""`batchplan compare` and `batchplan prices`: plan and price batch files, show the catalog."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from batchplan.cli._options import (
    AMOUNT,
    IMAGE_SIZE_OPTION,
    PRICES_OPTION,
    Fail,
    expand_paths,
    file_size,
    load_catalog_or_fail,
    output_assumption,
    progress_bar,
    realtime_options,
    refuse_overwrite,
    region_option,
)
from batchplan.jobs.calibrate import PilotCalibration, is_pilot
from batchplan.planning import ImageAssumption, Planner
from batchplan.planning.estimate import budget_gate
from batchplan.planning.paths import plan_paths
from batchplan.planning.planner import unique_paths
from batchplan.planning.sampling import parse_sample
from batchplan.reports.documents import STDOUT, PerRequestWriter, document, per_request_format
from batchplan.reports.estimate import warning_lines as pilot_warning_lines
from batchplan.reports.fit import output_width
from batchplan.reports.html import require_html, write_html
from batchplan.reports.text import prices_table, table, warning_lines

EXIT_OVER_BUDGET = 4  # --max-cost: the gate's figure is over the amount


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@region_option("Price region: intl (Singapore, USD) or cn (Beijing, CNY).")
@PRICES_OPTION
@click.option("--output-tokens", type=click.IntRange(min=0), default=None,
              help="Expected output tokens per request, instead of the worst case.")
@click.option("--output-ratio", type=AMOUNT, default=None, metavar="R",
              help="Expected output as R times each request's input tokens.")
@click.option("--calibrate", type=click.Path(dir_okay=False), default=None, metavar="OUTPUT",
              help="Expected output per model from an earlier run's Batch output file (mean completion tokens), "
                   "keyed by the model each request named (see --calibrate-input). A pilot's file (batchplan pilot) "
                   "instead keeps the rows at the upper bound and adds the expected cost with a 95% interval beside it.")
@click.option("--calibrate-input", type=click.Path(dir_okay=False), default=None, metavar="INPUT",
              help="The input file of the --calibrate run, joined to it by custom_id. Default: the FILEs, when "
                   "every custom_id of OUTPUT is in them; else OUTPUT's models map through the catalog "
                   "(a dated snapshot to its base).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as a JSON document (docs/json.md).")
@click.option("--per-request", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write one row per input line to PATH (.jsonl or .csv); - writes JSON lines to standard output instead of the table.")
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
@click.option("--max-cost", type=AMOUNT, default=None, metavar="AMOUNT",
              help="Budget gate for pipelines: exit 4 when the --gate figure of the batch cost (of the real-time cost "
                   "with --realtime) is over AMOUNT, saying by how much.")
@click.option("--gate", type=click.Choice(["bound", "expected", "high"]), default="bound", show_default=True,
              help="The figure --max-cost checks: the upper bound (worst case), the expected cost, or the high end "
                   "of its 95% interval (expected and high need --calibrate PILOT.jsonl; expected also takes --output-tokens/--output-ratio).")
@click.option("--realtime", "gate_realtime", is_flag=True, help="--max-cost checks the real-time cost instead of the batch cost.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no warnings on stderr.")
def compare(files, region, prices_file, output_tokens, output_ratio, calibrate, calibrate_input, as_json, per_request, force,
            workers, sample, seed, cache_mode, free_quota, rpm, tpm, window, html_path, image_size, cluster, max_cost, gate,
            gate_realtime, quiet):
    """Tokens and real-time vs batch cost of batch FILE(s).

    Counts every request's prompt tokens as DashScope bills them, assumes
    output tokens (the worst case unless you say otherwise), and prices each
    request at its own tier, real-time and through the Batch API (50%).
    Several files or globs give one combined plan plus a row per file;
    - reads standard input (all of it: not with --sample or --cluster).
    The table fits the terminal (or $COLUMNS): short headers, then fewer
    columns; --json and --per-request have every field.
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
      4  --max-cost: the --gate figure is over the amount (it says by how much)
    """
    paths = unique_paths(expand_paths(files))
    catalog = load_catalog_or_fail(prices_file)
    pilot = None
    if calibrate is not None and is_pilot(calibrate):  # a pilot: the rows stay the bound, the estimate goes beside them
        if calibrate_input is not None or sample is not None or output_tokens is not None or output_ratio is not None:
            raise click.UsageError("--calibrate PILOT.jsonl plans every line at its worst case and estimates beside it: "
                                   "drop --calibrate-input, --sample, --output-tokens and --output-ratio")
        pilot = PilotCalibration(calibrate, catalog, region)
        calibrate = None
    if (gate != "bound" or gate_realtime) and max_cost is None:
        raise click.UsageError("--gate and --realtime go with --max-cost AMOUNT")
    assumption = output_assumption(output_tokens, output_ratio, calibrate, catalog, calibrate_input, paths)
    options = realtime_options(cache_mode, free_quota, rpm, tpm, window)
    if sample is not None:
        try:
            sample = parse_sample(sample)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sample") from None
    if html_path:
        try:
            require_html()
        except ImportError as exc:
            raise Fail(str(exc)) from None
        refuse_overwrite(html_path, force)
    planner = Planner(catalog, region, assumption, realtime_stats=bool(options.collects or html_path),
                      images=ImageAssumption(image_size))
    if per_request:
        try:
            per_request_format(per_request)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--per-request") from None
        if per_request == STDOUT and as_json:
            raise click.UsageError("--per-request - and --json would both write to standard output; give --per-request a file")
        if per_request != STDOUT:
            refuse_overwrite(per_request, force)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(PerRequestWriter(per_request)) if per_request else None
        bar = stack.enter_context(progress_bar(file_size(*paths), quiet, "planning"))
        on_request = writer.write if writer else None
        if pilot is not None:
            on_request = pilot.add if writer is None else (lambda r: (writer.write(r), pilot.add(r)))
        result = plan_paths(paths, planner, sample=sample, seed=seed, cluster=cluster, workers=workers,
                            realtime=options, catalog=catalog, on_request=on_request,
                            on_progress=bar.update)
    if result.plan.lines == 0:
        # Empty or only blank lines: nothing to tabulate, only the error.
        click.echo("batchplan: error: no valid requests in " + ", ".join(paths) + " (empty, or only blank lines)", err=True)
        sys.exit(result.exit_code)
    if pilot is not None:
        result.output_estimate = pilot.estimate(result)
    if html_path:
        write_html(result, html_path, catalog)
    if as_json:
        click.echo(json.dumps(document(result), ensure_ascii=False, indent=2))
    elif per_request != STDOUT:  # with --per-request -, standard output carries the rows alone
        click.echo(table(result, output_width(sys.stdout)))
    if not quiet or result.exit_code == 2:
        for line in warning_lines(result):
            click.echo(line, err=True)
    if pilot is not None:
        for line in pilot_warning_lines(result):  # loud, in every format
            click.echo(line, err=True)
    if result.plan.requests == 0:
        click.echo("batchplan: error: no valid requests in " + ", ".join(paths), err=True)
    if max_cost is not None:
        try:
            verdict = budget_gate(result, getattr(result, "output_estimate", None), max_cost, gate, gate_realtime)
        except ValueError as exc:
            raise click.UsageError(f"--gate {gate}: {exc}") from None
        click.echo(("batchplan: over budget: " if verdict.over else "within budget: ") + verdict.message, err=True)
        if verdict.over:
            sys.exit(EXIT_OVER_BUDGET)
    sys.exit(result.exit_code)


@click.command()
@region_option()
@PRICES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the merged catalog as JSON.")
def prices(region, prices_file, as_json):
    """Print the price catalog: prices per tier, limits, sources and dates."""
    catalog = load_catalog_or_fail(prices_file)
    if as_json:
        click.echo(json.dumps(catalog.raw, ensure_ascii=False, indent=2))
    else:
        click.echo(prices_table(catalog, region, output_width(sys.stdout)))


