"""Errors that the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class LedError(Exception):
    """A user-facing failure: bad input, a missing file, an impossible option."""


class InputError(LedError):
    """Bad content in an input file, located by file and line (or record id)."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class UsageError(LedError):
    """A bad command-line option (type, range, a missing required one); `prog` names the command."""

    def __init__(self, message: str, prog: str | None = None):
        self.prog = prog
        super().__init__(message)
