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


# -- (c) legitimate clients keep working -----------------------------------------------------------------

@pytest.mark.parametrize("data", ["pasv", "port"])
@pytest.mark.parametrize("version", ["TLSV1.2", "TLSV1.3"])
@pytest.mark.parametrize("policy", ["REQUIRED", "ALLOWED"])
def test_lab_client_still_works(serve, pkidir, root, tmp_path, policy, version, data):
    """Many data connections in a row: TLS 1.3 chains (each resumes the ticket the one before brought)."""
    srv = serve(SECURE_SESSION_REUSE=policy, TLSMAXVERSION=version, PASSIVEDATACONN="NOREDIRECT",
                PORTCOMMANDIPADDR="NOREDIRECT")
    with FTPClient(ClientConfig(SECURE_SESSION_REUSE=policy), security="tls", data=data,
                   ca=pkidir / "ca.pem") as c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice", "pw")
        assert c.tls_info["version"] == ("TLSv1.3" if version == "TLSV1.3" else "TLSv1.2")
        for i in range(3):
            assert c.get("secret.bin", tmp_path / "got.bin").sha256 == DATA_SHA
            assert c.put(tmp_path / "got.bin", f"up{i}.bin").sha256 == DATA_SHA
            assert (root / f"up{i}.bin").read_bytes() == DATA
        assert "secret.bin" in c.ls()
    assert "session binding" not in event_text(srv) and "not reused" not in event_text(srv)


def test_lab_client_after_ccc_and_an_independent_stack(serve, raw, pkidir, tmp_path):
    """CCC keeps the control connection's sessions for the data connections (they stay PROT P);
    stdlib ssl (another TLS client) resumes its own session on every data connection."""
    srv = serve(SECURE_SESSION_REUSE="REQUIRED", TLSMAXVERSION="TLSV1.3")
    with FTPClient(ClientConfig(SECURE_SESSION_REUSE="REQUIRED"), security="tls-ccc", data="pasv",
                   ca=pkidir / "ca.pem") as c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice", "pw")
        for _ in range(2):
            assert c.get("secret.bin", tmp_path / "got.bin").sha256 == DATA_SHA
    r = raw(srv, "TLSV1.3")
    r.protect()
    for _ in range(3):
        _retry_works(r)


def test_full_handshake_allowed_only_under_allowed(serve, raw):
    """A data connection that offers no session: fine under ALLOWED, 522 under REQUIRED."""
    for policy, code in (("ALLOWED", 226), ("REQUIRED", 522)):
        srv = serve(SECURE_SESSION_REUSE=policy)
        r = raw(srv)
        r.protect()
        host, port = r.passive()
        r.sock.sendall(format_command("RETR", "secret.bin"))
        data = socket.create_connection((host, port), timeout=10)
        assert r.reply().code == 150
        body = bytearray()
        try:
            tls = r.wrap(data, None)
            while chunk := tls.recv(65536):
                body += chunk
        except (ssl.SSLError, OSError):
            pass
        final = r.reply()
        assert final.code == code, final
        assert (bytes(body) == DATA) == (code == 226)


# -- (d) the lab client's own check, against hand-made servers -------------------------------------------

