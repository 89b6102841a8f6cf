"""Reading JSON-lines files that another process is appending to: the devices' events.jsonl and a
matrix worker's cells.jsonl. The one reader of the engine.

    tail = JsonLines(path)              # from the current end (from_start=True: from the beginning)
    new = tail.read()                   # the complete lines appended since the last read
    every = read_all(path)

A line is complete when its newline is written: a torn last line waits for the next read. A line
that is not JSON (a writer killed mid-write and restarted) is skipped, never a crash of the reader.
"""

from __future__ import annotations

import json
from pathlib import Path


class JsonLines:
    def __init__(self, path: Path, from_start: bool = False):
        self.path = Path(path)
        self.offset = 0
        if not from_start:
            try:
                self.offset = self.path.stat().st_size
            except FileNotFoundError:
                pass
        self._pending = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def read_all(path: Path) -> list[dict]:
    """Every complete line of the file (none when it does not exist)."""
    return JsonLines(path, from_start=True).read()
