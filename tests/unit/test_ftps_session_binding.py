"""Issue 18 item 2, "a protected transfer nobody else can take": a protected data connection must
resume the TLS session of its own control connection, not just some session of the server.

The theft: a thief that never logs in sends AUTH TLS on its own control connection (so it holds a
session of the same server, whose session cache is shared), connects to the victim's passive port
(or is where the victim's PORT points) and resumes *its own* session there. Before session binding
the server sent it the victim's file under SECURE_SESSION_REUSE REQUIRED, NOREDIRECT or not (one
address: NAT, one host), and told the victim 226. Real server, real TLS (stdlib ssl for the raw
peers, an independent TLS stack), on 127.0.0.1 only. The lab client's own check is tested against
hand-made servers (a data connection that does not resume, one that resumes another session)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from pathlib import Path

import pytest
from ftps_fixtures import RawControl, Servers, event_text, server_pki, wait_for

from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig
from lab.ftps.grammar import Reply, format_command, parse_227
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(40)

DATA = bytes(range(256)) * 4096                   # 1 MiB: more than any socket buffer holds
DATA_SHA = hashlib.sha256(DATA).hexdigest()
VERSIONS = {"TLSV1.2": ssl.TLSVersion.TLSv1_2, "TLSV1.3": ssl.TLSVersion.TLSv1_3}


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    return server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "secret.bin").write_bytes(DATA)
    return r


@pytest.fixture
def serve(pkidir, root):
    servers = Servers(pkidir, root, {"alice": "pw"}, implicit=False)
    yield servers.start
    servers.close()


class Raw(RawControl):
    """A hand-driven control connection with stdlib ssl; `.ctx` is kept for its data connections
    (stdlib ssl resumes a session only in the context that made it)."""

    def __init__(self, addr, pkidir: Path, version: str):
        self.ctx = ssl.create_default_context(cafile=str(pkidir / "ca.pem"))
        self.ctx.maximum_version = VERSIONS[version]
        super().__init__(addr)

    def auth(self) -> None:
        assert self.cmd("AUTH TLS").code == 234
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname="localhost")
        # TLS 1.3: the session (ticket) comes after the handshake; a reply brings it along
        assert self.cmd("NOOP").code == 200

    @property
    def session(self) -> ssl.SSLSession:
        return self.sock.session

    def protect(self) -> None:
        """AUTH TLS, log in, PBSZ 0, PROT P: a victim ready for protected transfers."""
        self.auth()
        assert self.login().code == 230
        assert self.cmd("PBSZ 0").code == 200
        assert self.cmd("PROT P").code == 200

    def passive(self) -> tuple[str, int]:
        r = self.cmd("PASV")
        assert r.code == 227, r
        hp = parse_227(r.text)
        return hp.host, hp.port

    def wrap(self, sock: socket.socket, session: ssl.SSLSession | None) -> ssl.SSLSocket:
        """The FTP client is the TLS client of a data connection, also in active mode (RFC 4217)."""
        return self.ctx.wrap_socket(sock, server_hostname="localhost", session=session)


@pytest.fixture
def raw(pkidir):
    opened: list[Raw] = []

    def connect(srv: FTPServer, version: str = "TLSV1.2") -> Raw:
        r = Raw(srv.address, pkidir, version)
        opened.append(r)
        return r
    yield connect
    for r in opened:
        r.close()


def _take(thief: Raw, sock: socket.socket, got: dict) -> None:
    """The thief's side of a data connection: resume its own session, read what comes."""
    body = bytearray()
    try:
        sock.settimeout(10)
        tls = thief.wrap(sock, thief.session)
        got["reused"] = tls.session_reused
        while chunk := tls.recv(65536):
            body += chunk
    except (ssl.SSLError, OSError) as exc:
        got["error"] = repr(exc)
    finally:
        got["bytes"] = bytes(body)
        sock.close()


def _retry_works(victim: Raw) -> None:
    """The victim's own transfer afterwards: its session, its file, 226."""
    host, port = victim.passive()
    victim.sock.sendall(format_command("RETR", "secret.bin"))
    data = socket.create_connection((host, port), timeout=10)
    assert victim.reply().code == 150
    tls = victim.wrap(data, victim.session)
    body = bytearray()
    while chunk := tls.recv(65536):
        body += chunk
    assert tls.session_reused
    tls.close()
    assert victim.reply().code == 226
    assert hashlib.sha256(body).hexdigest() == DATA_SHA


