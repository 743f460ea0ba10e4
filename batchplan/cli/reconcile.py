"""`batchplan reconcile`: planned vs billed, after a batch ran (the rules are in jobs.reconcile)."""

from __future__ import annotations

import os
import sys

import click

from batchplan.cli._options import (
    AMOUNT,
    EXIT_USAGE,
    PRICES_OPTION,
    Fail,
    file_size,
    load_catalog_or_fail,
    output_assumption,
    progress_bar,
    refuse_overwrite,
    region_option,
)

MAX_FAILED_SHOWN = 20  # as reading.SHOW_LINES: messages about lines, then a count


@click.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUTPUT", type=click.Path(dir_okay=False))
@click.option("--errors", "errors_file", type=click.Path(dir_okay=False), default=None, metavar="ERRORS",
              help="The batch's error file (failed lines), if it has one.")
@region_option("Region the batch ran in: intl (Singapore, USD) or cn (Beijing, CNY).")
@PRICES_OPTION
@click.option("--output-tokens", type=click.IntRange(min=0), default=None,
              help="The output tokens per request the estimate assumed (default: the worst case).")
@click.option("--output-ratio", type=AMOUNT, default=None, metavar="R",
              help="The estimate assumed output = R times each request's input tokens.")
@click.option("--json", "as_json", is_flag=True,
              help='Print a JSON document {"schema": "batchplan.reconcile/1", ...} (see batchplan.reconcile.document).')
@click.option("--retry", "retry_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Write the original input lines of failed and missing requests to PATH.")
@click.option("--force", is_flag=True, help="Overwrite the --retry PATH if it exists.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes for planning a large input [default: available cores].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def reconcile(input_file, output_file, errors_file, region, prices_file, output_tokens, output_ratio, as_json,
              retry_path, force, workers, quiet):
    """Compare a batch's INPUT file with its OUTPUT file: estimated vs actual.

    Matches results to requests by custom_id, prices each successful request
    from its usage at the batch price (tier from its actual prompt tokens),
    and compares with the estimate: prompt tokens (exact-match rate), output
    tokens and batch cost, per model. Failed requests are not billed; they
    are listed, and --retry PATH writes their original lines (and those of
    requests with no result at all) to a new batch file. Messages about
    lines read PATH:LINE: reason: failed and missing requests at their
    INPUT line, a bad line of OUTPUT or ERRORS at its own.

    \b
    Exit codes:
      0  every request succeeded
      1  some requests failed or have no result (missing)
      2  usage error, or an unreadable or malformed file
    """
    from batchplan.jobs.reconcile import document, write_retry_file
    from batchplan.jobs.reconcile import reconcile as run
    from batchplan.planning.reading import InputError

    catalog = load_catalog_or_fail(prices_file)
    assumption = output_assumption(output_tokens, output_ratio, None)
    if retry_path:
        if os.path.exists(retry_path):
            # Not even --force may replace the files being read.
            for given in (input_file, output_file, errors_file):
                if given and os.path.exists(given) and os.path.samefile(given, retry_path):
                    raise Fail(f"{retry_path}: is one of the files being reconciled; choose another --retry path")
        refuse_overwrite(retry_path, force)
    with progress_bar(file_size(input_file), quiet, "planning") as bar:
        rec = run(input_file, output_file, errors_file, catalog=catalog, region=region, output=assumption,
                  workers=workers, on_progress=bar.update)
    if rec.total().requests == 0:
        raise Fail(f"{input_file}: no requests with a custom_id", EXIT_USAGE)

    retry = None
    notes: list[str] = []
    if rec.retry_lines:
        if retry_path:
            try:
                written = write_retry_file(input_file, rec.retry_lines, retry_path)
            except (InputError, OSError) as exc:
                raise Fail(f"{retry_path}: cannot write the retry file ({getattr(exc, 'strerror', None) or exc})") from None
            retry = {"path": retry_path, "requests": written}
            notes.append(f"Retry file: {written:,} request(s) written to {retry_path} (original lines, input order).")
        else:
            notes.append(f"{len(rec.retry_lines):,} request(s) to retry: pass --retry PATH to write their original lines to a new batch file.")
    elif retry_path:
        notes.append(f"Nothing to retry; {retry_path} was not written.")

    if as_json:
        import json

        click.echo(json.dumps(document(rec, retry), ensure_ascii=False, indent=2))
    else:
        click.echo(render(rec))
        for note in notes:
            click.echo(note)
    if as_json and not retry and rec.retry_lines and not quiet:
        click.echo(notes[0], err=True)
    sys.exit(rec.exit_code)


def _percent(value) -> str:
    return "" if value is None else f"{value:+.1%}"


def _share(value) -> str:
    return "" if value is None else f"{value:.1%}"


