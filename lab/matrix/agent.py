"""The built-in client of a matrix network, kept for every cell: `python -m lab.matrix.agent`.

Starting `ftlab client` once per cell cost about 0.3 s of CPU in imports alone, 160 times a run.
The agent runs in the client node and executes the very same command - lab.ftps.cli's `client`,
its parser, its code and its `--json` result - cell after cell in one process. Each cell makes a
fresh FTPClient with its own TLS context, so nothing a cell measures carries over: no connection,
no TLS session, no statement. It also runs the throughput phase's timed transfers (`measure`).

Protocol, one JSON object per line (the worker is the only peer):

    stdin  {"cell": ["ftp://...", "--json", ..., "get", "-o", OUT]}   `ftlab client ARGS`
    stdout {"rc": 0, "stdout": "<what the command printed>", "stderr": "...",
            "conns": [{"op": "connect"|"accept"|"listen", "local": [ip, port], "remote": [ip, port]|null,
                       "ok": bool, "ts": unix time}, ...]}
           (the TCP connections the command made, as the client saw them: the cell's 5-tuples)
    stdin  {"measure": {"url": ..., "security": ..., "data": ..., "ftpdata": FILE, "ca": FILE,
                        "password": ..., "path": ..., "seconds": S}}
    stdout {"bytes": N, "seconds": S, "transfers": K} or {"error": "..."}
           ("session": NAME in the request keeps the session logged in for the next one)
    stdin  {"close": true}      quit every kept session; stdout {"closed": true}
    stdin  {"abort": "why"}     a device dropped a new connection of the running cell

An abort is what the client's own data-connection timer does when it expires, only earlier: the
worker saw the drop that decides the cell, so there is nothing left to wait for. The running
command gets a TimeoutError in whatever blocking call it is in (connect, accept, a reply), fails
at that stage and prints its result and transcript as usual.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ABORT_SIGNAL = signal.SIGUSR1


class DropDecided(TimeoutError):
    """Raised in the running command when the worker says a drop decided the cell."""


# -- the agent process -----------------------------------------------------------------------------

class _State:
    """What the signal handler may act on: abort only a command that is running, once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = False
        self.abort = False


def _client_parser() -> argparse.ArgumentParser:
    from lab.ftps import cli as ftps_cli

    parser = argparse.ArgumentParser(prog="ftlab")
    ftps_cli.register(parser.add_subparsers(dest="command"))
    return parser


class ConnRecorder:
    """The TCP connections made in this process while it is active, as the client sees them: each
    connect (also one that failed: its local port was bound and its SYN was sent), accept and
    listen, with both ends. lab.ftps knows nothing of the lab; the agent, which runs it, watches
    its sockets, so a cell's evidence can be selected by its own 5-tuples (lab.report.wire)."""

    def __init__(self) -> None:
        self.conns: list[dict] = []
        self._lock = threading.Lock()
        self._saved: dict = {}

    @staticmethod
    def _end(addr) -> list | None:
        return [str(addr[0]), int(addr[1])] if isinstance(addr, tuple) and len(addr) >= 2 else None

    def _note(self, op: str, sock: socket.socket, remote, ok: bool) -> None:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            local = self._end(sock.getsockname())
        except OSError:
            local = None
        with self._lock:
            self.conns.append({"op": op, "local": local, "remote": self._end(remote), "ok": ok,
                               "ts": round(time.time(), 6)})

    def __enter__(self) -> ConnRecorder:
        cls, rec = socket.socket, self
        self._saved = {name: getattr(cls, name) for name in ("connect", "connect_ex", "accept", "listen")}
        connect, connect_ex, accept, listen = (self._saved[n] for n in ("connect", "connect_ex", "accept", "listen"))

        def rec_connect(sock, address):
            try:
                connect(sock, address)
            except BaseException:
                rec._note("connect", sock, address, False)
                raise
            rec._note("connect", sock, address, True)

        def rec_connect_ex(sock, address):
            code = connect_ex(sock, address)
            rec._note("connect", sock, address, code == 0)
            return code

        def rec_accept(sock):
            conn, addr = accept(sock)
            rec._note("accept", conn, addr, True)
            return conn, addr

        def rec_listen(sock, *backlog):
            listen(sock, *backlog)
            rec._note("listen", sock, None, True)

        cls.connect, cls.connect_ex, cls.accept, cls.listen = rec_connect, rec_connect_ex, rec_accept, rec_listen
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self._saved.items():
            setattr(socket.socket, name, fn)


def _run_cell(parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    recorder = ConnRecorder()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), recorder:
        try:
            args = parser.parse_args(["client", *argv])
            rc = int(args.func(args) or 0)
        except SystemExit as exc:            # argparse: bad usage
            rc = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:             # noqa: BLE001 - reported as the command's own failure
            print(f"ftlab client: {type(exc).__name__}: {exc}", file=sys.stderr)
            rc = 3
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "conns": recorder.conns}


_sessions: dict[str, object] = {}     # measure's sessions, kept from one round to the next


