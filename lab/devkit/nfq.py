"""The process side shared by every device program: config, NFQUEUE loop, READY, SIGTERM."""

from __future__ import annotations

import argparse
import json
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.devkit.ctrlstream import Receipt


def load_config(argv: list[str] | None, prog: str) -> dict:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", required=True, type=Path, help="JSON config written by LabNet")
    args = parser.parse_args(argv)
    try:
        return json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        print(f"{prog}: cannot read config {args.config}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def receipt(pkt) -> Receipt:
    """How a queued packet reached this router: its ingress interface and the neighbour's
    link-layer address (what lab.devkit.ctrlstream checks a segment's side against)."""
    try:
        hw = pkt.get_hw()
    except Exception:       # no link-layer header (a tunnel): the interface alone
        hw = None
    return Receipt(side=(pkt.indev, bytes(hw[:6]) if hw else None))


def serve(queues: dict[int, Callable], tick: Callable[[], None] | None = None,
          period: float = 0.05, on_ready: Callable[[], None] | None = None,
          readers: dict[int, Callable[[], None]] | None = None) -> None:
    """Bind each queue to its callback, print READY, handle packets until SIGTERM/SIGINT.

    `tick` runs every `period` seconds (expiry, counters) between packets. `readers`: other file
    descriptors to watch (fd -> what to call when it is readable), e.g. a netlink log group.
    """
    from netfilterqueue import NetfilterQueue

    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bound = []
    try:
        for num, callback in queues.items():
            q = NetfilterQueue()
            q.bind(num, callback, max_len=4096)
            bound.append(q)
        fds = {q.get_fd(): q for q in bound}
        readers = dict(readers or {})
        print("READY", flush=True)
        if on_ready:
            on_ready()
        last_tick = time.monotonic()
        while not stop:
            try:
                ready, _, _ = select.select([*fds, *readers], [], [], period)
            except InterruptedError:
                continue
            for fd in ready:
                if fd in fds:
                    fds[fd].run(block=False)
                else:
                    readers[fd]()
            if tick and time.monotonic() - last_tick >= period:
                last_tick = time.monotonic()
                tick()
    finally:
        for q in bound:
            q.unbind()
