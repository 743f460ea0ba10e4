"""`batchplan pilot`: send a small stratified random sample of the job in
real time and record the answers as Batch API output lines
(``jobs.pilot``); `compare --calibrate PILOT.jsonl` then states the expected
cost with a 95% interval."""

from __future__ import annotations

import sys

import click

from batchplan.cli._options import (
    AMOUNT,
    PRICES_OPTION,
    Fail,
    expand_paths,
    load_catalog_or_fail,
    refuse_overwrite,
)

EXIT_INTERRUPTED = 130


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="PILOT.jsonl",
              help="Where to write one Batch API output line per pilot request.")
@click.option("--requests", "requests_", type=click.IntRange(min=2), default=None, metavar="N",
              help="Requests to send [default: 50, at most 10% of the requests and 1,000].")
@click.option("--target", type=click.FloatRange(0.01, 1.0), default=None, metavar="HALF_WIDTH",
              help="Send a first round of 30, then top up to the requests that give this relative half-width "
                   "of the 95% interval of the output tokens (0.10: +-10%), within the same limit.")
@click.option("--max-cost", type=AMOUNT, default=None, metavar="AMOUNT",
              help="Refuse when the pilot's worst-case real-time cost is over AMOUNT (region currency).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Requests in flight at most (it starts at 2 and doubles after successes).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draw: the same seed draws the same requests.")
@click.option("--region", type=click.Choice(["intl", "cn"]), default="intl", show_default=True,
              help="intl (Singapore, USD) or cn (Beijing, CNY): prices, limits and the documented base URL.")
@click.option("--base-url", default=None, metavar="URL", help="API base URL; overrides $DASHSCOPE_BASE_URL and --region.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Your account's requests per minute (overrides the catalog).")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Your account's tokens per minute (overrides the catalog).")
@PRICES_OPTION
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def pilot(files, out, requests_, target, max_cost, yes, concurrency, seed, region, base_url, rpm, tpm, prices_file, force, quiet):
    """Send a random sample of FILE(s) in real time to measure output lengths.

    Requests are drawn at random (seeded) from every valid line, stratified
    by model, thinking mode and price tier, sent unchanged through the
    chat completions endpoint (streamed, with usage), and recorded in
    PILOT.jsonl as Batch API output lines. The pilot is billed at the
    real-time price: its worst-case cost is shown first, and it asks on a
    terminal (--yes otherwise). FILE may be - (standard input, kept while
    the pilot runs). Then:

    \b
      batchplan compare FILE... --calibrate PILOT.jsonl

    gives the job's expected output tokens and cost with a 95% interval.
    The key comes from $DASHSCOPE_API_KEY.

    \b
    Exit codes:
      0    every pilot request was answered (or some failed: they are listed)
      2    usage error, no key, refused by the guard, or not confirmed
      130  interrupted (Ctrl-C): the answers so far are kept in PILOT.jsonl
    """
    from tqdm import tqdm

    from batchplan.jobs.client import is_plain_http_remote, resolve_connection
    from batchplan.jobs.ledger import Ledger
    from batchplan.jobs.pilot import ChatClient, PilotInterrupted, run_pilot

    if requests_ is not None and target is not None:
        raise click.UsageError("choose one of --requests and --target")
    paths = expand_paths(files)
    refuse_overwrite(out, force)
    catalog = load_catalog_or_fail(prices_file)
    conn = resolve_connection(region, base_url)
    if is_plain_http_remote(conn.base_url):
        click.echo("batchplan: warning: the base URL is plain http; the API key would travel unencrypted", err=True)

    def confirm(text: str) -> bool:
        click.echo(text, err=True)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise Fail("no terminal to ask for confirmation; pass --yes to send the pilot")
        return click.confirm("Send these requests in real time (billed)?", default=False, err=True)

    bar = tqdm(total=None, unit="request", desc="pilot", file=sys.stderr, disable=quiet or not sys.stderr.isatty(), leave=False)

    def on_result(sent) -> None:
        bar.update(1)

    client = ChatClient(conn.api_key, conn.base_url)
    try:
        with Ledger() as ledger:
            result = run_pilot(paths, out, client=client, catalog=catalog, region=region, requests=requests_, target=target,
                               max_cost=max_cost, confirm=confirm, seed=seed, concurrency=concurrency, rpm=rpm, tpm=tpm,
                               ledger=ledger, base_url=conn.base_url, on_result=on_result,
                               notify=lambda text: click.echo(text, err=True))
    except PilotInterrupted as exc:
        bar.close()
        click.echo(f"batchplan: {exc}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        bar.close()
        client.close()
    failed = [s for s in result.sent if not s.ok]
    click.echo(f"{result.ok} of {len(result.sent)} pilot request(s) answered; {result.throttled} throttled (429) and retried; "
               f"written to {out}")
    for s in failed[:20]:
        err = s.line.get("error") or {}
        click.echo(f"{s.candidate.file}:{s.candidate.line}: {err.get('code')}: {err.get('message')}", err=True)
    click.echo(f"Next: batchplan compare {' '.join(paths)} --calibrate {out}")
