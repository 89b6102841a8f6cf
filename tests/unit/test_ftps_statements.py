"""Every z/OS statement of issue 3, observed on the wire: for each statement value, the reply code
and text or the connection behaviour it causes. The server side is driven by a raw control
connection (stdlib socket + ssl: an independent TLS stack); the client side by the lab's client
against the lab's server, checked through the server's log and the client's transcript.
Protocol flows (every security x data mode, REIN, EPSV ALL, ...) are in test_ftps_protocol.py."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from pathlib import Path

import pytest
from ftps_fixtures import RawControl, Servers, event_text, server_pki

from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig
from lab.ftps.grammar import Reply, format_command, parse_227, parse_229
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(30)

DATA = bytes(range(256)) * 2000                  # 512000 bytes
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = server_pki(tmp_path_factory.mktemp("pki"))
    pki.issue_server(d, "elsewhere", ips=["192.0.2.1"], dns=["elsewhere.example"])
    pki.issue_client(d, "alice")
    return d


@pytest.fixture
def serve(pkidir, tmp_path):
    """serve(STATEMENT=value, ...) -> a started FTPServer (users alice/pw, bob/pw2) with .events."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(DATA)
    servers = Servers(pkidir, root, {"alice": "pw", "bob": "pw2"})
    yield servers.start                  # serve(cert="elsewhere", ...) picks another server certificate
    servers.close()


class Raw(RawControl):
    """A hand-driven control connection: send lines, read replies, start TLS with stdlib ssl."""

    def __init__(self, addr, pkidir: Path, implicit_tls: bool = False, greet: bool = True):
        self.pkidir = pkidir
        self.implicit_tls = implicit_tls
        self.session = None
        super().__init__(addr, greet)

    def open(self, addr) -> socket.socket:
        sock = super().open(addr)
        if self.implicit_tls:
            sock = self.context().wrap_socket(sock, server_hostname="localhost")
        return sock

    def context(self, cert: str | None = None, ciphers: str | None = None,
                max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pkidir / "ca.pem"))
        if cert:
            ctx.load_cert_chain(self.pkidir / f"{cert}.pem", self.pkidir / f"{cert}.key")
        if ciphers:
            ctx.set_ciphers(ciphers)
        if max_version:
            ctx.maximum_version = max_version
        return ctx

    def auth(self, **ctx) -> Reply:
        r = self.cmd("AUTH TLS")
        assert r.code == 234, r
        self.sock = self.context(**ctx).wrap_socket(self.sock, server_hostname="localhost")
        self.session = self.sock.session
        return r

    def login(self, user: str = "alice", password: str = "pw") -> Reply:
        """USER, PASS, then TYPE I once logged in (binary payloads; see ftps_fixtures)."""
        r = self.cmd(f"USER {user}")
        r = self.cmd(f"PASS {password}") if r.code == 331 else r
        if r.code == 230:
            self.cmd("TYPE I")
        return r

    def protect(self, ctx: ssl.SSLContext) -> None:
        """AUTH TLS with `ctx` (the caller keeps it for the data connections), log in, PBSZ 0, PROT P."""
        self.sock.sendall(format_command("AUTH", "TLS"))
        assert self.reply().code == 234
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.login()
        self.cmd("PBSZ 0")
        self.cmd("PROT P")

    def passive(self) -> tuple[str, int]:
        r = self.cmd("PASV")
        assert r.code == 227, r
        hp = parse_227(r.text)
        return hp.host, hp.port


@pytest.fixture
def raw(pkidir):
    opened: list[Raw] = []

    def connect(srv: FTPServer, implicit_tls: bool = False, greet: bool = True) -> Raw:
        addr = srv.tls_address if implicit_tls or not greet else srv.address
        r = Raw(addr, pkidir, implicit_tls=implicit_tls, greet=greet)
        opened.append(r)
        return r

    yield connect
    for r in opened:
        r.close()


def client(srv: FTPServer, pkidir: Path, **kw) -> FTPClient:
    cfg = kw.pop("config", ClientConfig())
    kw.setdefault("ca", pkidir / "ca.pem")
    c = FTPClient(cfg, **kw)
    return c


