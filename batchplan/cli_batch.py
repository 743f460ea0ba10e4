"""Commands registered on the batchplan CLI group (see cli.py)."""

from __future__ import annotations

from .cli import cli  # noqa: F401
