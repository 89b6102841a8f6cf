"""Errors that the CLI turns into one clear message and an exit code (never a traceback)."""

from __future__ import annotations

from dataclasses import dataclass


class LabError(Exception):
    """The lab itself could not do its job (exit code 3)."""

    exit_code = 3


class MissingFeature(LabError):
    """A kernel feature or a tool the lab needs is not there (named in the message)."""


class NotRoot(LabError):
    exit_code = 2


@dataclass
class Problem:
    """One problem in an input file, with its place."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [p for p in (where, self.field, self.message) if p]
        return ": ".join(parts)


class InputError(LabError):
    """Bad input (a file, an argument): exit code 2, every problem listed with its place."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("", 0, "", problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