def get_ok(c: FTPClient, srv: FTPServer, port: int | None = None) -> None:
    c.connect("127.0.0.1", port or srv.address[1])
    c.login("alice", "pw")
    result = c.get("data.bin")
    assert result.bytes == len(DATA) and result.sha256 == DATA_SHA


def transcript(c: FTPClient) -> list[str]:
    return [f"{d} {line}" for _, d, line in c.transcript]


# == server statements ===============================================================================

def test_extensions_auth_tls_off_refuses_auth_and_hides_it(serve, raw):
    srv = serve(EXTENSIONS=["SIZE"])
    r = raw(srv)
    feat = r.cmd("FEAT")
    assert "AUTH TLS" not in feat.text and "SIZE" in feat.text
    assert r.cmd("AUTH TLS").code == 502


def test_extensions_size_mdtm(serve, raw):
    on = raw(serve(EXTENSIONS=["SIZE", "MDTM"]))
    on.login()
    assert on.cmd("SIZE data.bin").lines == (str(len(DATA)),)
    assert on.cmd("MDTM data.bin").code == 213
    off = raw(serve(EXTENSIONS=["AUTH_TLS"]))
    off.login()
    assert off.cmd("SIZE data.bin").code == 500
    assert off.cmd("MDTM data.bin").code == 500
    feat = off.cmd("FEAT").text
    assert "SIZE" not in feat and "MDTM" not in feat and "REST STREAM" not in feat and "UTF8" not in feat


def test_extensions_rest_stream_off_refuses_rest(serve, raw):
    r = raw(serve(EXTENSIONS=["AUTH_TLS"]))
    r.login()
    # Without EXTENSIONS REST_STREAM, z/OS has no stream-mode restart: REST is refused.
    assert r.cmd("REST 100").code in (500, 502, 504)


def test_extensions_utf8_in_feat(serve, raw):
    r = raw(serve(EXTENSIONS=["UTF8"]))
    assert "UTF8" in r.cmd("FEAT").text


@pytest.mark.parametrize("level", ["ALLOWED", "REQUIRED"])
def test_secure_ftp(serve, raw, level):
    srv = serve(SECURE_FTP=level)
    clear = raw(srv)
    reply = clear.cmd("USER alice")
    assert reply.code == (331 if level == "ALLOWED" else 530), reply
    tls = raw(srv)
    tls.auth()
    assert tls.login().code == 230


def test_secure_login_required_refuses_without_certificate_and_admits_with_one(serve, raw):
    srv = serve(SECURE_LOGIN="REQUIRED")
    r = raw(srv)
    try:
        r.auth()
        refused = r.login().code == 530
    except (ssl.SSLError, ConnectionError, OSError):
        refused = True          # the handshake itself may refuse a client without a certificate
    assert refused
    ok = raw(srv)
    ok.auth(cert="client-alice")
    assert ok.login().code == 230


def test_secure_login_verify_user_maps_certificate_to_user(serve, raw):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice"})
    r = raw(srv)
    r.auth(cert="client-alice")
    assert r.login("alice", "pw").code == 230
    other = raw(srv)
    other.auth(cert="client-alice")
    assert other.login("bob", "pw2").code == 530          # right password, certificate of another user
    assert "certificate does not map" in event_text(srv)


@pytest.mark.parametrize("level", ["REQUIRED", "OPTIONAL"])
def test_secure_password(serve, raw, level):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice"}, SECURE_PASSWORD=level)
    r = raw(srv)
    r.auth(cert="client-alice")
    assert r.cmd("USER alice").code == (331 if level == "REQUIRED" else 232)


@pytest.mark.parametrize("level, ccc", [("CLEAR", 200), ("SAFE", 534), ("PRIVATE", 534)])
def test_secure_ctrlconn_governs_ccc(serve, raw, level, ccc):
    r = raw(serve(SECURE_CTRLCONN=level))
    r.auth()
    r.login()
    assert r.cmd("CCC").code == ccc


@pytest.mark.parametrize("level, prot_c, prot_p", [("NEVER", 200, 536), ("CLEAR", 200, 200),
                                                   ("SAFE", 536, 200), ("PRIVATE", 536, 200)])
