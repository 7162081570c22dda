"""Whole-file writes: the output appears complete or not at all, with a plain file's permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from compofa.fileio import atomic_output, write_bytes_atomic


def test_written_file_has_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "out.json", b"{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o644  # not the temporary file's 0600
    assert (tmp_path / "out.json").read_bytes() == b"{}"


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
