"""The built-in client against the built-in server on 127.0.0.1 (random ports, no root).

Every security mode x data mode, CCC at both RFC levels, REIN, EPSV ALL, hostile input, the
passive range, session reuse, client-certificate login, fast failure of data connections.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket
import ssl
import threading
import time

import pytest
from ftps_fixtures import RawControl, Servers, server_pki

from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.grammar import HostPort, ReplyReader, format_227
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)      # several MiB and records, odd length


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = server_pki(tmp_path_factory.mktemp("pki"))
    pki.issue_client(d, "alice")
    pki.issue(d, "client-old", client=True, cn="alice", expired=True)
    pki.issue_client(d / "other", "alice")
    return d


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "big.bin").write_bytes(PAYLOAD)
    (r / "hello.txt").write_bytes(b"hello\r\n")
    (tmp_path / "secret.txt").write_text("outside the root")
    os.symlink(tmp_path, r / "escape")
    os.symlink(tmp_path / "secret.txt", r / "secret-link")
    return r


@pytest.fixture
def serve(certs, root):
    servers = Servers(certs, root, {"alice": "pw", "bob": "pw2"})
    threads_before = threading.active_count()
    yield servers.start
    servers.close()
    for srv in servers.started:
        assert srv.session_count == 0
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before, "session threads leaked"


def make_client(srv, certs, security="plain", data="pasv", cfg=None, user="alice", password="pw",
                login=True, **kw) -> FTPClient:
    c = FTPClient(cfg, security=security, data=data, ca=certs / "ca.pem", **kw)
    port = srv.tls_address[1] if (security or "").startswith("implicit") else srv.address[1]
    c.connect("127.0.0.1", port)
    if login:
        c.login(user, password)
    return c


class Raw(RawControl):
    """A control connection for input no well-behaved client sends: lines go out as given."""

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port))

    def cmd(self, line: str | bytes):
        self.sock.sendall(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply()

    def login(self):
        assert self.cmd("USER alice").code == 331
        assert self.cmd("PASS pw").code == 230


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the matrix ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", ["pasv", "epsv", "port", "eprt"])
@pytest.mark.parametrize("security", ["plain", "tls", "tls-ccc", "implicit", "implicit-zos"])
def test_every_security_and_data_mode(serve, certs, root, tmp_path, security, data):
    srv = serve(SECUREIMPLICITZOS=(security != "implicit"),
                SECURE_SESSION_REUSE="REQUIRED" if security != "plain" else "ALLOWED")
    c = make_client(srv, certs, security, data)
    got = c.get("big.bin", tmp_path / "got.bin")
    assert got.bytes == len(PAYLOAD) and got.sha256 == sha(PAYLOAD) and got.mbps > 0
    assert (tmp_path / "got.bin").read_bytes() == PAYLOAD
    up = c.put(tmp_path / "got.bin", "sub/up.bin")
    assert up.sha256 == sha(PAYLOAD) and (root / "sub" / "up.bin").read_bytes() == PAYLOAD
    assert "hello.txt" in c.ls()
    assert sorted(c.ls("sub", "NLST").split()) == ["up.bin"]
    sent = [line for _, d, line in c.transcript if d == "C>S"]
    assert any(line.split()[0] == data.upper() for line in sent)
    assert ("AUTH TLS" in sent) == (security in ("tls", "tls-ccc"))
    assert ("CCC" in sent) == (security == "tls-ccc")
    if security != "plain":
        assert c.prot == "P" and c.tls_info["version"] in ("TLSv1.2", "TLSv1.3")
    c.quit()


def test_active_data_comes_from_port_l_minus_1(serve, certs):
    srv = serve()
    raw = Raw(srv.address[1])
    raw.login()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    assert raw.cmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}").code == 200
    raw.sock.sendall(b"RETR hello.txt\r\n")
    lsock.settimeout(5)
    conn, peer = lsock.accept()
    assert peer[1] == srv.address[1] - 1
    assert conn.recv(100) == b"hello\r\n"
    assert raw.reply().code == 150 and raw.reply().code == 226
    conn.close()
    lsock.close()
    raw.close()


def test_default_data_port_without_port_command(serve, certs):
    """RFC 959: with no PORT/PASV the server connects to the client's control port."""
    srv = serve()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    ctrl = socket.socket()
    ctrl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        ctrl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    ctrl.bind(lsock.getsockname())
    ctrl.connect(srv.address)
    ctrl.settimeout(10)
    reader = ReplyReader()

    def reply():
        out = []
        while not out:
            out = reader.feed(ctrl.recv(4096))
        return out[0]
    assert reply().code == 220
    for line in (b"USER alice\r\n", b"PASS pw\r\n"):
        ctrl.sendall(line)
        reply()
    ctrl.sendall(b"RETR hello.txt\r\n")
    lsock.settimeout(5)
    conn, _ = lsock.accept()
    assert conn.recv(100) == b"hello\r\n"
    conn.close()
    ctrl.close()
    lsock.close()


