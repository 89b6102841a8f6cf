"""Device events as JSON lines (E4): one object per line, appended atomically.

Several device processes (and the runner) append to the same file, so every event is one
os.write() on an O_APPEND descriptor: the kernel appends it whole, lines never interleave.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

TYPES = frozenset({
    "ready", "rewrite", "mapping-open", "mapping-used", "mapping-expired",
    "pinhole-open", "pinhole-used", "pinhole-expired", "tls-detected", "ccc", "drop", "error",
    # A device saw an announcement and deliberately acted on nothing (names another host, sent by
    # the wrong side, malformed, inside a multi-line reply, rate-limited): an observation, not a
    # fault of the lab, which is what "error" means.
    "ignored",
})


class EventWriter:
    """Append events for one device: EventWriter(path, "nat-c").emit("rewrite", before=..., after=...)."""

    def __init__(self, path: str | Path | None, device: str, program: str | None = None) -> None:
        self.device = device
        self.program = program      # which program on the node (alg, dynamic, ...), when several
        self.path = Path(path) if path else None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if self.path else None

    def emit(self, type: str, **fields: object) -> dict:
        if type not in TYPES:
            raise ValueError(f"unknown event type {type!r}")
        event = {"ts": time.time(), "device": self.device, "type": type, **fields}
        if self.program:
            event.setdefault("program", self.program)
        if self._fd is not None:
            os.write(self._fd, (json.dumps(event, default=str) + "\n").encode())
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: str | Path) -> list[dict]:
    """Every complete event in the file (a torn last line is ignored)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def follow(path: str | Path, poll: float = 0.02, stop: object = None,
           from_start: bool = True) -> Iterator[dict]:
    """Yield events as they are appended (tail -f). Waits for the file to appear.

    `stop` may be a threading.Event (or anything with is_set()); the iterator ends when it is set.
    """
    path = Path(path)
    while not path.exists():
        if stop is not None and stop.is_set():
            return
        time.sleep(poll)
    with open(path, "rb") as f:
        if not from_start:
            f.seek(0, os.SEEK_END)
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                continue
            if stop is not None and stop.is_set():
                return
            time.sleep(poll)