def test_secure_dataconn_prot_levels(serve, raw, level, prot_c, prot_p):
    r = raw(serve(SECURE_DATACONN=level))
    r.auth()
    r.login()
    assert r.cmd("PBSZ 0").code == 200
    assert r.cmd("PROT C").code == prot_c
    assert r.cmd("PROT P").code == prot_p


@pytest.mark.parametrize("mode, first", [("ZOS", "425-"), ("RFC", "522 ")])
def test_secure_dataconn_private_unprotected_transfer_replymode(serve, raw, mode, first):
    r = raw(serve(SECURE_DATACONN="PRIVATE", REPLYMODE=mode))
    r.auth()
    r.login()
    r.passive()
    reply = r.cmd("RETR data.bin")
    assert str(reply).startswith(first), reply


def _data_tls(r: Raw, ctx: ssl.SSLContext, reuse: bool) -> tuple[bytes, Reply, bool]:
    host, port = r.passive()
    r.sock.sendall(format_command("RETR", "data.bin"))
    data = socket.create_connection((host, port), timeout=10)
    prelim = r.reply()
    if prelim.code != 150:
        data.close()
        return b"", prelim, False
    try:
        tls = ctx.wrap_socket(data, server_hostname="localhost", session=r.sock.session if reuse else None)
        body = bytearray()
        while chunk := tls.recv(65536):
            body += chunk
        reused = tls.session_reused
        tls.close()
    except (ssl.SSLError, OSError):
        body, reused = bytearray(), False
    return bytes(body), r.reply(), reused


@pytest.mark.parametrize("policy, reuse, ok", [("REQUIRED", True, True), ("REQUIRED", False, False),
                                               ("ALLOWED", False, True)])
def test_secure_session_reuse(serve, raw, policy, reuse, ok):
    r = raw(serve(SECURE_SESSION_REUSE=policy))
    ctx = r.context()
    r.protect(ctx)
    body, final, reused = _data_tls(r, ctx, reuse)
    assert (final.code == 226 and body == DATA) == ok, final
    if ok and reuse:
        assert reused
    if not ok:
        assert final.code == 522 and "reused" in final.text


@pytest.mark.parametrize("level, notify", [("RFC4217", True), ("CCCNONOTIFY", False)])
def test_tlsrfclevel_ccc_close_notify(serve, raw, level, notify):
    srv = serve(TLSRFCLEVEL=level)
    r = raw(srv)
    r.auth()
    r.login()
    assert r.cmd("CCC").code == 200
    plain = r.sock.unwrap() if notify else r.sock.detach()
    if not notify:
        plain = socket.socket(fileno=plain)
        plain.settimeout(10)
    r.sock = plain
    assert r.cmd("NOOP").code == 200                   # the control connection is now clear text
    assert ("close_notify exchanged" if notify else "no alerts") in event_text(srv)


def test_tlsrfclevel_draft_has_no_ccc(serve, raw):
    r = raw(serve(TLSRFCLEVEL="DRAFT"))
    assert "CCC" not in r.cmd("FEAT").lines
    r.auth()
    r.login()
    assert r.cmd("CCC").code == 534


@pytest.mark.parametrize("zos", [True, False])
def test_tlsport_and_secureimplicitzos(serve, raw, zos):
    srv = serve(SECUREIMPLICITZOS=zos)
    if zos:
        r = raw(srv, greet=False)                       # TLSPORT: a clear 220 first, then the handshake
        assert r.reply().code == 220
        r.sock = r.context().wrap_socket(r.sock, server_hostname="localhost")
    else:
        r = raw(srv, implicit_tls=True)                  # handshake first, then the 220 inside TLS
        assert r.greeting.code == 220
    assert r.login().code == 230
    assert r.cmd("AUTH TLS").code == 503
    assert r.cmd("CCC").code == 534


def test_implicitprot_default_private(serve, raw):
    r = raw(serve(SECUREIMPLICITZOS=False), implicit_tls=True)
    r.login()
    assert "data connections: private" in r.cmd("STAT").text