def _session(spec: dict):
    """The logged-in FTPClient of spec["session"] (a new one if there is none)."""
    from lab.ftps.client import FTPClient
    from lab.ftps.config import ClientConfig, parse_ftpdata

    key = spec.get("session") or ""
    if key in _sessions:
        return _sessions[key]
    config = parse_ftpdata(Path(spec["ftpdata"]), "client") if spec.get("ftpdata") else ClientConfig()
    client = FTPClient(config, security=spec["security"], data=spec["data"], ca=spec.get("ca"))
    try:
        client.connect(spec["host"], int(spec["port"]))
        client.login(spec["user"], spec["password"])
    except BaseException:
        client.close()
        raise
    if key:
        _sessions[key] = client
    return client


def _quit(client) -> None:
    from lab.ftps.client import FTPError

    with contextlib.suppress(FTPError, OSError):
        client.quit()
    client.close()


def _close_sessions() -> dict:
    for client in _sessions.values():
        _quit(client)
    _sessions.clear()
    return {"closed": True}


def _measure(spec: dict) -> dict:
    """Repeated RETRs of one file over one session for `seconds`: bytes and data-flow seconds.
    A `session` key keeps the session logged in for the next round (login and TLS are not what
    is measured, and cost every round time)."""
    from lab.ftps.client import FTPError

    key = spec.get("session") or ""
    total = seconds = 0.0
    transfers = 0
    client = None
    try:
        client = _session(spec)
        deadline = time.monotonic() + float(spec["seconds"])
        while time.monotonic() < deadline:
            # /dev/null and no hash: the verdict phase checked the bytes; here only speed counts
            result = client.get(spec["path"], os.devnull, hash_inline=False)
            total += result.bytes
            seconds += result.seconds
            transfers += 1
    except FTPError as exc:
        _sessions.pop(key, None)
        if client is not None:
            client.close()
        return {"error": f"{exc.stage}: {exc.reason}"}
    if not key:
        _quit(client)
    return {"bytes": int(total), "seconds": seconds, "transfers": transfers}


def serve() -> int:
    state = _State()
    main = threading.main_thread().ident

    def on_abort(signum, frame) -> None:
        with state.lock:
            fire = state.running and state.abort
            state.abort = False
        if fire:
            raise DropDecided("a device dropped the connection (the worker ended the wait)")

    signal.signal(ABORT_SIGNAL, on_abort)
    parser = _client_parser()
    requests: list[dict] = []
    ready = threading.Condition()

    def read_stdin() -> None:
        for line in sys.stdin:
            msg = json.loads(line)
            if "abort" in msg:
                with state.lock:
                    if not state.running:
                        continue
                    state.abort = True
                signal.pthread_kill(main, ABORT_SIGNAL)
                continue
            with ready:
                requests.append(msg)
                ready.notify()
        with ready:
            requests.append({"eof": True})
            ready.notify()

    threading.Thread(target=read_stdin, daemon=True).start()
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    while True:
        with ready:
            while not requests:
                ready.wait()
            msg = requests.pop(0)
        if msg.get("eof"):
            return 0
        with state.lock:
            state.running, state.abort = True, False
        try:
            if "cell" in msg:
                reply = _run_cell(parser, msg["cell"])
            elif "measure" in msg:
                reply = _measure(msg["measure"])
            else:
                reply = _close_sessions()
        except DropDecided as exc:           # arrived outside the command's own handlers
            reply = {"rc": 3, "stdout": "", "stderr": str(exc)}
        finally:
            with state.lock:
                state.running = state.abort = False
        out.write(json.dumps(reply) + "\n")
        out.flush()


# -- the worker's side ------------------------------------------------------------------------------

@dataclass
class Agent:
    """The agent process in a node, as the worker drives it."""
    proc: subprocess.Popen
    node: str
    stopped: bool = False            # stopped by the worker (not died by itself)
    _buf: bytes = b""
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, popen, node: str, timeout: float = 20.0) -> Agent:
        """popen(argv, **kw) starts a process in `node`; returns once the agent is ready."""
        proc = popen([sys.executable, "-m", "lab.matrix.agent"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        agent = cls(proc, node)
        if agent.reply(timeout) is None:
            agent.stop()
            from lab.errors import LabError
            raise LabError(f"the client agent in {node} was not ready within {timeout:g} s")
        return agent

    def exited(self) -> str | None:
        """What ended the agent, if it has ended."""
        if self.proc.poll() is not None:
            return f"the client agent in {self.node} exited with code {self.proc.returncode}"
        return None

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def abort(self) -> None:
        try:
            self.send({"abort": "drop"})
        except OSError:
            pass

    def reply(self, timeout: float) -> dict | None:
        """The next reply line, waiting up to `timeout` s; None if none came (or the agent died)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def stop(self) -> None:
        from lab.endpoints.launch import terminate

        self.stopped = True
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        terminate(self.proc)


if __name__ == "__main__":
    sys.exit(serve())
