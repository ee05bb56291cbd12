"""Errors that name the input at fault, for the command line to show as they are."""

from __future__ import annotations


class InputError(ValueError):
    """An input file that cannot be used, naming the file and, where it applies, the line."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
