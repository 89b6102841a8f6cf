"""Errors that a command turns into one clear message and an exit code (never a traceback), and the
one way every input file is read.

These live with the FTPS endpoints because `lab/ftps` is the bottom layer and stands alone; the
engine (`lab.errors`) uses the same classes, so a problem in an FTP.DATA file and one in a topology
file look and exit alike.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

#: The largest input file any command reads (topology, scenario, FTP.DATA, expectations, baseline).
#: Real ones are a few KiB; the cap keeps /dev/zero or a stray log from eating memory.
MAX_INPUT_BYTES = 4 * 1024 * 1024


class LabError(Exception):
    """The tool itself could not do its job (exit code 3)."""

    exit_code = 3


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


def read_input(path: str | Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of an input file, or an InputError naming the file and what is wrong with it.

    Only a regular file (or a symlink to one) of at most `max_bytes` bytes of UTF-8 is read: a
    directory, a FIFO (which would block) or a device such as /dev/zero (which never ends) is refused
    before a byte is read, and the size is checked again while reading, so a file that grows cannot
    get past the cap.
    """
    name = str(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError([Problem(name, 0, "", f"no such {what}")]) from None
    except IsADirectoryError:
        raise InputError([Problem(name, 0, "", f"is a directory, not a {what}")]) from None
    except OSError as e:
        raise InputError([Problem(name, 0, "", f"cannot read this {what}: {e.strerror}")]) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError([Problem(name, 0, "", f"is a directory, not a {what}")])
        if not stat.S_ISREG(st.st_mode):
            raise InputError([Problem(name, 0, "", f"is not a regular file (a FIFO, socket or device); "
                                                   f"give a {what}")])
        if st.st_size > max_bytes:
            raise InputError([Problem(name, 0, "", f"is {st.st_size} bytes; a {what} may have at most "
                                                   f"{max_bytes}")])
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            data = f.read(max_bytes + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise InputError([Problem(name, 0, "", f"is larger than {max_bytes} bytes, the most a {what} may have")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError([Problem(name, line, "", f"is not UTF-8 text (byte {e.start})")]) from None
