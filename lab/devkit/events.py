"""Device events as JSON lines (E4): one object per line, appended atomically.

Several device processes (and the runner) append to the same file, so every event is one
os.write() on an O_APPEND descriptor: the kernel appends it whole, lines never interleave.
The engine reads the file with lab.matrix.jsonl (devices only write). describe() says an event in
words and read() reads the file on from an offset: the shells (`ftlab shell`, `ftlab course shell`)
and the live page (lab.network.live) use them, from every layer above the devices.
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


# -- reading them, in words (the shells' `events`, the live page) ------------------------------------

#: What a device did, per event type, where the event's own fields complete the sentence.
_WORDS = {"pinhole-open": "opened a pinhole", "pinhole-used": "let a connection through its pinhole",
          "pinhole-expired": "closed an unused pinhole", "mapping-open": "opened a NAT mapping",
          "mapping-used": "used a NAT mapping", "mapping-expired": "removed an unused NAT mapping",
          "ready": "is ready", "ignored": "ignored an announcement", "error": "reported an error"}
_NOT_SAID = {"ts", "device", "type", "program"}


def describe_drop(e: dict) -> str:
    """`fw dropped tcp 198.51.100.10:40001 -> 203.0.113.10:60005 [S] (no pinhole)`: the packet and why
    (a reason names the rule: `dropped by fw.rules:9: -A FORWARD ...`); the rule when no reason is given."""
    flags = f" [{e['flags']}]" if e.get("flags") else ""
    why = e.get("reason") or e.get("rule")
    return (f"{e.get('device', '?')} dropped {e.get('proto', 'tcp')} {e.get('src', '?')}:{e.get('sport', '?')}"
            f" -> {e.get('dst', '?')}:{e.get('dport', '?')}{flags}" + (f" ({why})" if why else ""))


def describe(e: dict) -> str:
    """One device event in words: what the device saw or did (commands seen and rewritten, TLS, CCC,
    mappings, pinholes, drops with their packet and rule). The one wording of events: the shells'
    `events` command and the live page both say it so."""
    kind = e.get("type", "?")
    device = e.get("device", "?")
    if kind == "drop":
        return describe_drop(e)
    if kind == "rewrite":
        before, after = e.get("before") or e.get("old"), e.get("after") or e.get("new")
        if before is not None and after is not None:
            return (f"{device} saw {str(before).strip()!r} and rewrote it: {str(after).strip()!r}"
                    + (f" (control connection {e['conn']})" if e.get("conn") else ""))
    if kind == "tls-detected":
        way = {"c2s": "from the client", "s2c": "from the server"}.get(str(e.get("direction")), "")
        return f"{device} saw TLS on the control connection {e.get('conn', '')} {way}: it cannot read it any more"
    if kind == "ccc":
        return f"{device} saw CCC: the control connection is in clear again, it reads the commands"
    if kind == "ready" and e.get("program"):       # a node with several programs says which is ready
        device = f"{device} ({e['program']})"
    said = _sentence(kind, e)
    if said is not None:
        return f"{device} {_WORDS[kind]}{said}"
    rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in _NOT_SAID and v not in (None, "", [], {}))
    return f"{device} {_WORDS.get(kind, kind)}" + (f": {rest}" if rest else "")


def _sentence(kind: str, e: dict) -> str | None:
    """The rest of the sentence of a pinhole, mapping, ignored or error event whose fields are the
    devices' own (nat/alg.py, firewall/dynamic.py); None for any other (then its fields are listed)."""
    on = f" (control connection {e['conn']})" if e.get("conn") else ""
    if kind.startswith("pinhole-") and all(e.get(k) not in (None, "") for k in ("src", "dst", "dport")):
        also = f" (or {', '.join(map(str, e['also']))})" if e.get("also") else ""
        life = f" for {e['lifetime']:g} s" if isinstance(e.get("lifetime"), int | float) else ""
        sport = f":{e['sport']}" if e.get("sport") not in (None, "") else ""
        why = ", replaced by a newer one" if e.get("replaced") else ""
        said = f" in {str(e['line']).strip()!r}" if e.get("line") else ""
        return f": {e['src']}{sport} -> {e['dst']}{also}:{e['dport']}{life}{why}" + (
            f", announced{said} on the control connection {e['conn']}" if e.get("conn") else "")
    if kind.startswith("mapping-") and e.get("public") and e.get("private"):
        peer = f" for {e['peer']}" if e.get("peer") else ""
        return f": {e['public']} -> {e['private']}{peer}" + (", replaced by a newer one" if e.get("replaced") else "")
    if kind == "ignored" and (e.get("line") or e.get("message")):
        line = f" {str(e['line']).strip()!r}" if e.get("line") else ""
        return f"{line}{on}: {e.get('message') or 'nothing opened'}"
    if kind == "error" and e.get("message"):
        return f"{on}: {e['message']}"
    return None


def read(path: str | Path, start: int = 0) -> tuple[list[dict], int]:
    """The events appended to `path` since byte `start`, and the offset to read on from: whole lines
    only (a line still being written waits for the next read; one that is not JSON is skipped)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], start
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out, start + end
