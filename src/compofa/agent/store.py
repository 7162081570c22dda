"""The agent's model store: files kept by content hash, so each moves over the link once.

A model on the host may be several files (a graph and the weight files it
refers to, ONNX external data). The host sends each file the store lacks
(``have``, then ``put``), then names the model's files by relative path and
hash (``model``); the store lays them out in a folder of their own, named by
that manifest, as links to the stored files. Everything here is rebuildable,
under ``$COMPOFA_CACHE_DIR/agent`` (default ``~/.cache/compofa/agent``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from compofa.errors import CompofaError
from compofa.fileio import atomic_output, default_cache_dir

_HASH = re.compile(r"^[0-9a-f]{64}$")


class StoreError(CompofaError):
    """A file or model the host sent that the store cannot keep as asked."""


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore:
    """Files by hash under `root`, and the models laid out from them."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_cache_dir() / "agent"
        self.blobs = self.root / "blobs"
        self.models = self.root / "models"

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes (in the order asked) of files the store does not hold."""
        return [value for value in dict.fromkeys(hashes) if not (self.blobs / _checked(value)).exists()]

    def put(self, value: str, data: bytes) -> None:
        """Keep `data` under its hash, after checking it is that hash (a damaged transfer is refused)."""
        if file_hash(data) != _checked(value):
            raise StoreError(f"a file sent as {value[:12]}... has another hash: the transfer was damaged; "
                             "send it again")
        self.blobs.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.blobs / value, durable=False) as handle:  # a cache: a lost file is sent again
            handle.write(data)

    def model(self, files: Mapping[str, str], main: str) -> Path:
        """The path of `main` in a folder holding every file of the model at its relative path."""
        if main not in files:
            raise StoreError(f"the model's main file {main!r} is not among its files")
        for relative in files:
            _check_relative(relative)
        missing = self.missing(files.values())
        if missing:
            raise StoreError(f"{len(missing)} of the model's files were never sent (e.g. {missing[0][:12]}...)")
        manifest = json.dumps(sorted(files.items()), separators=(",", ":"))
        folder = self.models / file_hash(manifest.encode())
        for relative, value in files.items():
            target = folder / relative
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                scratch = target.with_name(f".{target.name}.{os.getpid()}")
                try:
                    os.link(self.blobs / value, scratch)
                except OSError:  # a file system without hard links: a copy serves as well
                    scratch.write_bytes((self.blobs / value).read_bytes())
                os.replace(scratch, target)
        return folder / main


def _checked(value: str) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        raise StoreError(f"{value!r} is not a sha256 hex digest")
    return value


def _check_relative(relative: str) -> None:
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or any(part in ("", ".", "..") for part in path.parts):
        raise StoreError(f"a model file's path must stay inside the model's folder, not {relative!r}")
