"""Waiting until something the lab started is ready: the one polling loop of the engine.

    wait_until(lambda: "listening on" in log.read_text(), timeout=10, what="the FTP server in server",
               proc=proc, log=log)

A program that exits before it is ready, or is not ready in time, is a lab failure (LabError)
that names it and shows the tail of its log: never a hang, never a silent retry.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lab.errors import LabError

POLL = 0.05


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a log, for an error message ("" when there is no log)."""
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def file_shows(path: Path, text: str) -> Callable[[], bool]:
    """A readiness check: the file exists and contains `text`."""
    needle = text.encode()

    def check() -> bool:
        try:
            return needle in path.read_bytes()
        except FileNotFoundError:
            return False
    return check


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str,
               proc: subprocess.Popen | None = None, log: Path | None = None, poll: float = POLL) -> None:
    """Poll ready() until it is true; LabError if `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise LabError(f"{what} exited with code {proc.returncode} before it was ready: {log_tail(log)}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} was not ready within {timeout:g} s: {log_tail(log)}")
        time.sleep(poll)