# -- CCC, REIN, EPSV ALL --------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["RFC4217", "CCCNONOTIFY"])
def test_ccc_levels_and_prot_after_ccc(serve, certs, tmp_path, level):
    srv = serve(TLSRFCLEVEL=level)
    c = make_client(srv, certs, "tls-ccc", "pasv", ClientConfig(TLSRFCLEVEL=level, CCCNOOP=True))
    sent = [line for _, d, line in c.transcript if d == "C>S"]
    assert sent[sent.index("CCC") + 1] == "NOOP"
    assert c.ctrl is None and c.ccc_done
    assert c.get("hello.txt").bytes == 7                       # data stays PROT P
    reply = c.command("PROT", "C")
    assert reply.code == 503 and "PROT not allowed after CCC" in reply.text
    assert c.command("PBSZ", "0").code == 503
    info = [e["line"] for e in srv.events if e["dir"] == "info"]
    expect = "close_notify exchanged" if level == "RFC4217" else "no alerts"
    assert any("CCC" in line and expect in line for line in info)
    c.quit()


def test_ccc_refusals(serve, certs):
    for statements, text in [({"SECURE_CTRLCONN": "PRIVATE"}, "CCC not supported"),
                             ({"TLSRFCLEVEL": "DRAFT"}, "DRAFT")]:
        c = make_client(serve(**statements), certs, "tls")
        with pytest.raises(FTPError) as err:
            c.ccc()
        assert err.value.code == 534 and err.value.stage == "tls" and text in err.value.reason
        c.quit()
    srv = serve()
    c = make_client(srv, certs, "implicit-zos")
    with pytest.raises(FTPError, match="secure port") as err:
        c.ccc()
    assert err.value.code == 534
    plain = make_client(srv, certs, "plain")
    assert plain.command("CCC").code == 533
    assert plain.command("AUTH", "KERBEROS").code == 504
    c.quit()
    plain.quit()


def test_client_draft_level_has_no_ccc(serve, certs):
    c = make_client(serve(), certs, "tls", cfg=ClientConfig(TLSRFCLEVEL="DRAFT"))
    with pytest.raises(FTPError, match="DRAFT"):
        c.ccc()
    c.quit()


def test_rein_clears_tls(serve, certs):
    srv = serve(SECURE_SESSION_REUSE="REQUIRED")
    c = make_client(srv, certs, "tls")
    assert c.rein().code == 220
    assert c.ctrl is None
    assert c.command("PBSZ", "0").code == 503                   # back to CLEAR_PREAUTH
    assert c.command("RETR", "hello.txt").code == 530
    c.login("alice", "pw")
    assert c.get("hello.txt").bytes == 7                         # plain data now
    assert c.command("STAT").code == 211
    c.quit()


def test_epsv_all(serve, certs):
    c = make_client(serve(), certs, "plain", "epsv")
    assert c.command("EPSV", "ALL").code == 200
    for verb, arg in [("PASV", ""), ("PORT", "127,0,0,1,200,10"), ("EPRT", "|1|127.0.0.1|51210|")]:
        reply = c.command(verb, arg)
        assert reply.code == 503 and "EPSV ALL" in reply.text
    assert c.get("hello.txt").bytes == 7
    assert c.command("EPSV", "2").code == 522
    c.quit()


# -- hostile input ------------------------------------------------------------------------------

