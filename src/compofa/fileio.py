"""Writing files so that a reader never sees half of one.

Every output goes to a temporary file in the destination folder and is renamed
over the destination only once complete: an interruption, a full disk or an
error leaves the previous file (or none) in place, never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from compofa.errors import OutputPathError

#: Errors of the machine, not of compofa (a full disk, read-only storage), with what to do about them.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "free some space and rerun",
    errno.EDQUOT: "free some space and rerun",
    errno.EFBIG: "write to another file system",
    errno.EROFS: "write to a writable place",
    errno.EACCES: "write to a place you may write to",
    errno.EPERM: "write to a place you may write to",
    errno.EIO: "check the disk and rerun",
}


def environment_message(error: OSError) -> str | None:
    """One line for an error of the machine, naming the file when known; None for any other error."""
    remedy = ENVIRONMENT_ERRORS.get(error.errno or 0)
    if remedy is None:
        return None
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}; {remedy}"


def _write_failed(target: Path, error: OSError) -> Exception:
    remedy = ENVIRONMENT_ERRORS.get(error.errno or 0)
    if remedy is None:
        return error
    return OutputPathError(f"cannot write {str(target)!r}: {error.strerror or error}; {remedy}")


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
) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success rename it to `path`.

    `durable` also flushes the data to disk before the rename, so that a power
    loss cannot leave a renamed but empty file; caches that can be rebuilt skip it.
    """
    target = check_output_path(path)
    try:
        handle = tempfile.NamedTemporaryFile(
            mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
    except OSError as error:
        raise _write_failed(target, error) from None
    try:
        # temporary files are private (0600); the output gets a plain file's permissions
        os.chmod(handle.name, 0o666 & ~current_umask())
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise _write_failed(target, error) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise


def current_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    with atomic_output(path, durable=durable) as handle:
        handle.write(data)


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Fail early, in one line, if `path` cannot be made or filled as a folder of outputs."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"output folder {str(target)!r} is a file; give a folder name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {str(target)!r}: folder {str(parent)!r} does not exist")
    for folder in (parent, target) if target.exists() else (parent,):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputPathError(f"cannot write {str(target)!r}: folder {str(folder)!r} is not writable")
    return target


def write_folder_atomic(path: str | os.PathLike[str], files: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Write `files` (a relative path inside the folder, content) into the folder `path`, whole or not at all.

    They are written into a hidden folder beside `path` first. A new folder is then
    renamed into place; into an existing one each file is renamed in turn, in the
    given order (so the page that links the others goes last), and files already
    there that are not among `files` are kept. A full disk or an interruption while
    writing leaves `path` as it was.
    """
    target = check_output_folder(path)
    for name, _ in files:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(part in ("", ".", "..") for part in parts):
            raise OutputPathError(f"{name!r} is not a path inside the output folder")
    try:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as error:
        raise _write_failed(target, error) from None
    try:
        for name, data in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            with open(staging / name, "wb") as handle:
                handle.write(data)
        if not target.exists():
            os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's folder is private
            os.rename(staging, target)
        else:
            for name, _ in files:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, target / name)
    except OSError as error:
        raise _write_failed(target, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target / name for name, _ in files]


def default_cache_dir() -> Path:
    """``$COMPOFA_CACHE_DIR``, else ``$XDG_CACHE_HOME/compofa``, else ``~/.cache/compofa``: where rebuildable
    files go (the export cache, an agent's models)."""
    if os.environ.get("COMPOFA_CACHE_DIR"):
        return Path(os.environ["COMPOFA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "compofa"
