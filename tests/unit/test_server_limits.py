"""The built-in server under a connection flood: MAXSESSIONS, MAXSESSIONSPERADDRESS, LOGINTIMEOUT,
and PASV spam. Hostile clients open more control connections than the server should hold, connect
and never send a TLS ClientHello or a command, or send one byte at a time (slowloris). All on
loopback, with 127.0.0.x source addresses standing for different clients; bounded counts."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import ftps_fixtures as fixtures
import pytest
from ftps_fixtures import RawControl, event_text, server_pki, server_root, start_ftps_server

from lab.endpoints.peers import free_port_range
from lab.ftps.config import ServerConfig, parse_ftpdata_text
from lab.ftps.errors import InputError
from lab.ftps.grammar import parse_227
from lab.ftps.limits import Deadlines, RefusalLog, SessionSlots
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    return server_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def root(tmp_path) -> Path:
    return server_root(tmp_path, {"f.txt": b"hello\n"})


@pytest.fixture
def serve(pkidir, root):
    started: list[FTPServer] = []

    def start(implicit: bool = False, **statements) -> FTPServer:
        srv = start_ftps_server(pkidir, root, {"alice": "pw"}, ca=False, implicit=implicit, **statements)
        started.append(srv)
        return srv
    yield start
    for srv in started:
        srv.close()


class From(RawControl):
    """A control connection from a given 127.0.0.x address (another client, as the server sees it)."""

    def __init__(self, addr: tuple[str, int], source: str = "127.0.0.1", greet: bool = True):
        self.source = source
        super().__init__(addr, greet)

    def open(self, addr: tuple[str, int]) -> socket.socket:
        s = socket.socket()
        s.bind((self.source, 0))
        s.settimeout(10)
        s.connect(addr)
        return s

    def ended(self, timeout: float = 5) -> bool:
        """Did the server close the connection (EOF or reset) within timeout, sending nothing more?"""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def drained(self, timeout: float = 5) -> bool:
        """Did the server close the connection within timeout (whatever it sent before)?"""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(4096):
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False

    def drip(self, data: bytes, pause: float) -> float | None:
        """Send data a byte at a time, `pause` seconds apart: the seconds until the server closed the
        connection, or None if it never did."""
        started = time.monotonic()
        for i in range(len(data)):
            try:
                self.sock.sendall(data[i:i + 1])
            except OSError:
                return time.monotonic() - started
            if self.drained(pause):
                return time.monotonic() - started
        return None


def wait_for(cond, timeout: float = 5.0) -> bool:
    return fixtures.wait_for(cond, timeout)


def session_threads() -> int:
    return sum(t.name.startswith("ftps-session-") for t in threading.enumerate())


def refusals(srv: FTPServer) -> list[str]:
    return [e["line"] for e in srv.events if e["line"].startswith("connection refused")]


def tls_client() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE     # what is tested is not the certificate
    return ctx


# -- the statements -----------------------------------------------------------------------------------

def test_statements_defaults_and_bad_values():
    cfg = ServerConfig()
    assert (cfg.MAXSESSIONS, cfg.MAXSESSIONSPERADDRESS, cfg.LOGINTIMEOUT) == (100, 10, 60)
    cfg = parse_ftpdata_text("MAXSESSIONS 5\nmaxsessionsperaddress 2\nLOGINTIMEOUT 0\n", "server")
    assert (cfg.MAXSESSIONS, cfg.MAXSESSIONSPERADDRESS, cfg.LOGINTIMEOUT) == (5, 2, 0)
    with pytest.raises(InputError, match=r"x.data:2: MAXSESSIONSPERADDRESS: .*-1 is outside"):
        parse_ftpdata_text("MAXSESSIONS 5\nMAXSESSIONSPERADDRESS -1\n", "server", "x.data")
    with pytest.raises(InputError, match="LOGINTIMEOUT is a server statement"):
        parse_ftpdata_text("LOGINTIMEOUT 5\n", "client")


# -- MAXSESSIONS, MAXSESSIONSPERADDRESS ------------------------------------------------------------------

def test_one_address_over_its_limit_gets_421_and_no_thread(serve):
    srv = serve(MAXSESSIONSPERADDRESS=3, MAXSESSIONS=0)
    held = [From(srv.address, "127.0.0.21") for _ in range(3)]
    assert all(c.greeting.code == 220 for c in held)
    threads = session_threads()
    for _ in range(5):
        extra = From(srv.address, "127.0.0.21")
        assert extra.greeting.code == 421
        assert extra.greeting.text == "There are too many connections from your internet address."
        assert extra.ended()
    assert session_threads() == threads and srv.session_count == 3     # no thread for a refused one
    other = From(srv.address, "127.0.0.22")                             # another client is welcome
    assert other.greeting.code == 220 and other.cmd("NOOP").code == 200
    assert all(c.cmd("NOOP").code == 200 for c in held)                  # and the 3 still work
    line = refusals(srv)[0]
    assert "MAXSESSIONSPERADDRESS 3 reached, 421 sent" in line, line
    assert any(e["session"] == 0 and e["peer"].startswith("127.0.0.21:") for e in srv.events)


def test_all_sessions_over_maxsessions_get_421(serve):
    srv = serve(MAXSESSIONS=4, MAXSESSIONSPERADDRESS=0)
    held = [From(srv.address, f"127.0.0.{30 + i}") for i in range(4)]
    assert all(c.greeting.code == 220 for c in held)
    extra = From(srv.address, "127.0.0.40")
    assert extra.greeting.code == 421 and extra.greeting.text == "Too many users - try again later."
    assert extra.ended()
    assert srv.session_count == 4
    held[0].cmd("QUIT")
    assert wait_for(lambda: srv.session_count == 3)
    assert From(srv.address, "127.0.0.40").greeting.code == 220          # a slot came back


def test_implicit_tls_over_the_limit_is_closed_without_a_reply(serve):
    """Handshake first: a clear 421 would be garbage to a TLS client, and a handshake would spend
    a private-key operation on the refused connection: closed at once, nothing sent."""
    srv = serve(implicit=True, SECUREIMPLICITZOS=False, MAXSESSIONSPERADDRESS=2)
    ctx = tls_client()
    held = []
    for _ in range(2):
        s = ctx.wrap_socket(socket.create_connection(srv.tls_address, timeout=10))
        assert s.recv(4096).startswith(b"220")
        held.append(s)
    raw = From(srv.tls_address, greet=False)
    assert raw.ended(), "the refused implicit connection got bytes or stayed open"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(socket.create_connection(srv.tls_address, timeout=10))
    assert srv.session_count == 2
    assert "MAXSESSIONSPERADDRESS 2 reached, closed without a reply (implicit TLS" in refusals(srv)[0]


def test_implicit_zos_over_the_limit_gets_a_clear_421(serve):
    """SECUREIMPLICITZOS TRUE: the server speaks first in clear (220), so a clear 421 is in place."""
    srv = serve(implicit=True, SECUREIMPLICITZOS=True, MAXSESSIONSPERADDRESS=1)
    first = From(srv.tls_address)
    assert first.greeting.code == 220
    extra = From(srv.tls_address)
    assert extra.greeting.code == 421 and extra.ended()


def test_a_flood_of_refusals_is_a_few_log_lines(serve):
    srv = serve(MAXSESSIONSPERADDRESS=1)
    held = From(srv.address)
    assert held.greeting.code == 220
    for _ in range(30):
        c = From(srv.address)
        assert c.greeting.code == 421
        c.close()
    assert len(refusals(srv)) == 1, refusals(srv)      # 30 refusals well inside REFUSAL_LOG_EVERY


def test_refusal_log_counts_what_it_did_not_log():
    now = [0.0]
    rl = RefusalLog(every=10, clock=lambda: now[0])
    assert rl.note() == 0
    assert [rl.note() for _ in range(29)] == [None] * 29
    now[0] = 10.0
    assert rl.note() == 29 and rl.note() is None


@pytest.mark.timeout(40)
def test_slots_come_back_however_a_session_ends(serve):
    """QUIT, a close, a reset, a failed TLS handshake (explicit and implicit), junk, a login timeout:
    each time the two slots of the address are free again."""
    srv = serve(implicit=True, SECUREIMPLICITZOS=False, MAXSESSIONSPERADDRESS=2, LOGINTIMEOUT=1)
    src = "127.0.0.50"

    def quit_(c):
        c.cmd("QUIT")

    def close(c):
        c.close()

    def reset(c):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    def bad_auth_tls(c):
        assert c.cmd("AUTH TLS").code == 234
        c.sock.sendall(b"\x16\x03\x01\x00\x05junk!")               # not a ClientHello
        assert c.drained()

    def login_then_reset(c):
        assert c.login().code == 230
        c.cmd("PASV")                                               # holds a passive listener too
        reset(c)

    def login_timeout(c):
        assert c.reply().code == 421 and c.ended()                  # 421, then closed

    ways = [quit_, close, reset, bad_auth_tls, login_then_reset, login_timeout]
    for way in ways:
        pair = [From(srv.address, src) for _ in range(2)]
        assert [c.greeting.code for c in pair] == [220, 220], way.__name__
        assert From(srv.address, src).greeting.code == 421, way.__name__
        for c in pair:
            way(c)
        assert wait_for(lambda: srv.session_count == 0 and srv.slots.held() == 0), way.__name__
    # the implicit port: a handshake that fails, and one that never starts (LOGINTIMEOUT)
    for payload in (b"\x16\x03\x01\x00\x05junk!", b""):
        pair = [From(srv.tls_address, src, greet=False) for _ in range(2)]
        for c in pair:
            c.sock.sendall(payload)
        assert all(c.drained(5) for c in pair)      # (a TLS alert first, for the junk)
        assert wait_for(lambda: srv.session_count == 0 and srv.slots.held() == 0), payload
    assert [c.greeting.code for c in (From(srv.address, src), From(srv.address, src))] == [220, 220]


# -- LOGINTIMEOUT: connections that never log in -----------------------------------------------------------

def test_a_silent_connection_is_closed_after_logintimeout(serve):
    srv = serve(LOGINTIMEOUT=1)                     # INACTIVE stays 300: it alone would wait 5 minutes
    started = time.monotonic()
    c = From(srv.address)
    assert c.greeting.code == 220
    reply = c.reply()                               # nothing sent: the server speaks once, then closes
    took = time.monotonic() - started
    assert reply.code == 421 and "Login timeout (1 seconds)" in reply.text
    assert c.ended() and 0.9 < took < 3, took
    assert wait_for(lambda: srv.session_count == 0 and srv.slots.held() == 0)
    assert "no login within LOGINTIMEOUT (1 s)" in event_text(srv)


def test_a_byte_at_a_time_does_not_stretch_logintimeout(serve):
    srv = serve(LOGINTIMEOUT=1)
    took = From(srv.address).drip(b"USER alice and a very long time to finish this line" * 4, 0.1)
    assert took is not None and 0.9 < took < 3, took
    assert wait_for(lambda: srv.session_count == 0)


def test_commands_without_a_login_do_not_stretch_it(serve):
    srv = serve(LOGINTIMEOUT=1)
    c = From(srv.address)
    started = time.monotonic()
    codes = []
    while time.monotonic() - started < 4:
        try:
            codes.append(c.cmd("NOOP").code)
        except (ConnectionError, OSError):
            break
        time.sleep(0.1)
    assert codes[-1] == 421 and time.monotonic() - started < 3, codes[-3:]


def test_implicit_tls_handshake_is_bounded_too(serve):
    """Handshake first: silent, or a real ClientHello one byte at a time - closed after LOGINTIMEOUT."""
    srv = serve(implicit=True, SECUREIMPLICITZOS=False, LOGINTIMEOUT=1)
    silent = From(srv.tls_address, greet=False)
    # a real ClientHello, to send in drops
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_client().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    took = From(srv.tls_address, greet=False).drip(hello[:-1], 0.05)     # never the whole hello
    assert took is not None and 0.9 < took < 3, took
    assert silent.drained(3)                        # (OpenSSL sends an alert as it gives up)
    assert wait_for(lambda: srv.session_count == 0)
    assert "TLS handshake not done within LOGINTIMEOUT (1 s)" in event_text(srv)


def test_logged_in_sessions_are_not_timed_by_it_but_rein_is(serve):
    srv = serve(LOGINTIMEOUT=1)
    c = From(srv.address)
    assert c.login().code == 230
    time.sleep(1.3)
    assert c.cmd("NOOP").code == 200                # logged in: only INACTIVE applies
    assert c.cmd("REIN").code == 220                # logged out again: a new login phase, bounded
    assert c.reply().code == 421 and c.ended()


def test_logintimeout_0_is_no_limit(serve):
    srv = serve(LOGINTIMEOUT=0, INACTIVE=2)
    c = From(srv.address)
    time.sleep(1.2)
    assert c.cmd("NOOP").code == 200


# -- PASV / EPSV spam ------------------------------------------------------------------------------------

def test_pasv_spam_holds_one_passive_port(serve):
    """A session asking PASV and EPSV over and over holds one listener: two ports serve two
    sessions, and a third is told 425."""
    lo, hi = free_port_range(2)
    srv = serve(PASSIVEDATAPORTS=(lo, hi))
    spammer, other, third = From(srv.address), From(srv.address), From(srv.address)
    for c in (spammer, other, third):
        assert c.login().code == 230
    last = None
    for i in range(30):
        r = spammer.cmd("PASV" if i % 2 else "EPSV")
        assert r.code in (227, 229), r
        last = parse_227(r.text).port if r.code == 227 else int(r.text.split("|||")[1].split("|")[0])
    assert lo <= last <= hi
    r = other.cmd("PASV")
    assert r.code == 227, r
    assert third.cmd("EPSV").code == 425                 # spammer 1 + other 1 = the whole range
    spammer.sock.sendall(b"RETR f.txt\r\n")              # and the spammer's last port is the live one
    with socket.create_connection(("127.0.0.1", last), timeout=5) as data:
        assert spammer.reply().code == 150
        assert data.recv(100) == b"hello\n"
    assert spammer.reply().code == 226


# -- the parts -------------------------------------------------------------------------------------------

def test_session_slots_per_address_and_in_all():
    slots = SessionSlots(max_total=3, max_per_address=2)
    assert slots.take("10.0.0.1") is None and slots.take("10.0.0.1") is None
    assert slots.take("10.0.0.1") == "MAXSESSIONSPERADDRESS"
    assert slots.take("::ffff:10.0.0.1") == "MAXSESSIONSPERADDRESS"     # the same client
    assert slots.take("2001:db8::1") is None
    assert slots.take("2001:db8::2") == "MAXSESSIONS"
    slots.give_back("10.0.0.1")
    assert slots.take("2001:db8::2") is None
    assert slots.held() == 3 and slots.held("2001:db8::ffff") == 2       # one /64 is one client
    assert slots.take("2001:db8:1::1") == "MAXSESSIONS"
    for ip in ("10.0.0.1", "2001:db8::1", "2001:db8::2"):
        slots.give_back(ip)
    assert slots.held() == 0
    with pytest.raises(RuntimeError):
        slots.give_back("10.0.0.1")
    unlimited = SessionSlots(0, 0)
    assert all(unlimited.take("10.0.0.1") is None for _ in range(1000))


def test_deadlines_fire_once_unless_disarmed():
    d = Deadlines()
    fired: list[str] = []
    try:
        d.arm("a", 0.1, lambda: fired.append("a"))
        d.arm("b", 0.1, lambda: fired.append("b"))
        d.arm("c", 0.3, lambda: fired.append("c"))
        d.arm("c", 0.05, lambda: fired.append("c2"))          # re-armed: only the new one
        assert d.disarm("b") is True
        assert wait_for(lambda: len(fired) == 2, 2)
        time.sleep(0.4)
        assert sorted(fired) == ["a", "c2"]
        assert d.disarm("a") is False                          # it fired already
    finally:
        d.close()