def test_bad_input_gets_the_right_code_and_the_server_keeps_serving(serve, certs):
    srv = serve(PORTCOMMANDIPADDR="NOREDIRECT", PORTCOMMANDPORT="NOLOWPORTS")
    raw = Raw(srv.address[1])
    assert raw.greeting.code == 220
    assert raw.cmd("FROB x").code == 500
    assert raw.cmd(b"\x16\x03\x01\x02\x00garbage\r\n").code == 500
    assert raw.cmd("RETR hello.txt").code == 530                 # data command before login
    assert raw.cmd("LIST").code == 530
    assert raw.cmd("PBSZ 0").code == 503                         # before AUTH
    assert raw.cmd("PROT P").code == 503
    assert raw.cmd(b"NOOP " + b"x" * 10000 + b"\r\n").code == 500    # overlong
    assert raw.cmd("NOOP").code == 200                           # and the session goes on
    raw.login()
    assert raw.cmd("PORT 10,1,2,3,200,1").code == 504            # foreign address
    assert raw.cmd("EPRT |1|10.1.2.3|51201|").code == 504
    assert raw.cmd("PORT 127,0,0,1,0,80").code == 504            # low port
    assert raw.cmd("PORT 1,2,3").code == 501
    assert raw.cmd("EPRT |2|::1|5000|").code == 522
    assert raw.cmd("PROT Q").code == 503                         # no TLS at all here
    assert raw.cmd("TYPE X").code == 504
    assert raw.cmd("MODE B").code == 504
    assert raw.cmd("RNTO x").code == 503
    assert raw.cmd("REST ²").code == 501                   # '²'.isdigit() is True; int('²') fails
    assert raw.cmd("EPRT |1|127.0.0.1|٢١|").code == 501   # Arabic-Indic digits
    for path in ("../../secret.txt", "/../secret.txt", "escape/secret.txt", "secret-link"):
        assert raw.cmd(f"SIZE {path}").code == 550, path
        assert raw.cmd(f"RETR {path}").code == 550, path
    assert raw.cmd("CWD escape").code == 550
    assert raw.cmd("CWD ..").code == 250 and raw.cmd("PWD").text.startswith('"/"')
    assert raw.cmd("MKD escape/new").code == 550
    assert raw.cmd("SIZE hello.txt").text == "7"
    raw.close()
    c = make_client(srv, certs)                                  # a fresh session still works
    assert c.get("hello.txt").bytes == 7
    c.quit()


def test_tls_ordering_errors(serve, certs):
    srv = serve()
    c = make_client(srv, certs, "tls", login=False)
    c.command("AUTH", "TLS")
    c._start_tls()
    assert c.command("AUTH", "TLS").code == 503                  # already established
    reply = c.command("PROT", "P")
    assert reply.code == 503 and "PBSZ" in reply.text
    assert c.command("PBSZ", "0").text == "PBSZ=0"
    assert c.command("PROT", "S").code == 536
    assert c.command("PROT", "E").code == 536
    assert c.command("PROT", "X").code == 504
    c.quit()
    imp = make_client(srv, certs, "implicit-zos", login=False)
    assert imp.command("AUTH", "TLS").code == 503
    imp.quit()


def test_unprotected_data_refused_zos_and_rfc(serve, certs):
    cfg = ClientConfig(SECURE_MECHANISM="TLS", SECURE_DATACONN="CLEAR")
    c = make_client(serve(SECURE_DATACONN="PRIVATE"), certs, None, cfg=cfg)
    with pytest.raises(FTPError) as err:
        c.get("hello.txt")
    assert err.value.code == 425 and err.value.stage == "data-setup"
    assert "Server requires protected data connection" in err.value.reason
    assert c.command("PROT", "C").code == 536
    c.quit()
    c = make_client(serve(SECURE_DATACONN="PRIVATE", REPLYMODE="RFC"), certs, None, cfg=cfg)
    with pytest.raises(FTPError) as err:
        c.get("hello.txt")
    assert err.value.code == 522
    c.quit()


def test_secure_ftp_required_refuses_clear_login(serve, certs):
    with pytest.raises(FTPError) as err:
        make_client(serve(SECURE_FTP="REQUIRED"), certs, "plain")
    assert err.value.stage == "login" and err.value.code == 530


def test_failed_login_is_delayed_logged_and_masked(serve, certs):
    srv = serve(LOGINDELAY=0.3)
    t = time.monotonic()
    with pytest.raises(FTPError) as err:
        make_client(srv, certs, password="wrong")
    assert time.monotonic() - t >= 0.3
    assert err.value.stage == "login" and err.value.code == 530
    lines = [e["line"] for e in srv.events]
    assert "PASS ****" in lines and not any("wrong" in line for line in lines)
    assert any("failed login" in line for line in lines)
    assert all(isinstance(e["ts"], float) for e in srv.events)


# -- passive range, NOREDIRECT, reuse ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_passive_range_is_never_left_and_exhaustion_gives_425(serve, certs):
    port = _free_port()
    srv = serve(PASSIVEDATAPORTS=(port, port))
    a, b = make_client(srv, certs), make_client(srv, certs)
    reply = a.command("PASV")
    assert reply.code == 227 and reply.text.endswith(format_227(HostPort("127.0.0.1", port))[-20:])
    busy = b.command("EPSV")
    assert busy.code == 425 and "PASSIVEDATAPORTS" in busy.text
    assert b.command("PASV").code == 425
    a.quit()
    time.sleep(0.2)
    assert b.get("hello.txt").bytes == 7                          # free again
    b.quit()


