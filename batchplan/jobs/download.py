"""Fetch a service file onto disk so that it is either whole or absent.

The bytes go to a temporary file beside the target, are flushed and synced,
and only then renamed into place: a crash or a Ctrl-C mid-download leaves
the target as it was, never half a file that a resume would trust.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable


def download_atomic(client, file_id: str, path: str, on_bytes: Callable[[int], None] | None = None) -> int:
    """Download ``file_id`` to ``path`` (atomically); the number of bytes."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            size = client.download(file_id, handle, on_bytes=on_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size
