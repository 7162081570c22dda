"""``-o FILE``: the format a file's extension names, and ``-o -`` as standard output.

The library writes files whole (`compofa.fileio.atomic_output`). Standard output
gets the same guarantee: the library writes a temporary file, and only a
complete one is copied to stdout, so a refused or interrupted command prints
nothing rather than half a file.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from compofa.cli.common import OptionError
from compofa.fileio import atomic_output, check_output_path

#: The -o value that means standard output.
STDOUT = "-"


def to_stdout(output: str | None) -> bool:
    return output == STDOUT


def output_format(output: str, chosen: str | None, formats: Sequence[str]) -> str:
    """The format of an -o file: --format when given, else its extension's (the first format for stdout); an
    extension of no format is one line naming the ones there are."""
    if chosen is not None:
        return chosen
    if to_stdout(output):
        return formats[0]
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix in formats:
        return suffix
    names = " or ".join(f".{name}" for name in formats)
    raise OptionError(f"cannot tell the format of {output!r} from its extension: name it {names}, or give its format "
                      f"({', '.join(formats)})", option="file_format")


def check_output(output: str) -> None:
    """Refuse, before any work, an -o file that cannot be written (standard output always can)."""
    if not to_stdout(output):
        check_output_path(output)


@contextmanager
def written_output(output: str, suffix: str, binary: bool = False) -> Iterator[Path]:
    """The path a library writer should write the -o file to.

    For a file whose extension is `suffix`, the file itself. For ``-``, or a
    file of another extension chosen with --format, a temporary file named
    with `suffix` (the library picks formats by it), copied whole to standard
    output or atomically to the file once written. Binary data is refused on a
    terminal, where it would only garble the screen.
    """
    staged = to_stdout(output) or Path(output).suffix.lower() != suffix
    if not staged:
        yield Path(output)
        return
    if to_stdout(output) and binary and sys.stdout.isatty():
        raise OptionError(f"-o - would print a binary {suffix} file on the terminal: redirect it (> FILE) or pipe "
                          "it", option="output")
    if not to_stdout(output):
        check_output_path(output)
    with tempfile.TemporaryDirectory(prefix="compofa-output-") as folder:
        path = Path(folder) / f"output{suffix}"
        yield path
        _deliver(path, output)


def _deliver(path: Path, output: str) -> None:
    """Copy the finished file at `path` to standard output or, atomically, to the file `output`."""
    if to_stdout(output):
        sys.stdout.flush()  # text printed before goes first
        stream = sys.stdout.buffer
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, stream)
        stream.flush()
    else:
        with open(path, "rb") as source, atomic_output(output) as target:
            shutil.copyfileobj(source, target)


def wrote(output: str, what: str) -> None:
    """`wrote WHAT to FILE` on stdout, or on stderr when stdout carries the file itself."""
    if to_stdout(output):
        click.echo(f"wrote {what} to standard output", err=True)
    else:
        click.echo(f"wrote {what} to {output}")