def test_passivedataconn_noredirect_closes_foreign_peer(serve, certs):
    srv = serve(PASSIVEDATACONN="NOREDIRECT")
    raw = Raw(srv.address[1])
    raw.login()
    port = int(raw.cmd("EPSV").text.split("|||")[1].rstrip("|)"))
    raw.sock.sendall(b"RETR hello.txt\r\n")
    foreign = socket.socket()
    foreign.bind(("127.0.0.2", 0))
    foreign.settimeout(5)
    foreign.connect(("127.0.0.1", port))
    assert foreign.recv(100) == b""                               # closed by the server
    good = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert raw.reply().code == 150
    assert good.recv(100) == b"hello\r\n"
    assert raw.reply().code == 226
    assert any("NOREDIRECT" in e["line"] for e in srv.events)
    good.close()
    foreign.close()
    raw.close()


def test_session_reuse_required(serve, certs):
    srv = serve(SECURE_SESSION_REUSE="REQUIRED")
    c = make_client(srv, certs, "tls", cfg=ClientConfig(SECURE_SESSION_REUSE="NONE"))
    with pytest.raises(FTPError) as err:
        c.get("hello.txt")
    assert err.value.stage == "tls" and err.value.code == 522
    c.quit()
    c = make_client(srv, certs, "tls", cfg=ClientConfig(SECURE_SESSION_REUSE="REQUIRED"))
    assert c.get("hello.txt").bytes == 7 and c.get("hello.txt").bytes == 7
    c.quit()


# -- client certificates ------------------------------------------------------------------------

def test_secure_login_required(serve, certs):
    srv = serve(SECURE_LOGIN="REQUIRED")
    c = make_client(srv, certs, "tls", cert=certs / "client-alice.pem", key=certs / "client-alice.key")
    assert c.get("hello.txt").bytes == 7
    c.quit()
    with pytest.raises(FTPError) as err:
        make_client(srv, certs, "tls")                            # no certificate
    assert err.value.stage == "tls"


@pytest.mark.parametrize("who,user,stage", [
    ("client-alice", "alice", None),
    ("client-alice", "bob", "login"),               # the certificate maps to alice, not bob
    ("client-old", "alice", "tls"),                 # expired
    ("other/client-alice", "alice", "tls"),         # signed by a CA the server does not trust
])
def test_verify_user(serve, certs, who, user, stage):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice"})
    password = {"alice": "pw", "bob": "pw2"}[user]
    kw = {"cert": certs / f"{who}.pem", "key": certs / f"{who}.key"}
    if stage is None:
        c = make_client(srv, certs, "tls", user=user, password=password, **kw)
        assert c.get("hello.txt").bytes == 7
        c.quit()
        return
    with pytest.raises(FTPError) as err:
        make_client(srv, certs, "tls", user=user, password=password, **kw)
    assert err.value.stage == stage


def test_secure_password_optional_logs_in_by_certificate(serve, certs):
    srv = serve(SECURE_LOGIN="VERIFY_USER", SECURE_PASSWORD="OPTIONAL",
                CERTUSERMAP={pki.fingerprint(certs / "client-alice.pem"): "alice"})
    c = make_client(srv, certs, "tls", password="", cert=certs / "client-alice.pem",
                    key=certs / "client-alice.key")
    assert any(line.startswith("232") for _, d, line in c.transcript if d == "S>C")
    c.quit()


def test_secure_hostname_required(serve, certs):
    srv = serve()
    c = FTPClient(ClientConfig(SECURE_HOSTNAME="REQUIRED"), security="tls", ca=certs / "ca.pem")
    c.connect("127.0.0.1", srv.address[1])
    c.login("alice", "pw")                                        # 127.0.0.1 is in the SANs
    c.quit()
    untrusted = FTPClient(security="tls", ca=certs / "other" / "ca.pem")
    untrusted.connect("127.0.0.1", srv.address[1])
    with pytest.raises(FTPError) as err:
        untrusted.login("alice", "pw")
    assert err.value.stage == "tls"


# -- features, status, resume, concurrency ----------------------------------------------------------

