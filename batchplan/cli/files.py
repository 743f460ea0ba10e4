"""Commands on batch files before they are sent: ``validate`` and ``split``.

They parse arguments and render results; the rules live in ``jobs.rules``
and ``split``.
"""

from __future__ import annotations

import json
import re
import sys

import click

from batchplan.cli._options import (
    EXIT_INVALID_LINES,
    EXIT_OK,
    PRICES_OPTION,
    Fail,
    file_size,
    load_catalog_or_fail,
    os_error_message,
    progress_bar,
    region_option,
)
from batchplan.planning.reading import SHOW_LINES, at_line

VALIDATE_SCHEMA = "batchplan.validate/1"
# Violations printed in text mode; --json lists all that were kept.
SHOW_VIOLATIONS = SHOW_LINES
# Rejected lines split prints; the manifest lists them all.
SHOW_REJECTED = SHOW_LINES

REGION = region_option("Region: intl (Singapore) or cn (Beijing). The models offered for batch differ.")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}


class Size(click.ParamType):
    """A byte count: 500000, 100MB, 1.5GB (powers of 1000) or 6MiB (powers of 1024)."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            self.fail(f"{value!r} is not a size (examples: 500000, 100MB, 6MiB)", param, ctx)
        from decimal import Decimal

        size = int(Decimal(match.group(1)) * _UNITS[unit])
        if size < 1:
            self.fail(f"{value!r} must be at least 1 byte", param, ctx)
        return size


@click.command()
@click.argument("file", metavar="FILE")
@REGION
@PRICES_OPTION
@click.option("--json", "as_json", is_flag=True,
              help=f"Print one JSON document (schema {VALIDATE_SCHEMA}) instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line; violations still print.")
def validate(file, region, prices_file, as_json, quiet):
    """Check FILE against the Batch API's rules before you upload it.

    Checks every line and the file as a whole: at most 50,000 requests and
    500 MB per file and 6 MB per line; one model, one url and one thinking
    mode on every line; custom_id a unique non-empty string; method POST;
    batch-test-model only on /v1/chat/ds-test (100 lines, 1 MB at most);
    prompt tokens within the model's max input (batch caps some models at
    256K) and max_tokens within its max output; the model offered for batch
    in the region. Limits come from the catalog (see `batchplan prices`).

    Each violation prints as FILE:LINE: RULE: MESSAGE (file-wide ones
    without LINE; the first 20, then a count), then a summary. Rules:

    \b
      too_many_requests    more than 50,000 requests
      file_too_large       file over 500 MB
      line_too_large       line over 6 MB
      no_requests          no requests at all
      invalid_line         not a valid request: JSON, custom_id, method
                           POST, url, body (the message says which)
      duplicate_custom_id  custom_id used on an earlier line (named)
      mixed_models         more than one model in the file
      mixed_thinking       thinking and non-thinking requests mixed
      mixed_urls           more than one url in the file
      url_not_allowed      a url the catalog does not allow for batch
      test_model_url       batch-test-model off /v1/chat/ds-test, or
                           another model on it
      test_file_too_large  batch-test-model file over 100 lines or 1 MB
      over_max_input       prompt tokens over the model's max input
      over_max_output      max_tokens over the model's max output
      model_not_offered    the region does not offer the model for batch
      unknown_model        a model neither the catalog nor region knows

    \b
    Warnings (on stderr as FILE:LINE: warning: RULE: MESSAGE; they do not
    make the file invalid):
      line_over_newest_limit  line over 1 MB: the newest Batch API page's
                              limit, where the English page says 6 MB
      media_url_not_public    a media part at a local, private or file:
                              URL: accepted, but never completes

    \b
    --json prints {"schema": "batchplan.validate/1", "path", "region",
    "ok", "requests", "bytes", "model", "url", "thinking",
    "violations": [{"line", "rule", "message"}],
    "violation_counts": {RULE: N}, "warnings": [...], "warning_counts"}. Up to 1,000 violations per rule are
    listed; the counts are exact.

    \b
    Exit codes:
      0  the file is valid
      1  the file breaks at least one rule
      2  usage error, or the file or catalog cannot be read (or the
         file is compressed: decompress it first)
    """
    from batchplan.jobs.rules import check_file

    catalog = load_catalog_or_fail(prices_file)
    size = file_size(file)
    with progress_bar(size, quiet or as_json, "validating") as bar:
        result = check_file(file, catalog=catalog, region=region, on_progress=bar.update)
    if as_json:
        click.echo(json.dumps(validate_document(result), ensure_ascii=False, indent=2))
    else:
        total = sum(result.violation_counts.values())
        for v in result.violations[:SHOW_VIOLATIONS]:
            reason = f"{v.rule}: {v.message}"
            click.echo(at_line(result.path, v.line, reason) if v.line is not None else f"{result.path}: {reason}")
        if total > SHOW_VIOLATIONS:
            click.echo(f"... and {total - min(SHOW_VIOLATIONS, len(result.violations)):,} more")
        for v in result.warnings[:SHOW_VIOLATIONS]:  # allowed by the rules, but the service may not take it
            click.echo(at_line(result.path, v.line, f"warning: {v.rule}: {v.message}"), err=True)
        warned = sum(result.warning_counts.values())
        if warned > SHOW_VIOLATIONS:
            click.echo(f"... and {warned - min(SHOW_VIOLATIONS, len(result.warnings)):,} more warnings", err=True)
        if not quiet:
            click.echo(_summary(result, total))
    sys.exit(EXIT_OK if result.ok else EXIT_INVALID_LINES)


def validate_document(result) -> dict:
    """The --json document of validate (schema batchplan.validate/1)."""
    return {
        "schema": VALIDATE_SCHEMA,
        "path": result.path,
        "region": result.region,
        "ok": result.ok,
        "requests": result.requests,
        "bytes": result.bytes,
        "model": result.model,
        "url": result.url,
        "thinking": result.thinking,
        "violations": [{"line": v.line, "rule": v.rule, "message": v.message} for v in result.violations],
        "violation_counts": dict(sorted(result.violation_counts.items())),
        "warnings": [{"line": v.line, "rule": v.rule, "message": v.message} for v in result.warnings],
        "warning_counts": dict(sorted(result.warning_counts.items())),
    }


def _summary(result, total: int) -> str:
    facts = [f"{result.requests:,} requests", f"{result.bytes:,} bytes"]
    if result.model:
        facts.append(f"model {result.model}")
    if result.thinking is not None:
        facts.append("thinking" if result.thinking else "non-thinking")
    if result.url:
        facts.append(result.url)
    facts.append(f"region {result.region}")
    if result.ok:
        return f"{result.path}: valid: " + ", ".join(facts)
    counts = ", ".join(f"{rule} {n:,}" for rule, n in sorted(result.violation_counts.items()))
    return f"{result.path}: invalid: {total:,} violation(s) ({counts}); " + ", ".join(facts)


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for the parts and the manifest (created if missing).")
@click.option("--max-lines", type=click.IntRange(min=1), default=None, metavar="N",
              help="Lines per part at most [default: the Batch API limit, 50,000].")
@click.option("--max-bytes", type=Size(), default=None,
              help="Bytes per part at most: 500000, 100MB (x1000), 6MiB (x1024) [default: the Batch API limit, 500 MiB].")
@click.option("--force", is_flag=True, help="Overwrite parts and manifest of an earlier split of FILE in DIR.")
@REGION
@PRICES_OPTION
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def split(file, out_dir, max_lines, max_bytes, force, region, prices_file, quiet):
    """Split FILE into batch files the Batch API accepts, in DIR.

    Groups lines by model, url and thinking mode (a batch file takes one of
    each) and cuts each group into parts of at most --max-lines lines and
    --max-bytes bytes (batch-test-model parts: 100 lines and 1 MB at most).
    Lines are copied byte for byte, whole, in their original order, ending
    in \\n. Parts are named FILE-STEM.MODEL.thinking|nothinking.part-001.jsonl,
    beside FILE-STEM.manifest.json, which lists every part (model, url,
    thinking, lines, bytes, first and last source line, sha256), the source
    and its sha256, and the lines left out.

    Lines left out of every part: invalid lines, a repeated custom_id, and
    lines too large for a part. They print on stderr as FILE:LINE: left out:
    REASON (the first 20, then a count) and are all in the manifest.
    Split does not count tokens: run `batchplan validate` on each part to
    check token limits and the rest. A part whose model --region does not
    offer for batch gets a warning on stderr.

    Nothing is overwritten without --force; with it, parts the earlier
    manifest listed and this split did not write are removed.

    \b
    Exit codes:
      0  every line went into a part
      1  some lines were left out (the parts and manifest are still written)
      2  usage error, the file cannot be read, or it holds no requests
    """
    from batchplan.jobs.rules import offered_for_batch
    from batchplan.jobs.split import split_file

    catalog = load_catalog_or_fail(prices_file)
    if region not in catalog.regions:
        raise Fail(f"unknown region {region!r}")
    limits = catalog.batch_limits
    if max_lines is not None and max_lines > limits.max_requests:
        raise click.BadParameter(f"at most {limits.max_requests:,}, the Batch API limit", param_hint="--max-lines")
    if max_bytes is not None and max_bytes > limits.max_file_bytes:
        raise click.BadParameter(f"at most {limits.max_file_bytes:,} bytes, the Batch API limit", param_hint="--max-bytes")
    try:
        with progress_bar(file_size(file), quiet, "splitting") as bar:
            manifest = split_file(file, out_dir, max_lines=max_lines, max_bytes=max_bytes, catalog=catalog,
                                  force=force, on_progress=bar.update)
    except OSError as exc:  # name the folder, which the error may not
        raise Fail(os_error_message(exc, out_dir)) from None
    for part in manifest.files:
        mode = "thinking" if part.thinking else "non-thinking"
        click.echo(f"{part.path}: {part.lines:,} lines, {part.bytes:,} bytes, {part.model}, {mode}, {part.url}")
    click.echo(f"manifest: {manifest.path}")
    for model in sorted({part.model for part in manifest.files}):
        if not offered_for_batch(catalog, region, model):
            click.echo(f"batchplan: warning: {model} is not offered for batch in {region}", err=True)
    for r in manifest.rejected[:SHOW_REJECTED]:
        click.echo(at_line(file, r.line, f"left out: {r.reason}"), err=True)
    if manifest.rejected_count > SHOW_REJECTED:
        click.echo(f"... and {manifest.rejected_count - SHOW_REJECTED:,} more left out (all in {manifest.path})", err=True)
    if not manifest.ok:
        click.echo(f"batchplan: {manifest.rejected_count:,} line(s) of {file} left out of every part", err=True)
    sys.exit(EXIT_OK if manifest.ok else EXIT_INVALID_LINES)
