"""Device events as JSON lines (E4): one object per line, appended atomically.

Several device processes (and the runner) append to the same file, so every event is one
os.write() on an O_APPEND descriptor: the kernel appends it whole, lines never interleave.
The engine reads the file with lab.matrix.jsonl (devices only write).
"""

from __future__ import annotations

import json
import os
import time
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