def test_feat_stat_size_mdtm_mlst(serve, certs):
    c = make_client(serve(), certs, "tls")
    feat = c.command("FEAT")
    for f in ("AUTH TLS", "PBSZ", "PROT", "CCC", "EPSV", "REST STREAM", "SIZE", "MDTM", "MLST"):
        assert f in feat.text
    assert "211-TLS security is supported at the RFC4217 level" in c.command("STAT").text
    assert c.size("big.bin") == len(PAYLOAD)
    assert len(c.command("MDTM", "hello.txt").text) == 14
    assert "type=file;size=7;" in c.command("MLST", "hello.txt").text
    assert "type=dir" in c.ls("", "MLSD")
    assert c.command("SYST").code == 215 and c.command("HELP").code == 214
    c.quit()
    draft = make_client(serve(TLSRFCLEVEL="DRAFT"), certs, "plain")
    assert "CCC" not in draft.command("FEAT").text
    assert "at the DRAFT level" in draft.command("STAT").text
    draft.quit()


def test_rest_resumes_both_ways(serve, certs, root, tmp_path):
    c = make_client(serve(), certs, "tls")
    part = tmp_path / "part.bin"
    part.write_bytes(PAYLOAD[:1000000])
    r = c.get("big.bin", part, rest=1000000)
    assert r.bytes == len(PAYLOAD) - 1000000 and part.read_bytes() == PAYLOAD
    (root / "half.bin").write_bytes(PAYLOAD[:5000])
    c.put(part, "half.bin", rest=5000)
    assert (root / "half.bin").read_bytes() == PAYLOAD
    c.quit()


def test_file_commands(serve, certs, root):
    c = make_client(serve(), certs)
    assert c.command("MKD", "new").code == 257 and (root / "new").is_dir()
    c.cwd("new")
    assert c.pwd() == "/new"
    assert c.command("CDUP").code == 250 and c.pwd() == "/"
    assert c.command("RNFR", "hello.txt").code == 350 and c.command("RNTO", "new/h.txt").code == 250
    assert (root / "new" / "h.txt").exists()
    assert c.command("DELE", "new/h.txt").code == 250 and c.command("RMD", "new").code == 250
    assert c.command("DELE", "nothing").code == 550
    assert c.command("ABOR").code == 226
    c.quit()


def test_many_concurrent_sessions(serve, certs):
    srv = serve(MAXSESSIONSPERADDRESS=16)      # 16 at once from one address
    errors: list[Exception] = []
    fds_before = len(os.listdir("/proc/self/fd"))

    def one(i: int) -> None:
        try:
            c = make_client(srv, certs, "tls" if i % 2 else "plain", ["pasv", "epsv", "port", "eprt"][i % 4])
            assert c.get("big.bin").sha256 == sha(PAYLOAD)
            c.quit()
        except Exception as exc:      # collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert not errors
    deadline = time.monotonic() + 5
    while srv.session_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.session_count == 0
    assert len(os.listdir("/proc/self/fd")) <= fds_before, "file descriptors leaked"


def test_peer_vanishing_mid_session_does_not_leak(serve, certs):
    srv = serve()
    for _ in range(5):
        raw = Raw(srv.address[1])
        raw.login()
        raw.cmd("PASV")
        raw.sock.sendall(b"RETR big.bin\r\n")
        raw.close()                                                   # never connects
    deadline = time.monotonic() + 5
    while srv.session_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.session_count == 0


# -- the client against scripted peers: fast failures, the z/OS data algorithm --------------------

class Scripted:
    """A control-channel peer that answers from a script (verb -> reply line or callable)."""

    def __init__(self, script: dict):
        self.script = script
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn, _ = self.lsock.accept()
        conn.sendall(b"220 scripted\r\n")
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                text = line.decode()
                self.seen.append(text)
                answer = self.script.get(text.split()[0], "200 ok")
                answer = answer(text, conn) if callable(answer) else answer
                if answer:
                    conn.sendall(answer.encode() + b"\r\n")
        conn.close()

    def close(self) -> None:
        self.lsock.close()


def _client_for(peer: Scripted, **kw) -> FTPClient:
    c = FTPClient(**kw)
    c.connect("127.0.0.1", peer.port)
    c.login("u", "p")
    return c


def test_passive_connect_that_hangs_fails_within_2s():
    # A listener whose backlog is full: the kernel drops further SYNs, so connect() hangs.
    black = socket.socket()
    black.bind(("127.0.0.1", 0))
    black.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(black.getsockname())
        fillers.append(s)
    time.sleep(0.1)
    peer = Scripted({"USER": "230 in", "PASV": "227 Entering Passive Mode ({})".format(format_227(HostPort("127.0.0.1", black.getsockname()[1])).split("(")[1].rstrip(")"))})
    c = _client_for(peer, data="pasv")
    t = time.monotonic()
    with pytest.raises(FTPError) as err:
        c.get("x")
    assert err.value.stage == "data-connect"
    assert time.monotonic() - t < 4
    c.close()
    peer.close()
    for s in fillers:
        s.close()
    black.close()


