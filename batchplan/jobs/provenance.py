"""What batchplan writes into a batch's ``metadata``, so the service can tell
a lost ledger which batches batchplan made and how (``ledger_rebuild``).

DashScope takes any custom metadata key besides ``ds_name`` and
``ds_description``, returns every one in full on each read, and does not
hold custom values to the 256-character limit ([BATCH]). batchplan adds
eight keys, all starting ``batchplan``; the user's own keys are untouched.
Nothing secret goes there: the API key never does. The input file's path
does (as the ledger keeps it), so that a rebuilt ledger names it.
ASSUMED: the service keeps at least the 16 pairs OpenAI allows; batchplan
writes at most 10 (its 8 and ds_name, ds_description).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from batchplan._version import __version__

MARK = "batchplan"  # its value is the batchplan version that created the batch
TOKEN = "batchplan_token"
SHA256 = "batchplan_sha256"
PATH = "batchplan_path"
REGION = "batchplan_region"
TEST = "batchplan_test"
STARTED = "batchplan_started"
ESTIMATE = "batchplan_estimate"
KEYS = (MARK, TOKEN, SHA256, PATH, REGION, TEST, STARTED, ESTIMATE)
# What jobs.run adds to each part's metadata: the job's key and the part's number.
JOB = "batchplan_job"
PART = "batchplan_part"


def with_provenance(entry) -> dict[str, str]:
    """The metadata to create ``entry``'s batch with (a ledger Entry): the
    user's, plus batchplan's own keys."""
    meta = dict(entry.metadata or {})
    meta.update({
        MARK: __version__,
        TOKEN: entry.token,
        SHA256: entry.sha256,
        PATH: entry.path,
        REGION: entry.region,
        TEST: "1" if entry.test else "0",
        STARTED: repr(float(entry.started)),
    })
    if entry.estimate is not None:
        meta[ESTIMATE] = json.dumps(entry.estimate, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return meta


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The keys the user gave (ds_name, ds_description, ...), without batchplan's."""
    mine = {k: v for k, v in (metadata or {}).items() if k not in KEYS}
    return mine or None


def is_batchplans(batch: Mapping[str, Any]) -> bool:
    """Whether batchplan created this batch (its metadata carries the mark)."""
    return bool((batch.get("metadata") or {}).get(MARK))
