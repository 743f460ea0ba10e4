"""`batchplan ledger rebuild`: the local record of submissions, rebuilt from the service."""

from __future__ import annotations

import json
import sys

import click

from batchplan.cli._options import EXIT_INVALID_LINES, EXIT_OK, Seconds


@click.group()
def ledger() -> None:
    """The ledger: the local record of every submission ($BATCHPLAN_HOME,
    else the user data directory)."""


@ledger.command()
@click.option("--region", type=click.Choice(["intl", "cn"]), default=None,
              help="intl (Singapore) or cn (Beijing): the service to list. [default: intl]")
@click.option("--base-url", default=None, metavar="URL", help="API base URL; overrides $DASHSCOPE_BASE_URL and --region.")
@click.option("--days", type=click.IntRange(1, 30), default=30, show_default=True,
              help="How far back to list batches (the service keeps 30 days).")
@click.option("--request-timeout", type=Seconds(min=0, min_open=True), default=60.0, show_default=True, metavar="SECONDS",
              help="How long to wait for each call's answer.")
@click.option("--max-retries", type=click.IntRange(0, 10), default=2, show_default=True,
              help="Retries of a call answered with 429/5xx or cut off.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (schema batchplan.ledger-rebuild/1).")
def rebuild(region, base_url, days, request_timeout, max_retries, as_json):
    """Rebuild a damaged or lost ledger from the batches on the service.

    A damaged ledger file is moved aside beside it (never deleted). Then the
    account's batches of the last --days are listed, and each one batchplan
    created is written back from its metadata (file, content sha256, region,
    estimate, name). A healthy ledger keeps its entries and gains the ones it
    lacks. It reports what it could not restore.

    Run it once per region (or --base-url) you submit to.

    \b
    Exit codes:
      0  rebuilt: every batchplan batch listed is in the ledger
      1  some batchplan batches could not be restored (they are listed)
      2  usage error, missing API key, or the service or connection failed
    """
    from batchplan.jobs.client import BatchClient, resolve_connection
    from batchplan.jobs.ledger import Ledger
    from batchplan.jobs.ledger_rebuild import rebuild as run_rebuild
    from batchplan.reports.ledger import rebuild_document, rebuild_lines

    conn = resolve_connection(region, base_url)
    with Ledger() as book, BatchClient(conn.api_key, conn.base_url, timeout=request_timeout, max_retries=max_retries) as client:
        result = run_rebuild(book, client, days=days)
    if as_json:
        click.echo(json.dumps(rebuild_document(result), ensure_ascii=False, indent=2))
    else:
        for line in rebuild_lines(result):
            click.echo(line)
    sys.exit(EXIT_OK if result.ok else EXIT_INVALID_LINES)