def test_active_mode_nobody_connects_fails_within_2s():
    peer = Scripted({"USER": "230 in", "RETR": "150 opening"})
    c = _client_for(peer, data="port")
    t = time.monotonic()
    with pytest.raises(FTPError) as err:
        c.get("x")
    assert err.value.stage == "data-connect" and "did not connect" in err.value.reason
    assert time.monotonic() - t < 3
    c.close()
    peer.close()


def test_refused_data_setup_is_data_setup():
    peer = Scripted({"USER": "230 in", "PORT": "500 no active mode here"})
    c = _client_for(peer, data="port")
    with pytest.raises(FTPError) as err:
        c.get("x")
    assert err.value.stage == "data-setup" and err.value.code == 500
    c.close()
    peer.close()


def test_zos_algorithm_epsv_refused_falls_back_and_ignores_227_address():
    """EPSV4 TRUE + FWFRIENDLY TRUE: EPSV refused -> PASV for the rest of the session;
    PASSIVEIGNOREADDR TRUE connects to the control peer (127.0.0.1) with the 227 port, not to
    the announced 127.0.0.9 (where nothing listens: trusting it would fail)."""
    data_l = socket.socket()
    data_l.bind(("127.0.0.1", 0))
    data_l.listen(1)
    port = data_l.getsockname()[1]

    def retr(_text, ctrl):
        data_l.settimeout(5)
        conn, _ = data_l.accept()
        ctrl.sendall(b"150 here it comes\r\n")
        conn.sendall(b"z/OS data")
        conn.close()
        ctrl.sendall(b"226 done\r\n")

    peer = Scripted({"USER": "230 in", "EPSV": "500 EPSV not understood",
                     "PASV": f"227 Entering Passive Mode (127,0,0,9,{port >> 8},{port & 255})", "RETR": retr})
    cfg = ClientConfig(EPSV4=True, FWFRIENDLY=True, PASSIVEIGNOREADDR=True)
    c = _client_for(peer, config=cfg)
    assert c.get("x").bytes == 9
    assert c._no_epsv
    sent = [t.split()[0] for t in peer.seen]
    assert sent[sent.index("EPSV") + 1] == "PASV"
    c.close()
    peer.close()
    data_l.close()


def test_zos_algorithm_default_is_port():
    peer = Scripted({"USER": "230 in", "PORT": "500 no"})
    c = _client_for(peer)                       # EPSV4 FALSE, FWFRIENDLY FALSE: PORT
    with pytest.raises(FTPError):
        c.get("x")
    assert any(t.startswith("PORT ") for t in peer.seen)
    c.close()
    peer.close()


@pytest.mark.parametrize("version", ["TLSV1.2", "TLSV1.3"])
def test_session_reuse_chains_over_many_data_connections(serve, certs, tmp_path, version):
    """TLS 1.3 tickets resume once: each data connection resumes the ticket the previous one
    brought (the client reads it, also after an upload); TLS 1.2 reuses the session id."""
    srv = serve(SECURE_SESSION_REUSE="REQUIRED", TLSMAXVERSION=version)
    c = make_client(srv, certs, "tls", "epsv", ClientConfig(SECURE_SESSION_REUSE="REQUIRED"))
    assert c.tls_info["version"] == {"TLSV1.2": "TLSv1.2", "TLSV1.3": "TLSv1.3"}[version]
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    for i in range(3):
        assert c.put(src, f"u{i}.bin").sha256 == sha(PAYLOAD)
        assert c.get(f"u{i}.bin").sha256 == sha(PAYLOAD)
    c.quit()


# -- one observable effect per statement that the tests above do not cover -----------------------

def test_extensions_switch_features_off(serve, certs):
    c = make_client(serve(EXTENSIONS=["SIZE"]), certs, login=False)
    assert c.command("AUTH", "TLS").code == 502
    feat = c.command("FEAT").text
    assert "AUTH TLS" not in feat and "MDTM" not in feat and "SIZE" in feat
    c.login("alice", "pw")
    assert c.command("MDTM", "hello.txt").code == 500 and c.command("SIZE", "hello.txt").code == 213
    c.quit()


