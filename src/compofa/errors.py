"""Typed errors raised by the library.

The library never prints or exits; it raises one of these. The CLI turns any
`CompofaError` into a one-line message and exit code 2, so every message here is
written to be read on its own: what is wrong, and what to do about it.
"""

from __future__ import annotations


class CompofaError(Exception):
    """Base class of every error the CLI reports as a one-line message.

    The message states the problem in the library's terms. `option` names the
    setting to change (a parameter name such as ``"device_id"``, or several):
    the CLI adds the flag of the command that was run (``--device-id``), so
    library code never speaks of command-line flags.
    """

    def __init__(self, *args: object, option: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.option: tuple[str, ...] = (option,) if isinstance(option, str) else tuple(option or ())


class SpecError(CompofaError, ValueError):
    """A subnet spec is malformed or lies outside its design space."""


class UnknownSpaceError(CompofaError, KeyError):
    """A design space name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class WidthError(CompofaError, ValueError):
    """A width multiplier the family cannot be built at."""


class SpaceTooLargeError(CompofaError):
    """Enumeration was asked of a space too large to enumerate."""


class RegistryError(CompofaError):
    """A registry was given a duplicate or invalid entry."""


class CheckpointError(CompofaError):
    """A checkpoint cannot be read or does not fit the supernet."""


class ExportError(CompofaError):
    """A model could not be exported or written."""


class OutputPathError(CompofaError):
    """An output path cannot be written (missing folder, directory, read-only)."""
