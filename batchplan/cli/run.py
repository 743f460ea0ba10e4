"""`batchplan run` (a whole job, resumable) and `batchplan job status|cancel DIR`.

Parse, call ``jobs.run``, render with ``reports.job``. The key comes only from
$DASHSCOPE_API_KEY and is never printed or stored.
"""

from __future__ import annotations

import json
import os
import re
import sys

import click

from batchplan.cli._options import AMOUNT, EXIT_USAGE, PRICES_OPTION, Fail, Seconds, expand_paths, load_catalog_or_fail

EXIT_UNFINISHED = 3
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


class Size(click.ParamType):
    """Bytes: a number, or with K, M or G (powers of 1024)."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = _SIZE.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a size (write bytes, or e.g. 100M, 2G)", param, ctx)
        unit = (m.group(2) or "b")[0].lower()
        return int(m.group(1)) * {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit]


class Duration(click.ParamType):
    """Seconds, or a number with s, m, h or d."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        m = _DURATION.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a duration (e.g. 90s, 30m, 12h, 2d)", param, ctx)
        return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]


def _client(region, base_url, timeout, retries, fallback_base_url=None):
    from batchplan.jobs.client import BatchClient, is_plain_http_remote, resolve_connection

    conn = resolve_connection(region, base_url, fallback_base_url=fallback_base_url)
    if is_plain_http_remote(conn.base_url):
        click.echo("batchplan: warning: the base URL is plain http; the API key would travel unencrypted", err=True)
    return BatchClient(conn.api_key, conn.base_url, timeout=timeout, max_retries=retries)


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="The job's folder: parts, results, report and its records. The same DIR resumes the job.")
@click.option("--max-cost", type=AMOUNT, default=None, metavar="AMOUNT",
              help="Budget in the region's currency: refuse a job whose worst case is over it, and never create "
                   "a part whose worst case would take the committed cost over it.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--parallel", type=click.IntRange(1, 1000), default=10, show_default=True, metavar="N",
              help="Parts unfinished at once (the account allows 1,000 unfinished batches in all).")
@click.option("--max-lines", type=click.IntRange(1, 50_000), default=None, metavar="N",
              help="Requests per part [default: 50,000, the Batch API limit].")
@click.option("--max-bytes", type=Size(), default=None, metavar="SIZE",
              help="Bytes per part, e.g. 100M [default: 500M, the Batch API limit].")
@click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True, metavar="K",
              help="New parts for requests that failed retryably (throttled, internal error, timeout, "
                   "model unavailable) or that an expired or cancelled part left undone.")
@click.option("--window", default="24h", show_default=True, help="completion_window of each part: 24h to 336h, or 1d to 14d.")
@click.option("--time-limit", type=Duration(), default=None, metavar="DURATION",
              help="Stop following after this long (exit 3); the parts keep running and a rerun resumes.")
