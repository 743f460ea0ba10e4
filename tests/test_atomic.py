"""batchplan.atomic.atomic_write: the old file or the new one, never half."""

from __future__ import annotations

import pytest

from batchplan.atomic import atomic_write


def test_the_bytes_replace_the_file_only_when_the_block_ends(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    with atomic_write(target) as handle:
        handle.write(b"new\n")
        assert target.read_bytes() == b"old\n"  # not yet
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_an_error_in_the_block_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, suffix=".part") as handle:
            handle.write(b"half a li")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