def test_tlstimeout_expires_the_session_for_reuse(serve, raw):
    # 3 s, not 1: on a loaded CI machine the first data connection once came more than 1 s after
    # the control handshake, and its session had already expired.
    r = raw(serve(TLSTIMEOUT=3, SECURE_SESSION_REUSE="REQUIRED"))
    ctx = r.context(max_version=ssl.TLSVersion.TLSv1_2)   # TLS 1.2: the session is there at once
    r.protect(ctx)
    body, final, reused = _data_tls(r, ctx, True)
    assert final.code == 226 and reused
    time.sleep(3.5)
    body, final, reused = _data_tls(r, ctx, True)
    assert final.code == 522 and not reused, final


def test_ciphersuite_zos_name_is_what_is_negotiated(serve, raw):
    r = raw(serve(CIPHERSUITE=["SSL_AES_256_SHA"]))
    r.auth(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ALL")
    assert r.sock.cipher()[0] == "AES256-SHA"
    refused = raw(serve(CIPHERSUITE=["SSL_AES_256_SHA"]))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        refused.auth(max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE+AESGCM")


def test_keyring_auth_star_trusts_the_lab_ca_for_client_certificates(serve, raw):
    srv = serve(SECURE_LOGIN="REQUIRED", KEYRING="*AUTH*/*")
    r = raw(srv)
    r.auth(cert="client-alice")
    assert r.login().code == 230


def test_passivedataports_range(serve, raw):
    srv = serve(PASSIVEDATAPORTS=(41000, 41002))
    r = raw(srv)
    r.login()
    ports = {parse_229(r.cmd("EPSV").text) for _ in range(6)} | {r.passive()[1] for _ in range(6)}
    assert ports <= {41000, 41001, 41002}


def test_passivedataconn_noredirect_closes_a_connection_from_another_address(serve, raw):
    srv = serve(PASSIVEDATACONN="NOREDIRECT")
    r = raw(srv)
    r.login()
    host, port = r.passive()
    r.sock.sendall(format_command("RETR", "data.bin"))
    foreign = socket.socket()
    foreign.bind(("127.0.0.2", 0))                   # another address than the control peer
    foreign.settimeout(5)
    foreign.connect((host, port))
    assert foreign.recv(10) == b""                     # closed at once, nothing sent
    mine = socket.create_connection((host, port), timeout=5)
    assert r.reply().code == 150
    body = bytearray()
    while chunk := mine.recv(65536):
        body += chunk
    assert body == DATA and r.reply().code == 226
    assert "PASSIVEDATACONN NOREDIRECT" in event_text(srv)


def test_passivedataconn_unrestricted_accepts_another_address(serve, raw):
    r = raw(serve(PASSIVEDATACONN="UNRESTRICTED"))
    r.login()
    host, port = r.passive()
    r.sock.sendall(format_command("RETR", "data.bin"))
    other = socket.socket()
    other.bind(("127.0.0.2", 0))
    other.settimeout(5)
    other.connect((host, port))
    assert r.reply().code == 150
    body = bytearray()
    while chunk := other.recv(65536):
        body += chunk
    assert body == DATA


@pytest.mark.parametrize("statements, command, code", [
    ({"PORTCOMMAND": "REJECT"}, "PORT 127,0,0,1,200,10", 504),
    ({"PORTCOMMAND": "REJECT"}, "EPRT |1|127.0.0.1|51210|", 504),
    ({"PORTCOMMAND": "ACCEPT"}, "PORT 127,0,0,1,200,10", 200),
    ({"PORTCOMMANDIPADDR": "NOREDIRECT"}, "PORT 192,0,2,99,200,10", 504),
    ({"PORTCOMMANDIPADDR": "NOREDIRECT"}, "EPRT |1|192.0.2.99|51210|", 504),
    ({"PORTCOMMANDIPADDR": "UNRESTRICTED"}, "PORT 192,0,2,99,200,10", 200),
    ({"PORTCOMMANDPORT": "NOLOWPORTS"}, "PORT 127,0,0,1,0,25", 504),
    ({"PORTCOMMANDPORT": "NOLOWPORTS"}, "PORT 127,0,0,1,4,1", 200),
    ({"PORTCOMMANDPORT": "UNRESTRICTED"}, "PORT 127,0,0,1,0,25", 200),
])
def test_portcommand_statements(serve, raw, statements, command, code):
    r = raw(serve(**statements))
    r.login()
    assert r.cmd(command).code == code


def test_logindelay_slows_failed_logins(serve, raw):
    r = raw(serve(LOGINDELAY=0.6))
    t = time.monotonic()
    assert r.login("alice", "wrong").code == 530
    assert time.monotonic() - t >= 0.55


# == client statements ===============================================================================

def server_verbs(srv: FTPServer) -> list[str]:
    return [str(e["line"]).split(" ", 1)[0] for e in srv.events if e.get("dir") == "C>S"]


@pytest.mark.parametrize("mechanism, expect_auth", [("TLS", True), ("NONE", False)])
def test_client_secure_mechanism(serve, pkidir, mechanism, expect_auth):
    srv = serve()
    c = client(srv, pkidir, config=ClientConfig(SECURE_MECHANISM=mechanism, SECURE_DATACONN="PRIVATE"
                                                if mechanism == "TLS" else "CLEAR", FWFRIENDLY=True))
    with c:
        get_ok(c, srv)
    assert ("AUTH" in server_verbs(srv)) == expect_auth


def test_client_secure_ftp_required_refuses_a_server_without_tls(serve, pkidir):
    srv = serve(EXTENSIONS=["SIZE"])                    # no AUTH_TLS
    c = client(srv, pkidir, config=ClientConfig(SECURE_MECHANISM="TLS", SECURE_FTP="REQUIRED", FWFRIENDLY=True))
    with c, pytest.raises(FTPError) as err:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice", "pw")
    assert err.value.stage == "tls" and err.value.code == 502
    assert "USER" not in server_verbs(srv)             # the password never went out in clear


@pytest.mark.parametrize("level, prot", [("CLEAR", "C"), ("PRIVATE", "P")])
def test_client_secure_dataconn(serve, pkidir, level, prot):
    srv = serve()
    c = client(srv, pkidir, config=ClientConfig(SECURE_MECHANISM="TLS", SECURE_DATACONN=level, FWFRIENDLY=True))
    with c:
        get_ok(c, srv)
    prots = [str(e["line"]) for e in srv.events if str(e.get("line", "")).startswith("PROT")]
    assert prots in ([f"PROT {prot}"], []) and (prot == "C" or prots == ["PROT P"])


@pytest.mark.parametrize("cert, ok", [("server", True), ("elsewhere", False)])
def test_client_secure_hostname_required(serve, pkidir, cert, ok):
    srv = serve(cert=cert)
    c = client(srv, pkidir, config=ClientConfig(SECURE_MECHANISM="TLS", SECURE_HOSTNAME="REQUIRED", FWFRIENDLY=True))
    with c:
        if ok:
            get_ok(c, srv)
        else:
            with pytest.raises(FTPError) as err:
                get_ok(c, srv)
            assert err.value.stage == "tls"


@pytest.mark.parametrize("level, notify", [("RFC4217", True), ("CCCNONOTIFY", False)])
def test_client_tlsrfclevel_ccc(serve, pkidir, level, notify):
    srv = serve(TLSRFCLEVEL=level)
    c = client(srv, pkidir, security="tls-ccc", config=ClientConfig(TLSRFCLEVEL=level, FWFRIENDLY=True))
    with c:
        get_ok(c, srv)
    assert "CCC" in server_verbs(srv)
    assert ("close_notify exchanged" if notify else "no alerts") in event_text(srv)


def test_client_ccc_noop_first(serve, pkidir):
    srv = serve()
    c = client(srv, pkidir, security="tls-ccc", config=ClientConfig(CCCNOOP=True, FWFRIENDLY=True))
    with c:
        get_ok(c, srv)
    verbs = server_verbs(srv)
    assert verbs[verbs.index("CCC") + 1] == "NOOP"


@pytest.mark.parametrize("zos", [True, False])
def test_client_secureimplicitzos(serve, pkidir, zos):
    srv = serve(SECUREIMPLICITZOS=zos)
    c = client(srv, pkidir, config=ClientConfig(SECURE_MECHANISM="TLS", SECUREIMPLICITZOS=zos,
                                                TLSPORT=srv.tls_address[1], FWFRIENDLY=True))
    with c:
        get_ok(c, srv, port=srv.tls_address[1])
    assert "AUTH" not in server_verbs(srv)


@pytest.mark.parametrize("epsv4, fwfriendly, verb", [(True, False, "EPSV"), (True, True, "EPSV"),
                                                      (False, True, "PASV"), (False, False, "PORT")])
def test_client_epsv4_and_fwfriendly_pick_the_data_command(serve, pkidir, epsv4, fwfriendly, verb):
    srv = serve()
    c = client(srv, pkidir, config=ClientConfig(EPSV4=epsv4, FWFRIENDLY=fwfriendly))
    with c:
        get_ok(c, srv)
    verbs = server_verbs(srv)
    assert verb in verbs and not ({"EPSV", "PASV", "PORT", "EPRT"} - {verb}) & set(verbs)


class _Masquerading227:
    """A one-session FTP server that announces an unreachable address in its 227 (a NAT'd server)."""

    def __init__(self):
        import threading
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.data = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn, _ = self.listener.accept()
        f = conn.makefile("rb")
        conn.sendall(b"220 hi\r\n")
        for line in f:
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"USER":
                conn.sendall(b"331 pw\r\n")
            elif verb == b"PASS":
                conn.sendall(b"230 ok\r\n")
            elif verb == b"PASV":
                port = self.data.getsockname()[1]
                conn.sendall(f"227 Entering Passive Mode (203,0,113,10,{port >> 8},{port & 255})\r\n".encode())
            elif verb == b"RETR":
                conn.sendall(b"150 go\r\n")
                self.data.settimeout(5)
                d, _ = self.data.accept()
                d.sendall(b"x" * 1000)
                d.close()
                conn.sendall(b"226 done\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                break
            else:
                conn.sendall(b"200 ok\r\n")
        conn.close()


@pytest.mark.parametrize("ignore", [True, False])
def test_client_passiveignoreaddr(ignore):
    peer = _Masquerading227()
    c = FTPClient(ClientConfig(FWFRIENDLY=True, PASSIVEIGNOREADDR=ignore, DATACONNTIME=1), data="pasv")
    with c:
        c.connect("127.0.0.1", peer.listener.getsockname()[1])
        c.login("u", "p")
        if ignore:                                    # connects to the control peer, with the 227 port
            assert c.get("f").bytes == 1000
        else:                                         # trusts 203.0.113.10 (z/OS default): unreachable
            with pytest.raises(FTPError) as err:
                c.get("f")
            assert err.value.stage == "data-connect" and "203.0.113.10" in err.value.reason


def test_client_session_reuse_offered_on_data_connections(serve, pkidir):
    srv = serve(SECURE_SESSION_REUSE="REQUIRED")
    c = client(srv, pkidir, security="tls", data="pasv")
    with c:
        get_ok(c, srv)
        get_ok_again = c.get("data.bin")
        assert get_ok_again.sha256 == DATA_SHA


def test_client_certificate_login(serve, pkidir):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice"})
    c = client(srv, pkidir, security="tls", data="pasv", cert=pkidir / "client-alice.pem",
               key=pkidir / "client-alice.key")
    with c:
        get_ok(c, srv)


@pytest.mark.parametrize("statements, version", [({}, "TLSv1.2"), ({"TLSMAXVERSION": "TLSV1.3"}, "TLSv1.3"),
                                                 ({"TLSMAXVERSION": "TLSV1.2"}, "TLSv1.2")])
def test_tlsmaxversion_caps_the_negotiated_version(serve, raw, statements, version):
    # A lab statement: the server offers TLS 1.2 unless told otherwise (TLS 1.3 tickets on data
    # connections make curl/lftp uploads end in RST, see tests/interop/test_clients_vs_ftlab.py).
    r = raw(serve(**statements))
    r.auth()
    assert r.sock.version() == version