def render(rec) -> str:
    """The human report: counts and tokens per model, costs per model, failures."""
    from tabulate import tabulate

    from batchplan.catalog.money import money
    from batchplan.jobs.results import ERRORS
    from batchplan.planning.reading import at_line
    from batchplan.reports.text import tokens

    cur = rec.currency
    rows = [(model, f) for model, f in rec.models.items()] + [("TOTAL", rec.total())]
    head1 = ["model", "requests", "succeeded", "failed", "missing", "prompt tok. est.", "prompt tok. actual",
             "exact match", "output tok. est.", "output tok. actual"]
    body1 = [[
        model, f"{f.requests:,}", f"{f.succeeded:,}", f"{f.failed:,}", f"{f.missing:,}",
        tokens(f.estimated_prompt_tokens), tokens(f.actual_prompt_tokens), _share(f.exact_match_rate),
        tokens(f.estimated_output_tokens), tokens(f.actual_output_tokens),
    ] for model, f in rows]
    head2 = ["model", f"batch cost est. ({cur})", f"batch cost actual ({cur})", "cost error", "prompt tok. error", "output tok. error"]
    body2 = [[model, money(f.estimated_batch_cost), money(f.actual_batch_cost), _percent(f.cost_error),
              _percent(f.prompt_error), _percent(f.output_error)] for model, f in rows]
    total = rec.total()
    out = [
        tabulate(body1, head1, tablefmt="simple", colalign=("left",) + ("right",) * 9, disable_numparse=True),
        "",
        tabulate(body2, head2, tablefmt="simple", colalign=("left",) + ("right",) * 5, disable_numparse=True),
        "",
        f"Region: {rec.region} ({cur}). Actual cost: each successful request's usage at {rec.batch_price_factor:.0%} "
        "of the real-time price, tier from its actual prompt tokens; failed requests are not billed.",
        f"Errors are (actual - estimated) / estimated, over the {total.compared:,} succeeded request(s) with a usage; "
        f"the estimate for every request was {money(total.planned_batch_cost)} {cur}.",
    ]
    if total.compared:
        out.append(
            f"Prompt tokens: {total.exact_matches:,} of {total.compared:,} estimated exactly ({_share(total.exact_match_rate)}); "
            f"mean absolute error {total.mean_absolute_error:.2f} tokens."
        )
    output_note = f"Output tokens (estimate): {rec.output.describe()}"
    if rec.output.is_upper_bound:
        output_note += " (an upper bound: the actual is expected below it)"
    if total.output_over_estimate:
        output_note += f"; {total.output_over_estimate:,} request(s) produced more than estimated"
    out.append(output_note + ".")
    for m in rec.mismatches[:10]:
        out.append(at_line(rec.input_path, m.line, f"prompt tokens differ (custom_id {m.custom_id}): "
                                                   f"estimated {m.estimated:,}, actual {m.actual:,} ({m.difference:+,})"))
    if total.unknown_usage:
        out.append(f"warning: {total.unknown_usage:,} succeeded request(s) have no usable usage (or no estimate); their cost is unknown.")
    if total.unexpected:
        shown = ", ".join(rec.unexpected[:10])
        out.append(f"warning: {total.unexpected:,} result(s) have a custom_id that is not in the input: {shown}" + (" ..." if total.unexpected > 10 else ""))
    if rec.unidentified:
        out.append(f"warning: {rec.unidentified:,} result line(s) have no custom_id.")
    if rec.duplicate_results:
        out.append(f"warning: {rec.duplicate_results:,} custom_id(s) appear more than once in the results; the first result (a success over a failure) counts.")
    if rec.duplicate_inputs:
        out.append(f"warning: {rec.duplicate_inputs:,} input line(s) reuse a custom_id; results matched the first line.")
    if rec.invalid_lines:
        out.append(f"warning: {rec.invalid_lines:,} invalid input line(s) (see batchplan validate).")
        out.extend(rec.invalid[:MAX_FAILED_SHOWN])
        if rec.invalid_lines > MAX_FAILED_SHOWN:
            out.append(f"... and {rec.invalid_lines - MAX_FAILED_SHOWN:,} more invalid input line(s)")
    # Messages about lines read PATH:LINE: reason: a failure at its input
    # line, or, for a custom_id the input does not have, at its result line.
    for f in rec.failures[:MAX_FAILED_SHOWN]:
        reason = f"{f.code or 'error'}: {f.message}" if f.message else (f.code or "error")
        cid = f"custom_id {f.custom_id}" if f.custom_id is not None else "no custom_id"
        if f.line is not None:
            out.append(at_line(rec.input_path, f.line, f"failed ({cid}): {reason}"))
        else:
            result_file = rec.errors_path if f.source == ERRORS else rec.output_path
            out.append(at_line(result_file, f.result_line, f"failed ({cid}, not in the input): {reason}"))
    if len(rec.failures) > MAX_FAILED_SHOWN:
        out.append(f"... and {len(rec.failures) - MAX_FAILED_SHOWN:,} more failed (see --json)")
    for cid, line in rec.missing[:MAX_FAILED_SHOWN]:
        out.append(at_line(rec.input_path, line, f"missing (custom_id {cid}): in neither the output nor the error file"))
    if len(rec.missing) > MAX_FAILED_SHOWN:
        out.append(f"... and {len(rec.missing) - MAX_FAILED_SHOWN:,} more missing (see --json)")
    return "\n".join(out)
