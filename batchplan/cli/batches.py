"""Commands that talk to the Batch API: submit, status, list, wait, cancel, download.

They parse arguments, call the library and render results. The budget guard
and what to do with content submitted before live in ``jobs.guard``; the
calls in ``jobs.client``; the idempotent create and crash recovery in
``jobs.submit``; the local record in ``jobs.ledger``; polling in
``jobs.poll``; the file rules in ``jobs.rules``; the text in
``reports.batches``.

Connection, for every command: ``--base-url`` beats ``$DASHSCOPE_BASE_URL``,
which beats ``--region``'s documented URL. Commands other than submit, given
a batch the ledger knows and no region, use the URL it was submitted to. The
key comes only from ``$DASHSCOPE_API_KEY`` and is never printed or stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from batchplan.cli._options import (
    AMOUNT,
    EXIT_INVALID_LINES,
    EXIT_OK,
    EXIT_USAGE,
    PRICES_OPTION,
    Fail,
    Seconds,
    file_size,
    load_catalog_or_fail,
    os_error_message,
    progress_bar,
    refuse_overwrite,
)

EXIT_BATCH_FAILED = 1  # wait: the batch failed, expired or was cancelled
EXIT_STILL_RUNNING = 3  # wait: --timeout passed before the batch ended


def _connection_options(region_help: str):
    """--region, --base-url, --request-timeout and --max-retries, in that order."""
    def decorate(f):
        f = click.option("--max-retries", type=click.IntRange(0, 10), default=2, show_default=True,
                         help="Retries of a call answered with 429/5xx or cut off. A batch create is never "
                              "retried blindly: a lost answer is looked up first.")(f)
        f = click.option("--request-timeout", type=Seconds(min=0, min_open=True), default=60.0,
                         show_default=True, metavar="SECONDS", help="How long to wait for each call's answer.")(f)
        f = click.option("--base-url", default=None, metavar="URL",
                         help="API base URL; overrides $DASHSCOPE_BASE_URL and --region.")(f)
        return click.option("--region", type=click.Choice(["intl", "cn"]), default=None,
                            help=f"intl (Singapore) or cn (Beijing): picks the documented base URL. {region_help}")(f)
    return decorate


def _resolve(region, base_url, **options):
    from batchplan.jobs.client import resolve_connection

    return resolve_connection(region, base_url, **options)


def _connect(region, base_url, timeout, retries, fallback_base_url=None):
    from batchplan.jobs.client import BatchClient

    conn = _resolve(region, base_url, fallback_base_url=fallback_base_url)
    _warn_plain_http(conn.base_url)
    return BatchClient(conn.api_key, conn.base_url, timeout=timeout, max_retries=retries)


def _warn_plain_http(base_url) -> None:
    from batchplan.jobs.client import is_plain_http_remote

    if is_plain_http_remote(base_url):
        click.echo("batchplan: warning: the base URL is plain http; the API key would travel unencrypted", err=True)


def _ledger():
    from batchplan.jobs.ledger import Ledger

    return Ledger()


def _echo_lines(lines, err=False) -> None:
    for line in lines:
        click.echo(line, err=err)


# -- submit ---------------------------------------------------------------------------

@click.command()
@click.argument("file", metavar="FILE")
@_connection_options("Also the price region. [default: intl]")
@click.option("--window", default="24h", show_default=True,
              help="completion_window: 24h to 336h, or 1d to 14d.")
@click.option("--name", default=None, help="Batch name (metadata ds_name, at most 100 characters).")
@click.option("--description", default=None, help="Batch description (metadata ds_description, at most 200 characters).")
@click.option("--max-cost", type=AMOUNT, default=None, metavar="AMOUNT",
              help="Refuse when the worst-case batch cost is over AMOUNT (in the region's currency), "
                   "or cannot be known.")
@PRICES_OPTION
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--dry-run", is_flag=True, help="Validate, plan and check everything, but upload nothing.")
@click.option("--test", "test_run", is_flag=True,
              help="Submit a copy for the free batch-test-model on /v1/chat/ds-test: a format check "
                   "(at most 100 lines and 1 MB).")
@click.option("--force", is_flag=True, help="Submit even though the same content was submitted before.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no warnings on stderr.")
def submit(file, region, base_url, request_timeout, max_retries, window, name, description, max_cost, prices_file,
           yes, dry_run, test_run, force, quiet):
    """Validate FILE, show its cost, then upload it and create a batch.

    FILE is checked against the Batch API's rules (as `batchplan validate`)
    and planned (as `batchplan compare`, at the worst case: every request
    writing its max output). Only then is it uploaded (files.create,
    purpose=batch) and the batch created on the file's url.
    FILE - reads standard input (once: it is checked as it is copied, and
    the copy uploaded); with a pipe on standard input, pass --yes.

    Every step is recorded in the ledger ($BATCHPLAN_HOME, else the user data
    directory) before it is taken. If a submit is interrupted (crash, lost
    answer), running the same command again finds the batch it made, or
    finishes the submission, without creating a second batch. Content already
    submitted is refused, naming the earlier batch, unless --force.

    \b
    Exit codes:
      0  submitted, recovered, or (--dry-run) ready to submit
      1  refused: the file breaks a rule, the cost is over --max-cost or
         unknown under it, the content was submitted before, or you said no
      2  usage error, missing API key, no terminal without --yes, or the
         service or connection failed (run the command again to recover)
    """
    import tempfile

    from batchplan.errors import InputError
    from batchplan.jobs.guard import BUSY, batch_cost_text, check_budget, decide, read_history
    from batchplan.jobs.rules import batch_metadata, parse_window
    from batchplan.planning.reading import STDIN, copy_stdin
    from batchplan.reports import batches as text
    from batchplan.reports.fit import output_width
    from batchplan.reports.text import table

    try:
        window = parse_window(window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--window") from None
    try:
        metadata = batch_metadata(name, description)
    except InputError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.hint}") from None
    price_region = region or "intl"
    # The key is checked before the (possibly long) planning, not in a dry run.
    conn = _resolve(price_region, base_url, require_key=not dry_run)
    catalog = load_catalog_or_fail(prices_file)

    with tempfile.TemporaryDirectory(prefix="batchplan-") as scratch:
        source = file  # what is uploaded: standard input is copied as it is checked (read once)
        if file == STDIN:
            source = os.path.join(scratch, "stdin.jsonl")
        with copy_stdin(source) if file == STDIN else contextlib.nullcontext():
            check = _check(file, catalog, price_region, quiet)
        click.echo(table(check.plan, output_width(sys.stdout)))
        if not quiet:
            _echo_lines(text.plan_warning_lines(check), err=True)
        _refuse_violations(check, "not submitted")

        upload_path, submitted = source, check
        limits = catalog.batch_limits
        if test_run:
            upload_path = os.path.join(scratch, os.path.basename(source) + ".test.jsonl")
            _write_test_copy(source, upload_path, limits)
            submitted = _check(upload_path, catalog, price_region, True)
            _refuse_violations(submitted, f"--test: the copy for {limits.test_model} breaks a rule; not submitted",
                               shown_as=f"{file} (test copy)")
            click.echo(f"--test: submitting a copy for {limits.test_model} on {limits.test_url} "
                       f"({submitted.requests:,} requests, free)")

        cost_text = batch_cost_text(submitted.plan)
        verdict = check_budget(submitted.plan, max_cost)
        if not verdict.ok:
            raise Fail(verdict.describe("--max-cost"), EXIT_INVALID_LINES)
        if verdict.kind is not None:
            click.echo(verdict.describe("--max-cost"))

        from batchplan.jobs.ledger import estimate_of, sha256_file

        digest = sha256_file(upload_path)
        ledger = _ledger()
        decision = decide(read_history(ledger, digest, conn.base_url), file, force)
        _echo_lines((f"batchplan: note: {note}" for note in decision.notes), err=True)
        if decision.refusal is not None:
            # Submitted before is a refusal; another process on it is to be retried later.
            raise Fail(decision.refusal.message, EXIT_USAGE if decision.refusal.kind == BUSY else EXIT_INVALID_LINES)

        resume = decision.resume
        what = text.submission_text(submitted.requests, conn.base_url, submitted.url, window)
        if dry_run:
            shown = file if upload_path == source else upload_path  # "-", not the copy that is thrown away
            _echo_lines(text.dry_run_lines(resume, shown, submitted.bytes, digest, what, cost_text))
            sys.exit(EXIT_OK)
        if not yes:
            if not sys.stdin.isatty():
                raise Fail("no terminal to ask for confirmation; pass --yes to submit", EXIT_USAGE)
            if not click.confirm(f"Submit {what}, worst-case batch cost {cost_text}?", default=False, err=True):
                raise Fail("not submitted", EXIT_INVALID_LINES)

        _warn_plain_http(conn.base_url)
        estimate = estimate_of(submitted.plan)
        if resume is not None:
            entry = ledger.resume(resume.token, path=file, window=window, metadata=metadata, estimate=estimate)
            click.echo(f"resuming the interrupted submission of {entry.when} ({entry.state})", err=True)
        else:
            entry = ledger.begin(sha256=digest, path=file, region=price_region, base_url=conn.base_url,
                                 endpoint=submitted.url, window=window, metadata=metadata, estimate=estimate,
                                 test=test_run)
        done = _run_submission(conn, ledger, entry, upload_path, request_timeout, max_retries, quiet,
                               create=decision.create)

    if done is None:
        raise Fail(decision.duplicate, EXIT_INVALID_LINES)
    _echo_lines(text.submitted_lines(done, cost_text, ledger.path))
    sys.exit(EXIT_OK)


def _run_submission(conn, ledger, entry, upload_path, timeout, retries, quiet, create):
    """Upload and create for a recorded entry; errors as one line saying how to recover."""
    from batchplan.jobs.client import BatchAPIError, BatchClient
    from batchplan.jobs.ledger import LedgerError
    from batchplan.jobs.submit import submit as run_submission

    notify = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    try:
        with BatchClient(conn.api_key, conn.base_url, timeout=timeout, max_retries=retries) as client:
            # Content already submitted: an interrupted run may still own a
            # batch, so look it up, but create nothing new without --force.
            return run_submission(client, ledger, entry, upload_path, notify=notify, create=create)
    except LedgerError as exc:
        raise Fail(f"{exc}; once it is writable, run the same command again: it finds any batch this run "
                   "made instead of creating another", EXIT_USAGE) from None
    except OSError as exc:
        raise Fail(os_error_message(exc, upload_path), EXIT_USAGE) from None
    except BatchAPIError as exc:
        hint = ("; the submission is recorded: run the same command again to finish it "
                "(it will not create a second batch)") if ledger.get(entry.token).pending else ""
        raise Fail(f"{exc.message}{hint}", EXIT_USAGE) from None
    finally:
        ledger.close()


def _check(path, catalog, region, quiet):
    from batchplan.jobs.rules import check_file
    from batchplan.planning.output import OutputAssumption

    with progress_bar(file_size(path), quiet, "validating") as bar:
        # The worst case, whatever else is wanted: it is what a budget guards.
        return check_file(path, catalog=catalog, region=region, output=OutputAssumption(), on_progress=bar.update)


def _refuse_violations(check, reason: str, shown_as: str | None = None) -> None:
    from batchplan.reports.batches import violation_lines, violation_total

    if check.ok:
        return
    name = shown_as or check.path
    _echo_lines(violation_lines(check, name), err=True)
    raise Fail(f"{name}: {violation_total(check):,} problem(s) the Batch API would reject; {reason}",
               EXIT_INVALID_LINES)


def _write_test_copy(src, dest, limits) -> None:
    from batchplan.jobs.split import write_test_copy

    try:
        write_test_copy(src, dest, limits.test_model, limits.test_url)
    except OSError as exc:  # name the copy, which the error may not
        raise Fail(os_error_message(exc, dest)) from None


# -- status / list / wait / cancel / download ----------------------------------------

def _target(batch_id, region, base_url, timeout, retries):
    """The batch id (the ledger's latest when none is given), its ledger entry and a client."""
    with _ledger() as ledger:
        if batch_id is None:
            entry = ledger.latest()
            if entry is None:
                raise Fail(f"no batch in the ledger ({ledger.path}); pass a BATCH_ID", EXIT_USAGE)
            batch_id = entry.batch_id
        else:
            entry = ledger.find_batch(batch_id)
    client = _connect(region, base_url, timeout, retries, fallback_base_url=entry.base_url if entry else None)
    return batch_id, entry, client


def _remember(batch) -> None:
    """Keep the last status seen in the ledger (best effort: a read-only home is fine)."""
    from batchplan.jobs.ledger import LedgerError

    with _ledger() as ledger, contextlib.suppress(LedgerError):
        ledger.set_status(batch["id"], batch.get("status"))


@click.command()
@click.argument("batch_id", required=False)
@_connection_options("[default: the ledger's, else intl]")
@click.option("--json", "as_json", is_flag=True, help="Print the batch object as the service sent it.")
def status(batch_id, region, base_url, request_timeout, max_retries, as_json):
    """Show one batch: status, request counts, times, files, errors.

    Without BATCH_ID, the latest batch in the ledger. When the service
    failed the file's validation, its errors are listed by line.

    \b
    Exit codes:
      0  the batch was retrieved, whatever its status (wait exits by outcome)
      2  usage error, or the service or connection failed
    """
    from batchplan.reports.batches import describe

    batch_id, entry, client = _target(batch_id, region, base_url, request_timeout, max_retries)
    with client:
        batch = client.retrieve(batch_id)
    _remember(batch)
    if as_json:
        click.echo(json.dumps(batch, ensure_ascii=False, indent=2))
    else:
        click.echo("\n".join(describe(batch, entry)))


@click.command("list")
@_connection_options("[default: intl]")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Batches per page.")
@click.option("--after", default=None, metavar="BATCH_ID", help="The page after this batch.")
@click.option("--status", "status_filter", default=None, help="Only batches with this status.")
@click.option("--local", is_flag=True, help="List the ledger's submissions instead (no network).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the service's page, or the ledger's entries.")
def list_batches(region, base_url, request_timeout, max_retries, limit, after, status_filter, local, as_json):
    """List batches, newest first (the service keeps 30 days).

    The file each batch was submitted from is shown when the ledger knows it.
    --local lists the ledger instead, with interrupted submissions.
    """
    from batchplan.reports.batches import batches_table, entry_doc, ledger_table

    if local:
        with _ledger() as ledger:
            entries = ledger.entries(limit)
        if as_json:
            click.echo(json.dumps([entry_doc(e) for e in entries], ensure_ascii=False, indent=2))
        else:
            click.echo(ledger_table(entries))
        return
    client = _connect(region, base_url, request_timeout, max_retries)
    with client:
        page = client.list(limit=limit, after=after, status=status_filter)
    if as_json:
        click.echo(json.dumps(page, ensure_ascii=False, indent=2))
        return
    with _ledger() as ledger:
        known = {b["id"]: ledger.find_batch(b["id"]) for b in page["data"]}
    _echo_lines(batches_table(page, known))


@click.command()
@click.argument("batch_id", required=False)
@_connection_options("[default: the ledger's, else intl]")
@click.option("--interval", type=Seconds(min=0), default=5.0, show_default=True, metavar="SECONDS",
              help="First wait between polls; it grows 1.5x while nothing changes.")
@click.option("--max-interval", type=Seconds(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Longest wait between polls.")
@click.option("--timeout", "wait_timeout", type=Seconds(min=0), default=None, metavar="SECONDS",
              help="Give up after this long (exit 3); the batch keeps running.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no status changes on stderr.")
def wait(batch_id, region, base_url, request_timeout, max_retries, interval, max_interval, wait_timeout, quiet):
    """Poll a batch until it ends, with a progress bar over its requests.

    Without BATCH_ID, the latest batch in the ledger.

    \b
    Exit codes:
      0  completed (some requests may have failed: see the error file)
      1  failed, expired or cancelled
      2  usage error, or the service or connection failed
      3  --timeout passed first; the batch is still running
    """
    from tqdm import tqdm

    from batchplan.jobs.poll import StillRunning, poll
    from batchplan.reports.batches import describe

    batch_id, entry, client = _target(batch_id, region, base_url, request_timeout, max_retries)
    bar = tqdm(total=0, unit="req", desc=batch_id[:18], file=sys.stderr, leave=False,
               disable=quiet or not sys.stderr.isatty())
    try:
        with client:
            for now in poll(client.retrieve, batch_id, interval=interval, max_interval=max_interval,
                            timeout=wait_timeout):
                batch, status_now = now.batch, now.status
                if now.total:
                    bar.total = now.total
                bar.n = now.done
                bar.set_postfix_str(status_now, refresh=True)
                if not quiet and now.status_changed:
                    bar.write(f"{batch_id}: {status_now}", file=sys.stderr)
    except StillRunning as exc:
        _remember(exc.batch)
        raise Fail(f"{exc} (--timeout {wait_timeout:g}s)", EXIT_STILL_RUNNING) from None
    finally:
        bar.close()
    counts = batch.get("request_counts") or {}
    _remember(batch)
    click.echo("\n".join(describe(batch, entry)))
    if status_now == "completed":
        failed = counts.get("failed") or 0
        if failed:
            click.echo(f"{failed:,} request(s) failed: batchplan download {batch_id} fetches the error file")
        sys.exit(EXIT_OK)
    sys.exit(EXIT_BATCH_FAILED)


@click.command()
@click.argument("batch_id")
@_connection_options("[default: the ledger's, else intl]")
def cancel(batch_id, region, base_url, request_timeout, max_retries):
    """Cancel a batch. Requests already done are billed and kept in its output."""
    batch_id, entry, client = _target(batch_id, region, base_url, request_timeout, max_retries)
    with client:
        batch = client.cancel(batch_id)
    _remember(batch)
    click.echo(f"{batch_id}: {batch.get('status')}")


@click.command()
@click.argument("batch_id")
@_connection_options("[default: the ledger's, else intl]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True, metavar="DIR",
              help="Folder for the files (created if missing).")
@click.option("--force", is_flag=True, help="Overwrite files downloaded before.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def download(batch_id, region, base_url, request_timeout, max_retries, out_dir, force, quiet):
    """Fetch a batch's output file and error file into DIR.

    They are written as BATCH_ID.output.jsonl and BATCH_ID.errors.jsonl,
    each through a temporary file renamed into place, and never over an
    existing file without --force. Results are not in input order: match
    them by custom_id (batchplan reconcile does).

    \b
    Exit codes:
      0  downloaded
      1  the batch has no files: it failed validation (the errors are
         listed), or it has not ended yet
      2  usage error, a file exists (without --force), or the service or
         connection failed
    """
    from batchplan.jobs.client import TERMINAL_STATUSES
    from batchplan.jobs.download import download_atomic
    from batchplan.reports.batches import error_lines

    batch_id, entry, client = _target(batch_id, region, base_url, request_timeout, max_retries)
    with client:
        batch = client.retrieve(batch_id)
        _remember(batch)
        wanted = [(kind, batch.get(key)) for kind, key in (("output", "output_file_id"), ("errors", "error_file_id"))
                  if batch.get(key)]
        if not wanted:
            state = batch.get("status")
            _echo_lines(error_lines(batch), err=True)
            if state not in TERMINAL_STATUSES:
                raise Fail(f"{batch_id} is still {state}: its files exist only when it ends "
                           f"(batchplan wait {batch_id})", EXIT_INVALID_LINES)
            raise Fail(f"{batch_id} ended {state} with no output or error file", EXIT_INVALID_LINES)
        targets = [(kind, file_id, os.path.join(out_dir, f"{batch_id}.{kind}.jsonl")) for kind, file_id in wanted]
        for _, _, path in targets:  # all refusals before any download
            if os.path.isdir(path):
                raise Fail(f"{path}: is a directory")
            refuse_overwrite(path, force)
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise Fail(f"{out_dir}: {exc.strerror or exc}") from None
        for kind, file_id, path in targets:
            with progress_bar(None, quiet, os.path.basename(path)) as bar:
                size = download_atomic(client, file_id, path, on_bytes=bar.update)
            click.echo(f"{path}: {size:,} bytes ({kind}, {file_id})")
