"""Writing files so that a reader never sees half of one.

Every output goes to a temporary file in the destination folder and is renamed
over the destination only once complete: an interruption, a full disk or an
error leaves the previous file (or none) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from compofa.errors import OutputPathError


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, with a one-line reason, if `path` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise OutputPathError(f"output path {str(target)!r} is a directory; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {str(target)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {str(target)!r}: folder {str(folder)!r} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputPathError(f"cannot write {str(target)!r}: the file is read-only")
    return target


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], mode: str = "wb", durable: bool = True
) -> Iterator[IO]:  # type: ignore[type-arg]
    """Open a temporary file beside `path`; on success rename it to `path`.

    `durable` also flushes the data to disk before the rename, so that a power
    loss cannot leave a renamed but empty file; caches that can be rebuilt skip it.
    """
    target = check_output_path(path)
    handle = tempfile.NamedTemporaryFile(
        mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    try:
        # temporary files are private (0600); the output gets a plain file's permissions
        os.chmod(handle.name, 0o666 & ~_umask())
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    with atomic_output(path, durable=durable) as handle:
        handle.write(data)