class FakeServer:
    """An FTPS server just big enough for the lab client's login, EPSV, RETR and STOR (stdlib ssl).
    data_ctx "fresh": data connections get a context of their own (another cache, other ticket
    keys), so no session the client offers can resume; "shared": the control connections' context,
    which resumes any session it issued (what the lab server did before session binding)."""

    def __init__(self, pkidir: Path, data_ctx: str):
        self.ctx = self._context(pkidir)
        self.data_ctx = self.ctx if data_ctx == "shared" else self._context(pkidir)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0             # STOR bytes that reached the server
        self.sent = 0                 # RETR bytes the server wrote
        self.reused: list[bool] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _context(pkidir: Path) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pkidir / "server.pem", pkidir / "server.key")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        passive = None
        try:
            sock.sendall(b"220 fake\r\n")
            buf = b""
            while True:
                while b"\r\n" not in buf:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                verb, _, arg = line.decode().partition(" ")
                verb = verb.upper()
                if verb == "AUTH":
                    sock.sendall(b"234 go\r\n")
                    sock = self.ctx.wrap_socket(sock, server_side=True)
                elif verb == "USER":
                    sock.sendall(b"331 pw\r\n")
                elif verb == "PASS":
                    sock.sendall(b"230 in\r\n")
                elif verb in ("EPSV", "PASV"):
                    passive = socket.create_server(("127.0.0.1", 0))
                    p = passive.getsockname()[1]
                    sock.sendall(f"229 (|||{p}|)\r\n".encode() if verb == "EPSV" else
                                 f"227 (127,0,0,1,{p >> 8},{p & 255})\r\n".encode())
                elif verb in ("RETR", "STOR"):
                    sock.sendall(b"150 here\r\n")
                    dconn, _ = passive.accept()
                    passive.close()
                    dconn.settimeout(10)
                    ok = self._data(dconn, verb)
                    sock.sendall(b"226 done\r\n" if ok else b"426 broken\r\n")
                elif verb == "QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"200 ok\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def _data(self, dconn: socket.socket, verb: str) -> bool:
        try:
            tls = self.data_ctx.wrap_socket(dconn, server_side=True)
            self.reused.append(tls.session_reused)
            if verb == "RETR":
                tls.sendall(DATA)          # at once: a client must not take these bytes
                self.sent += len(DATA)
                tls.unwrap()
            else:
                while chunk := tls.recv(65536):
                    self.received += len(chunk)
                tls.unwrap()
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            dconn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake(pkidir):
    made: list[FakeServer] = []

    def start(data_ctx: str) -> FakeServer:
        made.append(FakeServer(pkidir, data_ctx))
        return made[-1]
    yield start
    for f in made:
        f.close()


def _lab_client(fake_srv: FakeServer, pkidir: Path, policy: str, like: FTPClient | None = None) -> FTPClient:
    """A logged-in lab client; `like`: share that client's TLS context (pyOpenSSL offers a session
    only in the context that made it)."""
    c = FTPClient(ClientConfig(SECURE_SESSION_REUSE=policy), security="tls", data="epsv", ca=pkidir / "ca.pem")
    if like is not None:
        c._ctx = like._ctx
    c.connect("127.0.0.1", fake_srv.port)
    c.login("alice", "pw")
    return c


def test_client_refuses_a_data_connection_that_did_not_resume(fake, pkidir, tmp_path):
    srv = fake("fresh")
    up = tmp_path / "up.bin"
    up.write_bytes(DATA)
    with _lab_client(srv, pkidir, "REQUIRED") as c:
        with pytest.raises(FTPError) as err:
            c.put(up, "up.bin")
        assert err.value.stage == "tls" and "SECURE_SESSION_REUSE REQUIRED" in err.value.reason
        assert "did not resume this control connection's TLS session" in err.value.reason
    with _lab_client(srv, pkidir, "REQUIRED") as c:
        with pytest.raises(FTPError) as err:
            c.get("secret.bin", tmp_path / "got.bin")
        assert err.value.stage == "tls"
    assert srv.reused and not any(srv.reused)           # the handshakes were made, full ones
    assert srv.received == 0                            # not a byte of the upload left the client
    assert (tmp_path / "got.bin").read_bytes() == b""   # nor one of the download was taken
    # ALLOWED: a full handshake on the data connection is fine
    with _lab_client(srv, pkidir, "ALLOWED") as c:
        assert c.get("secret.bin", tmp_path / "got.bin").sha256 == DATA_SHA
        assert c.put(up, "up.bin").bytes == len(DATA)
    assert wait_for(lambda: srv.received == len(DATA))


@pytest.mark.parametrize("policy", ["REQUIRED", "ALLOWED"])
def test_client_refuses_a_session_not_its_control_connections(fake, pkidir, tmp_path, policy):
    """The data connection resumes a session of another control connection (here: planted as the
    session to offer, as a confused or hostile party could): resumed, but not this session's."""
    srv = fake("shared")
    other = _lab_client(srv, pkidir, policy)
    with _lab_client(srv, pkidir, policy, like=other) as c:
        c._session = other._session
        with pytest.raises(FTPError) as err:
            c.get("secret.bin", tmp_path / "got.bin")
        assert err.value.stage == "tls" and "not this control connection's" in err.value.reason
    other.close()
    assert wait_for(lambda: srv.reused == [True])        # the server did resume it ...
    assert (tmp_path / "got.bin").read_bytes() == b""    # ... and the client took nothing
