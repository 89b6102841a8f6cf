"""Errors that the CLI turns into one clear message and an exit code (never a traceback).

The basic three (LabError exit 3, InputError exit 2 with its Problems) and the way every input file
is read are defined once, in the bottom layer `lab.ftps.errors`; the engine adds its own kinds here.
"""

from __future__ import annotations

from lab.ftps.errors import MAX_INPUT_BYTES, InputError, LabError, Problem, read_input

__all__ = ["MAX_INPUT_BYTES", "InputError", "LabError", "MissingFeature", "NotRoot", "Problem", "read_input"]


class MissingFeature(LabError):
    """A kernel feature or a tool the lab needs is not there (named in the message)."""


class NotRoot(LabError):
    exit_code = 2
