"""A table's SQLite file: connections that touch nothing they should not, errors that say what to do, one writer.

Why each piece exists:

- SQLite keeps a WAL-mode file's recent commits in ``TABLE-wal`` (indexed by
  ``TABLE-shm``). A plain read-only connection creates both files beside the
  table and leaves them there; on read-only media it cannot create them and
  fails with "unable to open database file". So a reading connection is made
  read-write where the table and its folder are writable (SQLite then removes
  both files when the last connection closes, and the table's bytes do not
  change), and elsewhere read-only, declared immutable when no ``-wal`` exists
  (nothing else can be writing to it then).
- The first look at a file (`probe_uri`) never creates anything, so a file
  that is refused is left exactly as it was.
- The errors the environment causes (a full disk, read-only storage, a
  damaged file, another process's lock) arrive from sqlite3 as generic
  `DatabaseError`s, from any query. `TableConnection` turns them into
  `TableError`s that name the table and say what to do; errors of SQL itself
  (a bug) pass through unchanged.
- Every process that writes a table holds its writer lock (`WriterLock`), a
  file ``TABLE.lock`` locked with flock and naming the holder; a second writer
  is refused at once rather than interleaving with the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compofa.errors import CompofaError


class TableError(CompofaError):
    """A table file that cannot be used (not a table, corrupt, newer, unwritable)."""


class TableBusyError(CompofaError):
    """Another process is writing to the table."""


class TableMismatchError(CompofaError):
    """Measurements that must not be mixed (different devices or settings, accuracies of different weights)."""


def companions(path: Path) -> tuple[Path, Path]:
    """The ``-wal`` and ``-shm`` files SQLite keeps beside a WAL-mode table while it is written."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def writable_place(path: Path) -> bool:
    """Whether the file (if it exists) and its folder can be written."""
    folder = path.parent if str(path.parent) else Path(".")
    return os.access(folder, os.W_OK | os.X_OK) and (not path.exists() or os.access(path, os.W_OK))


def _uri(path: Path, mode: str, immutable: bool = False) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}" + ("&immutable=1" if immutable else "")


def probe_uri(path: Path) -> str:
    """A read-only URI for `path` that creates no file beside it (see the module docstring)."""
    wal, shm = companions(path)
    if not wal.exists():
        return _uri(path, "ro", immutable=True)
    if not shm.exists() and not writable_place(wal):
        raise TableError(
            f"table {str(path)!r} keeps its latest measurements in {wal.name}, but {shm.name} is missing and the "
            f"folder is read-only; copy the table together with {wal.name} to a writable folder"
        )
    return _uri(path, "ro")


# Primary SQLite result codes (https://sqlite.org/rescode.html) of the errors the environment causes.
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 3, 5, 6, 8, 10, 11, 13, 14, 26
# Python < 3.11 gives no error code: the same conditions by their message.
_CODES_BY_MESSAGE = (
    ("disk is full", _FULL), ("readonly", _READONLY), ("locked", _BUSY), ("malformed", _CORRUPT),
    ("not a database", _NOTADB), ("disk i/o error", _IOERR), ("unable to open", _CANTOPEN),
)


def _result_code(error: sqlite3.DatabaseError) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(error).lower()
    return next((value for fragment, value in _CODES_BY_MESSAGE if fragment in text), None)


def translate(error: sqlite3.DatabaseError, path: Path) -> Exception:
    """The `TableError` for an error the environment caused, or `error` itself (a bug) otherwise."""
    if type(error) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return error  # integrity, programming and interface errors are ours to fix
    name, code = repr(str(path)), _result_code(error)
    if code == _FULL:
        return TableError(f"the disk holding table {name} is full ({error}); what was measured before is kept: "
                          "free some space and rerun")
    if code in (_READONLY, _PERM):
        return TableError(f"table {name} cannot be written ({error}): it or its folder is read-only; "
                          "copy it to a writable folder")
    if code in (_BUSY, _LOCKED):
        return TableBusyError(f"table {name} is locked by another process ({error}); wait for it to finish and rerun")
    if code in (_CORRUPT, _NOTADB):
        return TableError(f"table {name} is corrupt ({error}); restore it from a copy, or write to a new table")
    if code == _IOERR and _nearly_full(path):  # SQLite's shared memory file could not grow
        return TableError(f"the disk holding table {name} is full ({error}); free some space and rerun")
    if code == _IOERR:
        return TableError(f"reading or writing table {name} failed ({error}); check the disk and rerun")
    if code == _CANTOPEN:
        return TableError(f"cannot open table {name} ({error})")
    return error