def _refused(victim_final: Reply, got: dict, srv: FTPServer) -> None:
    assert got["bytes"] == b"", f"the thief got {len(got['bytes'])} bytes of the victim's file"
    assert victim_final.code in (425, 522), victim_final
    assert victim_final.code != 226
    assert "not this control connection's" in event_text(srv)


# -- (a) passive: the thief connects to the victim's passive port --------------------------------------

@pytest.mark.parametrize("version", ["TLSV1.2", "TLSV1.3"])
@pytest.mark.parametrize("policy", ["REQUIRED", "ALLOWED"])
def test_passive_theft_by_resuming_another_session(serve, raw, version, policy):
    srv = serve(SECURE_SESSION_REUSE=policy, PASSIVEDATACONN="NOREDIRECT", TLSMAXVERSION=version)
    victim, thief = raw(srv, version), raw(srv, version)
    victim.protect()
    thief.auth()                                   # never logged in
    host, port = victim.passive()
    data = socket.create_connection((host, port), timeout=10)     # the thief is first
    got: dict = {}
    t = threading.Thread(target=_take, args=(thief, data, got), daemon=True)
    t.start()
    victim.sock.sendall(format_command("RETR", "secret.bin"))
    first = victim.reply()
    final = victim.reply() if first.code == 150 else first
    t.join(15)
    _refused(final, got, srv)
    _retry_works(victim)


def test_passive_theft_of_an_upload_writes_nothing(serve, raw, root):
    """The same on STOR: the thief's bytes never reach the file, and the file is not truncated."""
    srv = serve(SECURE_SESSION_REUSE="REQUIRED", PASSIVEDATACONN="NOREDIRECT")
    victim, thief = raw(srv), raw(srv)
    victim.protect()
    thief.auth()
    host, port = victim.passive()
    data = socket.create_connection((host, port), timeout=10)
    sent: dict = {}

    def push():
        try:
            data.settimeout(10)
            tls = thief.wrap(data, thief.session)
            tls.sendall(b"forged by the thief\n" * 1000)
            tls.unwrap()                   # close_notify: a complete upload, were it accepted
            sent["ok"] = True
        except (ssl.SSLError, OSError) as exc:
            sent["error"] = repr(exc)
    t = threading.Thread(target=push, daemon=True)
    t.start()
    victim.sock.sendall(format_command("STOR", "secret.bin"))
    first = victim.reply()
    final = victim.reply() if first.code == 150 else first
    t.join(15)
    assert final.code in (425, 522), final
    assert (root / "secret.bin").read_bytes() == DATA       # neither overwritten nor truncated


# -- (b) active: the thief is where the victim's PORT points -------------------------------------------

@pytest.mark.parametrize("version", ["TLSV1.2", "TLSV1.3"])
def test_active_theft_by_resuming_another_session(serve, raw, version):
    """In active mode the server connects to the PORT address; whoever listens there (a NAT
    mapping taken over, a port raced on a shared host, a man in the middle) is the TLS client and
    can offer its own session."""
    srv = serve(SECURE_SESSION_REUSE="REQUIRED", PORTCOMMANDIPADDR="NOREDIRECT", TLSMAXVERSION=version)
    victim, thief = raw(srv, version), raw(srv, version)
    victim.protect()
    thief.auth()
    trap = socket.create_server(("127.0.0.1", 0))
    trap.settimeout(10)
    port = trap.getsockname()[1]
    assert victim.cmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}").code == 200
    got: dict = {}

    def thief_side():
        try:
            conn, _ = trap.accept()
        except OSError as exc:
            got.update(error=repr(exc), bytes=b"")
            return
        _take(thief, conn, got)
    t = threading.Thread(target=thief_side, daemon=True)
    t.start()
    victim.sock.sendall(format_command("RETR", "secret.bin"))
    first = victim.reply()
    final = victim.reply() if first.code == 150 else first
    t.join(15)
    trap.close()
    _refused(final, got, srv)
    _retry_works(victim)