def test_client_secure_ftp_allowed_falls_back_required_refuses(serve, certs):
    srv = serve(EXTENSIONS=["SIZE"])                                 # no AUTH_TLS
    c = make_client(srv, certs, None, cfg=ClientConfig(SECURE_MECHANISM="TLS"))
    assert c.ctrl is None and c.get("hello.txt").bytes == 7          # ALLOWED: on in clear
    c.quit()
    with pytest.raises(FTPError) as err:
        make_client(srv, certs, None, cfg=ClientConfig(SECURE_MECHANISM="TLS", SECURE_FTP="REQUIRED"))
    assert err.value.stage == "tls" and err.value.code == 502


def test_secure_dataconn_never_and_portcommand_reject(serve, certs):
    srv = serve(SECURE_DATACONN="NEVER", PORTCOMMAND="REJECT")
    with pytest.raises(FTPError) as err:
        make_client(srv, certs, "tls", "port")
    assert err.value.code == 536                                    # PROT P refused
    c = make_client(srv, certs, "plain", "port")
    with pytest.raises(FTPError) as err:
        c.get("hello.txt")
    assert err.value.stage == "data-setup" and err.value.code == 504
    c.quit()


def test_tlsport_number_makes_the_client_implicit(serve, certs):
    srv = serve()
    port = srv.tls_address[1]
    c = FTPClient(ClientConfig(SECURE_MECHANISM="TLS", TLSPORT=port), ca=certs / "ca.pem")
    c.connect("127.0.0.1", port)
    assert c.implicit and c.ctrl is not None
    c.login("alice", "pw")
    assert "AUTH TLS" not in [line for _, d, line in c.transcript if d == "C>S"]
    c.quit()


def test_secureimplicitzos_mismatch_fails_in_tls(serve, certs):
    srv = serve(SECUREIMPLICITZOS=True)
    c = FTPClient(ClientConfig(MYOPENTIME=3), security="implicit", ca=certs / "ca.pem")
    t = time.monotonic()
    with pytest.raises(FTPError) as err:
        c.connect("127.0.0.1", srv.tls_address[1])
    assert err.value.stage == "tls" and time.monotonic() - t < 4


def test_ciphersuite_and_keyring(serve, certs):
    srv = serve(CIPHERSUITE=["SSL_AES_128_SHA"])
    for keyring in (str(certs), str(certs / "ca.pem"), "*AUTH*/*"):
        c = FTPClient(ClientConfig(KEYRING=keyring), security="tls", verify=True,
                      ca=certs / "ca.pem" if keyring == "*AUTH*/*" else None)
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice", "pw")
        assert c.tls_info == {"version": "TLSv1.2", "cipher": "AES128-SHA"}
        c.quit()


def test_tlstimeout_expires_the_session(serve, certs):
    # 3 s, not 1: under CI load the first data connection can come over a second after the login
    srv = serve(SECURE_SESSION_REUSE="REQUIRED", TLSTIMEOUT=3)
    c = make_client(srv, certs, "tls")
    assert c.get("hello.txt").bytes == 7
    time.sleep(3.5)
    with pytest.raises(FTPError) as err:
        c.get("hello.txt")
    assert err.value.code == 522
    c.quit()


def test_secure_hostname_mismatch(certs, root):
    named = pki.issue_server(certs / "named", "ftp.example", dns=["ftp.example"])
    srv = FTPServer(ServerConfig(LOGINDELAY=0), root, {"alice": "pw"}, cert=named.cert, key=named.key,
                    listen=("127.0.0.1", 0)).start()
    try:
        c = FTPClient(ClientConfig(SECURE_HOSTNAME="REQUIRED"), security="tls", verify=False)
        c.connect("127.0.0.1", srv.address[1])
        with pytest.raises(FTPError, match="does not name 127.0.0.1") as err:
            c.login("alice", "pw")
        assert err.value.stage == "tls"
        c.close()
    finally:
        srv.close()


def test_abor_cuts_a_running_transfer(serve, certs, root):
    (root / "huge.bin").write_bytes(b"\0" * (64 << 20))
    srv = serve()
    raw = Raw(srv.address[1])
    raw.login()
    port = int(raw.cmd("EPSV").text.split("|||")[1].rstrip("|)"))
    raw.sock.sendall(b"RETR huge.bin\r\n")
    data = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert raw.reply().code == 150
    data.recv(65536)                                  # started; now stalled by our not reading
    raw.sock.sendall(b"\xff\xf4\xff\xf2ABOR\r\n")     # Telnet IP + Synch, as RFC 959 asks
    assert [raw.reply().code, raw.reply().code] == [426, 226]
    assert raw.cmd("NOOP").code == 200
    data.close()
    raw.close()