def _nearly_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path.parent if str(path.parent) else ".")
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 1 << 20


class TableCursor(sqlite3.Cursor):
    """A cursor whose environmental errors are `TableError`s (rows are read lazily, so fetching can fail too)."""

    def _fail(self, error: sqlite3.DatabaseError) -> Exception:
        connection = self.connection
        # A failed statement that stays referenced (by the traceback, through this cursor) keeps SQLite from
        # closing the file when the connection closes, and with it the -wal/-shm: let go of it now.
        with contextlib.suppress(sqlite3.Error):
            self.close()
        return translate(error, connection.path if isinstance(connection, TableConnection) else Path("?"))

    def execute(self, sql: str, parameters: Any = (), /) -> TableCursor:
        try:
            super().execute(sql, parameters)
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None
        return self

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> TableCursor:
        try:
            super().executemany(sql, parameters)
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None
        return self

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        try:
            return super().fetchmany(size if size is not None else self.arraysize)
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as error:
            raise self._fail(error) from None


class TableConnection(sqlite3.Connection):
    """A connection to one table file; see `TableCursor`."""

    path: Path = Path("?")

    def cursor(self, factory: Any = None) -> TableCursor:  # type: ignore[override]
        return super().cursor(factory or TableCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> TableCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> TableCursor:
        return self.cursor().executemany(sql, parameters)

    def close(self) -> None:
        try:  # the last connection to close checkpoints the WAL into the file: it can meet a full disk
            super().close()
        except sqlite3.DatabaseError as error:
            raise translate(error, self.path) from None


def _connect(path: Path, uri: str) -> TableConnection:
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, factory=TableConnection)
    except sqlite3.DatabaseError as error:
        raise translate(error, path) from None
    assert isinstance(connection, TableConnection)
    connection.path = path
    return connection


def connect(path: Path, write: bool) -> TableConnection:
    """A connection to the table at `path`: read-write (created if missing) to write, else to read."""
    if not write and not writable_place(path):
        return _connect(path, probe_uri(path))
    # Reading read-write too: SQLite removes the -wal/-shm it makes when the last connection closes.
    existed = [companion.exists() for companion in companions(path)]
    connection = _connect(path, _uri(path, "rwc" if write else "rw"))
    try:
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # makes a WAL file's -wal/-shm
        return connection
    except TableError:
        # They could not be made (a full disk): take away what this attempt left; a reader reads the file as it is.
        with contextlib.suppress(sqlite3.DatabaseError):
            sqlite3.Connection.close(connection)
        for companion, was_there in zip(companions(path), existed):
            if not was_there:
                companion.unlink(missing_ok=True)
        if write or any(existed):
            raise
        return _connect(path, probe_uri(path))


class WriterLock:
    """The one-writer lock of a table: ``TABLE.lock``, held with flock, naming the process that holds it."""

    #: Attempts at taking the lock when its file is replaced under us (a holder removing it as it ends).
    ATTEMPTS = 20

    def __init__(self, table: Path) -> None:
        self.table = table
        self.path = table.with_name(table.name + ".lock")
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock, or raise `TableBusyError` at once naming who holds it."""
        for _ in range(self.ATTEMPTS):
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise TableError(f"cannot lock table {str(self.table)!r} for writing: {error.strerror}") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(descriptor, 200).decode(errors="replace").strip() or "another process"
                os.close(descriptor)
                raise TableBusyError(
                    f"table {str(self.table)!r} is being written by {owner}; wait for it to finish, "
                    "or use another table"
                ) from None
            except OSError as error:
                os.close(descriptor)
                raise TableError(f"cannot lock table {str(self.table)!r} for writing: {error.strerror}") from None
            # The holder before us removes the file as it ends: a lock on a file no longer at this path guards nothing.
            try:
                current = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self._descriptor = descriptor
                try:  # who holds it, for the message a second writer gets; on a full disk it stays unnamed
                    os.ftruncate(descriptor, 0)
                    os.write(descriptor, f"process {os.getpid()} ({_command()})".encode())
                except OSError:
                    pass
                return
            os.close(descriptor)
        raise TableBusyError(f"could not lock table {str(self.table)!r}: its lock file kept changing; rerun")

    def release(self) -> None:
        if self._descriptor is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so no one locks the file we remove
        except OSError:
            pass
        finally:
            os.close(self._descriptor)
            self._descriptor = None


def _command() -> str:
    """What this process is, for the message a second writer gets (``compofa profile``)."""
    words = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:2]]
    return " ".join(word for word in words if word)
