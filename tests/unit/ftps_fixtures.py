"""What the ftps unit tests share: a test PKI, a started server, a hand-driven control connection.

Imported by test_ftps_protocol/security/reliability/statements (tests/unit is on sys.path; there
is deliberately no tests/__init__.py). Each test file keeps its own fixtures, with their scopes,
and builds them from these pieces."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from lab.ftps import pki
from lab.ftps.config import ServerConfig
from lab.ftps.grammar import Reply, ReplyReader, format_command
from lab.ftps.server import FTPServer


def server_pki(d: Path) -> Path:
    """A CA in `d` and the certificate every test server uses (127.0.0.1 and localhost)."""
    pki.init_ca(d)
    pki.issue_server(d, "server", ips=["127.0.0.1"], dns=["localhost"])
    return d


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll cond until it holds or timeout seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def server_root(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A server root folder in tmp_path holding `files` (name -> content)."""
    root = tmp_path / "root"
    root.mkdir()
    for name, content in files.items():
        (root / name).write_bytes(content)
    return root


def start_ftps_server(pkidir: Path, root: Path, users: dict[str, str], *, cert: str = "server",
                      ca: bool = True, implicit: bool = True, **statements) -> FTPServer:
    """A started FTPServer on 127.0.0.1 (random ports) whose log events are kept in `.events`.

    `ca`: trust the test CA for client certificates; `implicit`: open the implicit-TLS port too.
    LOGINDELAY is 0 unless a statement says otherwise, so failed logins do not slow the tests."""
    statements.setdefault("LOGINDELAY", 0)
    events: list[dict] = []
    srv = FTPServer(ServerConfig(**statements), root, users,
                    cert=pkidir / f"{cert}.pem", key=pkidir / f"{cert}.key",
                    ca=pkidir / "ca.pem" if ca else None, listen=("127.0.0.1", 0),
                    tls_listen=("127.0.0.1", 0) if implicit else None, log=events.append)
    srv.events = events
    return srv.start()


class Servers:
    """The servers one test starts (`start(**statements)`), all with the same root, users and PKI;
    `close()` closes every one of them."""

    def __init__(self, pkidir: Path, root: Path, users: dict[str, str], **options):
        self.pkidir, self.root, self.users, self.options = pkidir, root, users, options
        self.started: list[FTPServer] = []

    def start(self, **statements) -> FTPServer:
        srv = start_ftps_server(self.pkidir, self.root, self.users, **self.options, **statements)
        self.started.append(srv)
        return srv

    def close(self) -> None:
        for srv in self.started:
            srv.close()


def event_text(srv: FTPServer) -> str:
    """The server's log lines as one text, to look for what it said about a session."""
    return "\n".join(str(e.get("line", "")) for e in srv.events)


class RawControl:
    """A hand-driven control connection, for what the lab's client would not send.

    `open` makes the socket (a subclass may wrap it in TLS before the greeting is read)."""

    def __init__(self, addr: tuple[str, int], greet: bool = True):
        self.sock = self.open(addr)
        self.reader = ReplyReader()
        self.pending: list[Reply] = []
        self.greeting = self.reply() if greet else None

    def open(self, addr: tuple[str, int]) -> socket.socket:
        return socket.create_connection(addr, timeout=10)

    def reply(self) -> Reply:
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the control connection")
            self.pending += self.reader.feed(chunk)
        return self.pending.pop(0)

    def cmd(self, line: str) -> Reply:
        verb, _, arg = line.partition(" ")
        self.sock.sendall(format_command(verb, arg))
        return self.reply()

    def login(self, user: str = "alice", password: str = "pw") -> Reply:
        """USER, PASS and, once logged in, TYPE I: the tests move binary payloads, and TYPE A
        (RFC 959's default) would add a CR before every LF byte."""
        self.cmd(f"USER {user}")
        reply = self.cmd(f"PASS {password}")
        if reply.code == 230:
            self.cmd("TYPE I")
        return reply

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
