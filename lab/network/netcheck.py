"""Plain-TCP reachability checks between lab nodes (no FTP needed).

A listener accepts on some ports and answers every connection with the address it sees the
peer as, then closes: so one connect tells both "did it get through" and "as whom" (NAT).

    python -m lab.network.netcheck listen PORT...            # prints LISTENING, then serves forever
    python -m lab.network.netcheck connect [--timeout S] [--sport P] ADDR:PORT...   # prints one JSON list

From Python, with a running LabNet:
    with listening(net, "server", [21, 22]):
        results = connect(net, "client", [("203.0.113.1", 21)])   # [{"ok": True, "seen_as": ...}]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:                 # run as a program inside nodes: no Mininet import there
    from lab.network.net import LabNet

LISTENING = "LISTENING"


def serve(ports: list[int]) -> None:
    """Listen on every port; tell each peer the address it came from (what NAT made of it)."""
    socks = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        socks.append(s)
    print(LISTENING, flush=True)

    def accept(s: socket.socket) -> None:
        while True:
            conn, peer = s.accept()
            with conn:
                conn.sendall(f"{peer[0]}:{peer[1]}\n".encode())

    threads = [threading.Thread(target=accept, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    while True:
        time.sleep(3600)


def try_connect(addr: str, port: int, timeout: float, sport: int = 0) -> dict:
    """One bounded TCP connect; on success read what the listener saw as our address."""
    result = {"to": f"{addr}:{port}", "ok": False, "seen_as": None, "error": None}
    try:
        with socket.socket() as s:
            if sport:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", sport))
            s.settimeout(timeout)
            s.connect((addr, port))
            seen = s.makefile().readline().strip()
            result.update(ok=True, seen_as=seen.rsplit(":", 1)[0] if seen else None)
    except OSError as exc:
        result["error"] = str(exc) or type(exc).__name__
    return result


def connect_all(targets: list[tuple[str, int]], timeout: float, sport: int = 0) -> list[dict]:
    """Connect to every target in parallel (so n blocked ports cost one timeout, not n).

    With a fixed source port the connects run one after the other (one socket per port).
    """
    with ThreadPoolExecutor(max_workers=1 if sport else max(1, len(targets))) as pool:
        return list(pool.map(lambda t: try_connect(t[0], t[1], timeout, sport), targets))


# -- from a LabNet ----------------------------------------------------------------------------

@contextlib.contextmanager
def listening(net: LabNet, node: str, ports: list[int], ready_timeout: float = 5.0) -> Iterator[None]:
    """Run a listener in `node` on `ports` for the duration of the block."""
    proc = net.popen(node, [sys.executable, "-m", "lab.network.netcheck", "listen", *map(str, ports)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(proc, ready_timeout)
        if line.strip() != LISTENING:
            proc.kill()
            raise RuntimeError(f"{node}: listener on {ports} failed: {line}{proc.stderr.read()}")
        yield
    finally:
        proc.kill()
        proc.wait()


def _readline(proc, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def connect(net: LabNet, node: str, targets: list[tuple[str, int]], timeout: float = 1.0,
            sport: int = 0) -> list[dict]:
    """try_connect() from inside `node` to every target (in parallel; see connect_all)."""
    argv = [sys.executable, "-m", "lab.network.netcheck", "connect", "--timeout", str(timeout), "--sport", str(sport),
            *(f"{a}:{p}" for a, p in targets)]
    done = net.run(node, argv, timeout=timeout + 10)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.network.netcheck")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_listen = sub.add_parser("listen")
    p_listen.add_argument("ports", nargs="+", type=int)
    p_connect = sub.add_parser("connect")
    p_connect.add_argument("--timeout", type=float, default=1.0)
    p_connect.add_argument("--sport", type=int, default=0, help="source port to bind (0: any)")
    p_connect.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "listen":
        serve(args.ports)
        return 0
    targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in args.targets]
    print(json.dumps(connect_all(targets, args.timeout, args.sport)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