def test_secureimplicitzos_mismatch_other_way_times_out_in_tls(serve, certs):
    srv = serve(SECUREIMPLICITZOS=False)          # handshake first; the client waits for a clear 220
    c = FTPClient(ClientConfig(MYOPENTIME=1), security="implicit-zos", ca=certs / "ca.pem")
    with pytest.raises(FTPError) as err:
        c.connect("127.0.0.1", srv.tls_address[1])
    assert err.value.stage == "tls" and "SECUREIMPLICITZOS" in err.value.reason
    c.close()


def test_tls_truncation_is_an_incomplete_transfer_both_ways(serve, certs, tmp_path, monkeypatch):
    """EOF without close_notify on a PROT P data connection is never a complete transfer."""
    from lab.ftps import data, tls

    def rude_finish(conn, clean=True, linger=5.0):      # TCP close, no close_notify
        (conn.sock if isinstance(conn, tls.TLSConn) else conn).close()
    srv = serve()
    c = make_client(srv, certs, "tls")
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    monkeypatch.setattr(data, "finish", rude_finish)
    with pytest.raises(FTPError) as err:
        c.get("big.bin")
    assert err.value.stage == "transfer" and "close_notify" in err.value.reason
    with pytest.raises(FTPError) as err:
        c.put(src, "up.bin")
    assert err.value.stage == "transfer" and err.value.code == 426
    assert any("426 Data connection closed without TLS close_notify" in e["line"] for e in srv.events)
    monkeypatch.undo()
    assert c.get("hello.txt").bytes == 7                     # the session is still usable
    c.quit()


# -- TYPE A ------------------------------------------------------------------------------------

TEXT = b"first line\nsecond\r\nthird\n" * 50000 + b"no line end"
WIRE = TEXT.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def ftplib_session(srv, security: str):
    if security == "plain":
        f = ftplib.FTP()
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        f = ftplib.FTP_TLS(context=ctx)
    f.connect("127.0.0.1", srv.address[1], timeout=20)
    f.login("alice", "pw")
    if security != "plain":
        f.prot_p()
    return f


@pytest.mark.parametrize("security", ["plain", "tls"])
def test_type_a_puts_crlf_on_the_wire_and_lf_in_files(serve, root, security):
    """Observed with Python's ftplib, whose transfercmd hands over the raw data connection."""
    (root / "text.txt").write_bytes(TEXT)
    f = ftplib_session(serve(), security)
    assert f.sendcmd("TYPE A").startswith("200")
    assert f.sendcmd("SIZE text.txt") == f"213 {len(WIRE)}"      # RFC 3659 4: octets as TYPE A
    for rest, expect in ((None, WIRE), (12, WIRE[12:])):
        conn = f.transfercmd("RETR text.txt", rest)
        got = b""
        while chunk := conn.recv(65536):
            got += chunk
        conn.close()
        f.voidresp()
        assert got == expect
    f.storlines("STOR lines.txt", io.BytesIO(b"a\nb\r\nc\n"))   # sends every line with CRLF
    assert (root / "lines.txt").read_bytes() == b"a\nb\nc\n"
    f.voidcmd("TYPE I")
    assert f.sendcmd("SIZE text.txt") == f"213 {len(TEXT)}"
    f.quit()


def test_type_a_rest_before_stor_is_554(serve):
    raw = Raw(serve().address[1])
    raw.login()
    assert raw.cmd("TYPE A").code == 200 and raw.cmd("REST 10").code == 350
    assert raw.cmd("STOR x.txt").code == 554
    assert raw.cmd("NOOP").code == 200      # the marker is gone with the refusal
    raw.close()


@pytest.mark.parametrize("security", ["plain", "tls"])
def test_client_ascii_get_and_put(serve, certs, root, tmp_path, security):
    (root / "text.txt").write_bytes(TEXT)
    c = make_client(serve(), certs, security)
    got = c.get("text.txt", tmp_path / "t.txt", ascii=True)
    unix = TEXT.replace(b"\r\n", b"\n")
    assert got.bytes == len(WIRE) and (tmp_path / "t.txt").read_bytes() == unix and got.sha256 == sha(unix)
    up = c.put(tmp_path / "t.txt", "back.txt", ascii=True)
    assert up.bytes == len(WIRE) and (root / "back.txt").read_bytes() == unix
    with pytest.raises(FTPError, match="REST"):
        c.get("text.txt", tmp_path / "t.txt", rest=5, ascii=True)
    sent = [line for _, d, line in c.transcript if d == "C>S"]
    assert sent.count("TYPE A") == 2
    c.quit()
