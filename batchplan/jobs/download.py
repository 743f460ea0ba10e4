"""Fetch a service file onto disk so that it is either whole or absent.

The bytes go through ``batchplan.atomic.atomic_write``: a crash or a Ctrl-C mid-download leaves
the target as it was, never half a file that a resume would trust.
"""

from __future__ import annotations

from typing import Callable

from batchplan.atomic import atomic_write


def download_atomic(client, file_id: str, path: str, on_bytes: Callable[[int], None] | None = None) -> int:
    """Download ``file_id`` to ``path`` (atomically); the number of bytes."""
    with atomic_write(path, suffix=".part") as handle:
        size = client.download(file_id, handle, on_bytes=on_bytes)
    return size
