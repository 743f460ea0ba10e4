"""Every failure batchplan reports, under one base.

::

    BatchplanError                 one line for the user; .exit_code (2 unless set)
     ├── InputError                a batch, output or price file that cannot be used
     │    ├── ConfigError          (cli.config) a batchplan.toml or BATCHPLAN_* value that cannot be used
     │    ├── CalibrationError     (jobs.calibrate) an output file that cannot calibrate
     │    ├── ReconcileError       (jobs.results) an output or error file that cannot be read
     │    ├── ImageError           (planning.images) an image part whose size cannot be read
     │    └── PilotError           (jobs.pilot) a pilot that cannot be drawn (no requests, larger than useful)
     ├── CatalogError              a catalog or price file that breaks the schema
     ├── APIError                  the service refused, failed, or could not be reached
     │    └── BatchAPIError        (jobs.client) with status, code, and whether the call may have happened
     │         ├── MissingKey
     │         └── LookupFailed    (jobs.submit) a create whose answer was lost, and the lookup failed too
     ├── GuardError                refused before spending: over the budget, or not confirmed
     ├── PilotInterrupted          (jobs.pilot) Ctrl-C during a pilot; exit 130, the answers so far kept
     ├── LedgerError               the local record of submissions cannot be read or written
     ├── SplitError                (jobs.split) a split that cannot start or finish
     ├── ClusterError              (planning.cluster) Dask missing, unreachable, or a task failed
     └── VocabularyError           (planning.tokens) the Qwen vocabulary could not be read

Library messages name files, lines and values, never command-line flags: an
error may carry a ``hint`` (the name of the setting at fault, e.g.
``"max_cost"``) that the CLI words as its own flag. The CLI turns any
``BatchplanError`` into ``batchplan: error: MESSAGE`` and its exit code at
one place (``cli.main``).

The ``ValueError``/``RuntimeError`` mix-ins below are kept where callers
have always caught those.
"""

from __future__ import annotations


class BatchplanError(Exception):
    """A failure to show the user as one line. ``exit_code`` is the CLI's."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InputError(BatchplanError):
    """A file that cannot be read or used. The message is one line and names it."""


class CatalogError(InputError, ValueError):
    """A catalog file that cannot be used, with a one-line reason."""


class APIError(BatchplanError):
    """The service refused, failed, or could not be reached."""


class GuardError(BatchplanError):
    """Refused before anything was spent: over the budget, or not confirmed."""


class LedgerError(BatchplanError):
    """The ledger cannot be opened or written; one line naming the file."""


class SplitError(BatchplanError):
    """A split that cannot start or finish. The message is one line."""


class ClusterError(BatchplanError):
    """Dask is missing, the scheduler cannot be reached, or a task failed."""


class VocabularyError(BatchplanError, RuntimeError):
    """The Qwen vocabulary could not be found or read."""
