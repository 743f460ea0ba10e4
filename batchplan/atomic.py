"""Writing a file so that a kill at any moment leaves the old file or the
new one, never half of one: the bytes go to a temporary file beside the
target, are flushed and fsynced, and the temporary file is renamed over the
target only when the block ends without an error (else it is removed).

Below every layer (like ``errors``): planning saves standard input with it,
jobs downloads, sorts and merges results with it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary handle whose bytes become ``path`` when the block ends."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