@click.option("--poll", "poll_interval", type=Seconds(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="First wait between polls of a part; it grows 1.5x while nothing changes. The service "
                   "advises a minute or more.")
@click.option("--region", type=click.Choice(["intl", "cn"]), default="intl", show_default=True,
              help="intl (Singapore) or cn (Beijing): the base URL and the prices.")
@click.option("--base-url", default=None, metavar="URL", help="API base URL; overrides $DASHSCOPE_BASE_URL and --region.")
@click.option("--name", default=None, help="Name the parts' batches start with (metadata ds_name).")
@click.option("--keep-remote", is_flag=True, help="Keep the job's files on the service (they never expire there).")
@PRICES_OPTION
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes for planning.")
@click.option("--request-timeout", type=Seconds(min=0, min_open=True), default=60.0, show_default=True,
              metavar="SECONDS", help="How long to wait for each call's answer.")
@click.option("-q", "--quiet", is_flag=True, help="No live display and no messages on stderr.")
def run(files, out_dir, max_cost, yes, parallel, max_lines, max_bytes, retries, window, time_limit, poll_interval,
        region, base_url, name, keep_remote, prices_file, workers, request_timeout, quiet):
    """Run a job of any size: plan, guard, split, submit, follow, merge, retry.

    FILE may be - (standard input, saved as DIR/input/stdin-HASH.jsonl).
    Every FILE is planned as `compare` plans it, at the worst case; a job
    whose worst-case batch cost is over --max-cost is refused before anything
    is sent. The job is cut into parts the Batch API takes (DIR/parts/), at
    most --parallel of them run at once, each reserving its worst case
    against --max-cost before it is created. Results are merged in input
    order into DIR/output.jsonl; requests that failed for good go to
    DIR/errors.jsonl; DIR/report.json compares estimated with actual cost.

    Every step is recorded in DIR before it is taken: run the same command
    again after a crash, Ctrl-C or --time-limit and it goes on where it
    stopped, without creating any part twice.

    \b
    Exit codes:
      0  every request succeeded
      1  some requests failed for good; they are in errors.jsonl
      2  usage error, refused by the guard, or unreadable input
      3  the job stopped unfinished (--time-limit, cancelled, out of retries,
         over the budget, Ctrl-C); running it again resumes it
    """
    from tqdm import tqdm

    from batchplan.jobs.rules import parse_window
    from batchplan.jobs.run import run_job
    from batchplan.reports.job import progress_line, report_lines

    try:
        parse_window(window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None
    if not yes and not sys.stdin.isatty():
        raise Fail("no terminal to ask for confirmation; pass --yes to run the job", EXIT_USAGE)
    paths = expand_paths(files)
    catalog = load_catalog_or_fail(prices_file)
    client = _client(region, base_url, request_timeout, 2)
    live = not quiet and sys.stderr.isatty()
    bar = tqdm(total=0, unit="req", desc="requests", file=sys.stderr, disable=not live, leave=False)

    def say(message: str) -> None:
        if not quiet:
            bar.write(message, file=sys.stderr)

    def show(snap) -> None:
        bar.total = snap.total
        bar.n = snap.done
        bar.set_postfix_str(progress_line(snap), refresh=True)

    def confirm(preview) -> bool:
        if preview.verdict.kind is not None:
            say(preview.verdict.describe("--max-cost"))
        if yes:
            return True
        return click.confirm(f"Run {preview.requests:,} requests, worst-case batch cost {preview.cost_text}?",
                             default=False, err=True)

    try:
        with client:
            report = run_job(paths, out_dir, client=client, max_cost=max_cost, confirm=confirm, parallel=parallel,
                             max_lines=max_lines, max_bytes=max_bytes, retries=retries, window=window,
                             time_limit=time_limit, poll_interval=poll_interval, name=name, keep_remote=keep_remote,
                             region=region, catalog=catalog, workers=workers, on_message=say, on_progress=show)
    except KeyboardInterrupt:
        bar.close()
        raise Fail(f"interrupted: the job is recorded in {out_dir} and its batches keep running; "
                   "run the same command again to resume it", EXIT_UNFINISHED) from None
    finally:
        bar.close()
    click.echo("\n".join(report_lines(report.document)))
    _write_html(report.document, os.path.join(out_dir, "report.html"), quiet)
    if report.stopped:
        click.echo(f"batchplan: stopped unfinished: {report.stopped}; run the same command again to resume", err=True)
    sys.exit(report.exit_code)


def _write_html(doc, path, quiet) -> None:
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return  # the html extra is not installed: report.json is enough
    from batchplan.reports.job import write_job_html

    try:
        write_job_html(doc, path)
    except OSError as exc:
        if not quiet:
            click.echo(f"batchplan: warning: {path}: {exc.strerror or exc}", err=True)


@click.group()
def job():
    """See or cancel a `batchplan run` job by its folder."""


@job.command("status")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def job_status(directory, as_json):
    """Show the job in DIR part by part, as last recorded (no network)."""
    from batchplan.jobs.run import job_status as status_of
    from batchplan.reports.job import status_lines

    doc = status_of(directory)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        click.echo("\n".join(status_lines(doc)))


@job.command("cancel")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--region", type=click.Choice(["intl", "cn"]), default=None, help="[default: the job's]")
@click.option("--base-url", default=None, metavar="URL", help="API base URL [default: the job's].")
def job_cancel(directory, region, base_url):
    """Cancel every unfinished part of the job in DIR; no part is created after.

    Requests already done are billed and kept. Running the job again resumes
    the rest.
    """
    from batchplan.jobs.run import cancel_job
    from batchplan.jobs.run import job_status as status_of

    doc = status_of(directory)
    with _client(region, base_url, 60.0, 2, fallback_base_url=doc.get("base_url")) as client:
        for batch_id, status in cancel_job(directory, client):
            click.echo(f"{batch_id}: {status}")
    click.echo(f"{directory}: cancelled; `batchplan run` with the same files and --out resumes it")
