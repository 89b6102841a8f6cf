"""The lab's FTP/FTPS server: RFC 959/2228/2428/3659/4217 with the z/OS statements.

Public API
    srv = FTPServer(config=ServerConfig(), root="/srv/ftp", users={"alice": "pw"},
                    cert=None, key=None, ca=None, listen=("0.0.0.0", 21), tls_listen=None,
                    log=None)
    srv.start()            # accept in a background thread; srv.address / srv.tls_address = bound
    srv.serve_forever()    # or block in the caller (Ctrl-C -> close)
    srv.close()            # stop accepting, end every session, join the threads
    srv.session_count      # sessions alive now
  tls_listen=(addr, port) opens the implicit-TLS listener (z/OS TLSPORT; pass config.TLSPORT):
  SECUREIMPLICITZOS TRUE sends a clear 220 then does the handshake, FALSE handshakes first.
  A listen port equal to TLSPORT (not 0) is implicit too, as on z/OS (srv.listen_implicit).
  cert/key enable AUTH TLS (with EXTENSIONS AUTH_TLS); ca (a PEM file) and KEYRING give the CAs
  trusted for client certificates (KEYRING `*AUTH*/*` = the ca file).
  log(event: dict) is called for every command and reply:
      {"ts": float, "session": int, "peer": "ip:port", "dir": "C>S" | "S>C" | "info", "line": str}
  with passwords masked (PASS ****); the same lines go to logging.getLogger("lab.ftps.server").

Behaviour worth knowing (reference/zos-ftp-and-rfcs.md):
- REPLYMODE ZOS: a data command under SECURE_DATACONN PRIVATE/SAFE with PROT C gets the
  multi-line `425- Server requires protected data connection.`; REPLYMODE RFC gives 522.
- CCC: 533 without TLS, 534 on the implicit port, 534 with SECURE_CTRLCONN SAFE/PRIVATE or at
  TLSRFCLEVEL DRAFT; RFC4217 exchanges close_notify, CCCNONOTIFY sends no alert. Afterwards
  PBSZ/PROT get `503 Command PROT rejected -- PROT not allowed after CCC`.
- PASSIVEDATAPORTS: the passive port is always inside the range; all busy -> 425.
  PASSIVEDATACONN NOREDIRECT closes passive data connections from another address.
  PORTCOMMAND REJECT / PORTCOMMANDIPADDR NOREDIRECT / PORTCOMMANDPORT NOLOWPORTS -> 504.
- Active data connections come from port L-1 of the control port L (20 for 21), SO_REUSEADDR;
  without PORT/EPRT the server uses the default data port (the client's control port).
- On data connections the server is always the TLS server; SECURE_SESSION_REUSE REQUIRED
  refuses (522) a data handshake that did not resume a session. Session binding: a data
  connection that resumes a session other than one its own control connection was given (a
  thief's own AUTH TLS session: the cache is shared) is refused (522) under ALLOWED too, before
  a byte of the file moves (STOR truncates only after the check).
- A transfer runs in a helper thread while the session thread watches the control connection:
  ABOR cuts the data connection and is answered 426 + 226; other commands wait their turn.
- TLS: TLSMAXVERSION (lab statement, default TLSV1.2, see config.py for why), CIPHERSUITE order
  is the server's preference, TLSTIMEOUT is the session cache lifetime.
- TLSMECHANISM ATTLS: TLS as the AT-TLS policy (ATTLSPOLICY, lab.ftps.attls) says for each
  connection: role, versions, ciphers, keyring. No usable rule (none, TTLSEnabled Off,
  ApplicationControlled Off) -> AUTH 534; SecondaryMap Off and no rule for a data connection
  -> 522; TLSRFCLEVEL CCCNONOTIFY -> CCC fails the session (421, closed), as IBM documents.
- The root directory cannot be left, also not through symlinks (paths are resolved and checked).
- Floods (lab/ftps/limits.py): over MAXSESSIONS or MAXSESSIONSPERADDRESS a connection gets 421 from
  the accept loop and is closed, without a thread (a handshake-first implicit port: closed, no reply);
  a session not logged in LOGINTIMEOUT seconds after connecting (or REIN) gets 421 and is closed.
- TYPE A (the RFC 959 default) sends files with CRLF line ends and stores uploads with LF
  (lab.ftps.netascii); SIZE and REST count TYPE A octets; REST before STOR in TYPE A is 554.
"""

from __future__ import annotations

import errno
import fcntl
import hmac
import logging
import os
import random
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from lab.ftps import attls, grammar, gss, limits, netascii, waiting
from lab.ftps import data as datapath
from lab.ftps import tls as tlsmod
from lab.ftps.config import ServerConfig, normalise_cert_key
from lab.ftps.grammar import GrammarError, LineReader, format_reply
from lab.ftps.keepalive import keep_alive
from lab.ftps.throttle import LoginThrottle

log = logging.getLogger("lab.ftps.server")

MAX_LINE = 2048
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class _Close(Exception):
    """End the session (QUIT, idle timeout, TLS failure, peer gone)."""


#: What a path that changed under a command raises (never a network error: those end the session).
_FILE_RACES = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


class _Refuse(Exception):
    """A reply that ends the current command with an error."""

    def __init__(self, code: int, text: str | list[str]):
        super().__init__(text)
        self.code, self.text = code, text


class FTPServer:
    def __init__(self, config: ServerConfig | None = None, root: str | Path = ".",
                 users: dict[str, str] | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, ca: str | Path | None = None,
                 listen: tuple[str, int] = ("0.0.0.0", 21), tls_listen: tuple[str, int] | None = None,
                 log: Callable[[dict], None] | None = None, keytab: str | Path | None = None):
        self.config = config or ServerConfig()
        # Kerberos (EXTENSIONS AUTH_GSSAPI): the keytab given, or the one KRB5_KTNAME names
        self.keytab = str(keytab) if keytab else os.environ.get("KRB5_KTNAME") or None
        if keytab:
            gss.check_keytab(self.keytab)
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"FTP root {root} is not a directory")
        self.users = dict(users or {})
        self.cert, self.key, self.ca = cert, key, ca
        self.log_cb = log
        self.tls_ctx = None
        self._sscn_ctx = None
        self.attls: attls.Policy | None = None       # TLSMECHANISM ATTLS: TLS as the policy says
        if self.config.TLSMECHANISM == "ATTLS":
            # KEYRING, CIPHERSUITE and TLSTIMEOUT are ignored with ATTLS (IBM): the policy rules
            self.attls = attls.load_policy(self.config.ATTLSPOLICY)
            self.attls_contexts = attls.Contexts(cert, key, ca)
        elif cert:
            c = self.config
            auth = {"NO_CLIENT_AUTH": "none"}.get(c.SECURE_LOGIN, "required")
            self.tls_ctx = tlsmod.server_context(
                cert, key or cert, tlsmod.keyring_files(c.KEYRING, ca), client_auth=auth,
                ciphers=c.CIPHERSUITE, session_timeout=c.TLSTIMEOUT, max_version=c.TLSMAXVERSION)
        tls_possible = self.tls_ctx is not None or self.attls is not None
        if tls_listen and not tls_possible:
            raise ValueError("an implicit TLS listener needs cert and key")
        # z/OS: connections to the TLSPORT are implicit, whichever way the server was told to
        # listen there (IBM: "If you start the FTP server on the protected port ... code a
        # SECUREIMPLICITZOS statement"); TLSPORT 0 means no port is implicit.
        main_implicit = bool(self.config.TLSPORT) and listen[1] == self.config.TLSPORT
        if main_implicit and not tls_possible:
            raise ValueError(f"port {listen[1]} is the TLSPORT, so its connections are implicit TLS: give "
                             f"a certificate and key, or TLSPORT 0 (or another port) for a clear server")
        self._listeners: list[tuple[socket.socket, bool]] = [(self._listen(listen), main_implicit)]
        if tls_listen:
            self._listeners.append((self._listen(tls_listen), True))
        self._lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._ids = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._passive_lock = threading.Lock()
        self.throttle = LoginThrottle(self.config.LOGINLIMIT, self.config.LOGINWINDOW)
        # MAXSESSIONS / MAXSESSIONSPERADDRESS / LOGINTIMEOUT (lab/ftps/limits.py)
        self.slots = limits.SessionSlots(self.config.MAXSESSIONS, self.config.MAXSESSIONSPERADDRESS)
        self.login_deadlines = limits.Deadlines()
        self._refusals = limits.RefusalLog()
        self._wake_r, self._wake_w = os.pipe()     # close() wakes the accept loop at once

    def sscn_context(self):
        """The TLS client context of data connections after SSCN ON: the server's certificate (so a
        peer asking for a client certificate gets one), the CAs of KEYRING/--ca to verify the
        other server with (none given: not verified, like curl -k), the server's ciphers."""
        if self._sscn_ctx is None:
            c = self.config
            cas = tlsmod.keyring_files(c.KEYRING, self.ca)
            self._sscn_ctx = tlsmod.client_context(cas, self.cert, self.key or self.cert, verify=bool(cas),
                                                   ciphers=c.CIPHERSUITE, max_version=c.TLSMAXVERSION)
        return self._sscn_ctx

    @staticmethod
    def _listen(addr: tuple[str, int]) -> socket.socket:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(128)
        return s

    @property
    def address(self) -> tuple[str, int]:
        return self._listeners[0][0].getsockname()[:2]

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """The first implicit-TLS listener's address (--tls-listen, or --listen on the TLSPORT)."""
        return next((s.getsockname()[:2] for s, implicit in self._listeners if implicit), None)

    @property
    def listen_implicit(self) -> bool:
        """Is the main listener (listen=) the TLSPORT, so that its sessions are implicit?"""
        return self._listeners[0][1]

    @property
    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def start(self) -> FTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name="ftps-accept", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        socks = {s.fileno(): (s, implicit) for s, implicit in self._listeners}
        self.login_deadlines.start()      # with the server, not its first session: a steady thread count
        try:
            while not self._closed.is_set():
                try:
                    ready, _ = waiting.select([*socks, self._wake_r], [], 5)
                except (OSError, ValueError):
                    break
                for fd in ready:
                    if fd == self._wake_r:
                        return
                    lsock, implicit = socks[fd]
                    try:
                        conn, peer = lsock.accept()
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            time.sleep(0.1)        # out of descriptors: let sessions end
                        continue
                    self._admit(conn, _unmap(peer[0]), peer[1], implicit)
        except KeyboardInterrupt:
            pass
        finally:
            if self._thread is None or threading.current_thread() is not self._thread:
                self.close()

    def _admit(self, conn: socket.socket, ip: str, port: int, implicit: bool) -> None:
        """A session for an accepted connection, if a slot is free (MAXSESSIONS, MAXSESSIONSPERADDRESS);
        otherwise 421 and close, in this thread: a refused connection never costs a thread."""
        refused = self.slots.take(ip)
        if refused is not None:
            self._refuse(conn, f"{ip}:{port}", implicit, refused)
            return
        session = None
        try:
            # Replies are small writes: without NODELAY each 226 waits for the
            # client's delayed ACK (~40 ms), which caps short transfers.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive(conn, self.config.FTPKEEPALIVE)
            with self._lock:
                self._ids += 1
                session = _Session(self, conn, implicit, self._ids, ip)
                self._sessions[session.id] = session
            session.thread = threading.Thread(target=session.run, name=f"ftps-session-{session.id}", daemon=True)
            session.thread.start()
        except Exception as exc:     # peer gone before we looked, no threads left, ...
            log.warning("cannot start a session: %r", exc)
            conn.close()
            if session is None:
                self.slots.give_back(ip)
            else:
                self._ended(session)

    _TOO_MANY = {"MAXSESSIONS": "Too many users - try again later.",
                 "MAXSESSIONSPERADDRESS": "There are too many connections from your internet address."}

    def _refuse(self, conn: socket.socket, peer: str, implicit: bool, statement: str) -> None:
        """421 and close a connection over a session limit, and log it (at most a line every
        REFUSAL_LOG_EVERY seconds, so that a flood does not flood the log)."""
        limit = getattr(self.config, statement)
        if implicit and not self.config.SECUREIMPLICITZOS:
            # The client's first bytes are a ClientHello: a clear 421 would be a broken TLS record to
            # it, and a handshake first would spend the CPU (a private-key operation) and a thread or
            # the accept loop's time on exactly the connection that is refused. So: closed, no reply.
            how = "closed without a reply (implicit TLS, handshake first)"
        else:
            # A fresh socket's send buffer is empty: this short write never blocks the accept loop.
            how = "421 sent"
            try:
                conn.setblocking(False)
                conn.send(format_reply(421, self._TOO_MANY[statement]))
            except OSError:
                how = "421 not sent (the peer is gone)"
        conn.close()
        unlogged = self._refusals.note()
        if unlogged is not None:
            more = f"; {unlogged} more refused since the last such line" if unlogged else ""
            self._event(0, peer, "info", f"connection refused: {statement} {limit} reached, {how}{more}")

    def _ended(self, session: _Session) -> None:
        with self._lock:
            gone = self._sessions.pop(session.id, None)
        if gone is not None:                   # its slot, once, whichever way the session ended
            self.slots.give_back(session.slot)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        os.write(self._wake_w, b"x")
        for s, _ in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(2)
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.abort()
        for session in sessions:
            if session.thread:
                session.thread.join(3)
        self.login_deadlines.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> FTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- logging
    def emit(self, session: _Session, direction: str, line: str) -> None:
        """Log one line. The one place every log line passes: what the client sent is masked
        (PASS in any spelling) and every line is made printable, so client bytes can neither show
        a password nor forge a log line (a CR, an escape sequence)."""
        self._event(session.id, session.peer_text, direction, line)

    def _event(self, ident: int, peer: str, direction: str, line: str) -> None:
        """emit() for a session by number (0: a connection that got no session)."""
        line = grammar.loggable(line)
        event = {"ts": time.time(), "session": ident, "peer": peer, "dir": direction, "line": line}
        log.info("[%d %s] %s %s", ident, peer, direction, line)
        if self.log_cb:
            try:
                self.log_cb(event)
            except Exception:     # a broken logger must not kill a session
                log.exception("log callback failed")


class _Session:
    """One control connection. Runs in its own thread; all replies are written from it."""

    def __init__(self, server: FTPServer, sock: socket.socket, implicit: bool, ident: int, slot: str):
        self.server, self.cfg, self.id = server, server.config, ident
        self.slot = slot                 # the address its session slot is held for (FTPServer._admit)
        self.sock = sock                 # the TCP control socket
        # The deadline thread shuts the socket down (LOGINTIMEOUT), close() too: never after this
        # thread closed it (the descriptor number may belong to a new connection by then).
        self._sock_lock = threading.Lock()
        self._sock_closed = False
        self._login_timer = False        # LOGINTIMEOUT armed
        self._login_expired = False      # ... and fired: reads end, the session says 421 and closes
        self.ctrl = None                 # TLSConn while the control channel is protected
        # The TLS sessions this control connection was given (its handshake's, its data
        # connections'): the only ones a data connection of this session may resume. Made anew by
        # each control handshake (AUTH after REIN too); kept after CCC, whose data stay protected.
        self.tls_family = tlsmod.SessionFamily()
        self.implicit = implicit
        self.thread: threading.Thread | None = None
        peer = sock.getpeername()
        self.peer_ip, self.peer_port = _unmap(peer[0]), peer[1]
        local = sock.getsockname()
        self.local_ip, self.local_port = _unmap(local[0]), local[1]
        self.peer_text = f"{self.peer_ip}:{self.peer_port}"
        # TLSMECHANISM ATTLS: the AT-TLS rule that maps this (inbound) control connection
        self.mapping = server.attls.match("inbound", self.local_port, self.peer_port, self.local_ip,
                                          self.peer_ip) if server.attls is not None else None
        self._reader = LineReader(MAX_LINE)
        self._lines: deque[bytes] = deque()   # complete lines read ahead (LineReader.TOO_LONG = overlong)
        # Kerberos (RFC 2228): the GSSAPI exchange after AUTH GSSAPI, and the protection of the
        # command being handled (None: clear; False: MIC, replies 631; True: ENC, replies 632)
        self.gss: gss.Acceptor | None = None
        self.cmd_private: bool | None = None
        self._opened: deque[tuple[str, str, bool]] = deque()   # (verb shown, inner line, private)
        self.pbsz_size = 0
        self._aborted = False
        # The client certificate of the TLS session CCC ended: it still identifies the user.
        self._cert_before_ccc: x509.Certificate | None = None
        self.reset()

    # -- state
    def reset(self) -> None:
        """Login and transfer state (connect, AUTH and REIN start over from here)."""
        self.user: str | None = None
        self.logged_in = False
        self.cwd = "/"
        self.type = "A"
        self.rest = 0
        self.rename_from: str | None = None
        self.pbsz = self.implicit          # implicit sessions behave as if PBSZ 0 was sent
        self.prot = self.cfg.IMPLICITPROT if self.implicit else "C"
        self.cleared = False               # CCC done
        self.epsv_all = False
        self.active: tuple[str, int] | None = None
        self._close_passive()
        self.passive: socket.socket | None = None
        self.reuse_required = self.cfg.SECURE_SESSION_REUSE == "REQUIRED"
        self.sscn = False                  # SSCN ON: this server is the TLS client of data connections

    def _close_passive(self) -> None:
        p = getattr(self, "passive", None)
        if p is not None:
            p.close()
        self.passive = None

    # -- I/O
    def send(self, code: int, text: str | list[str], dashed: bool = False) -> None:
        """Every reply goes through format_reply: no line on the wire without its code (or, inside a
        multi-line reply, a leading space), whatever client text it echoes. Logged first, so the
        log has the reply by the time the client reads it."""
        raw = format_reply(code, text, dashed)
        mark = "" if self.cmd_private is None else ("[632] " if self.cmd_private else "[631] ")
        for line in raw.decode("utf-8", "replace").split("\r\n")[:-1]:
            self.server.emit(self, "S>C", mark + line)
        if self.cmd_private is not None:       # the reply to a MIC/ENC command: 631/632, line by line
            raw = self.gss.protection.reply_lines(raw, self.cmd_private)
        self._write(raw)

    @property
    def _channel(self):
        """What carries the control channel now: the TLSConn while protected, else the TCP socket."""
        return self.ctrl if self.ctrl is not None else self.sock

    def _write(self, raw: bytes) -> None:
        try:
            self._channel.sendall(raw)
        except (OSError, tlsmod.TLSTimeout) as exc:
            raise _Close(f"cannot write reply: {exc}") from None

    def _read_some(self) -> bytes:
        try:
            data = self._channel.recv(8192)
        except (BlockingIOError, tlsmod.TLSTimeout):
            self._login_timeout()
            self.send(421, f"Timeout ({self.cfg.INACTIVE} seconds): closing control connection.")
            raise _Close("idle timeout") from None
        except (OSError, tlsmod.Truncated) as exc:
            self._login_timeout()
            raise _Close(f"control connection: {exc}") from None
        if not data:
            self._login_timeout()
            raise _Close("peer closed the control connection")
        return data

    # -- LOGINTIMEOUT: the time from connecting (or REIN) to a completed login
    def _arm_login_timer(self) -> None:
        if self.cfg.LOGINTIMEOUT:
            self._login_timer = True
            self.server.login_deadlines.arm(self.id, self.cfg.LOGINTIMEOUT, self._login_time_up)

    def _login_time_up(self) -> None:
        """In the deadline thread: stop this session's reads (a read in progress, a TLS handshake too,
        ends at once), so that it answers 421 and closes. A peer that does not even read our reply
        is cut off completely a few seconds later."""
        self._login_expired = True
        self._shutdown(socket.SHUT_RD)
        self.server.login_deadlines.arm(self.id, _LOGIN_GRACE, self.abort)

    def _login_timeout(self) -> None:
        """When a read ended because LOGINTIMEOUT passed: 421 and end the session."""
        if self._login_expired:
            self.send(421, f"Login timeout ({self.cfg.LOGINTIMEOUT} seconds): closing control connection.")
            raise _Close(f"no login within LOGINTIMEOUT ({self.cfg.LOGINTIMEOUT} s)")

    def _read_lines(self) -> None:
        """Read from the control connection into the line queue (at most MAX_LINE bytes of an
        unfinished line are kept; see grammar.LineReader)."""
        self._lines.extend(self._reader.feed(self._read_some()))

    def read_line(self) -> bytes | None:
        """One command line; None after answering an overlong line with 500."""
        while not self._lines:
            self._read_lines()
        line = self._lines.popleft()
        if not line:                         # LineReader.TOO_LONG
            self.send(500, "Command line too long.")
            return None
        return line

    def abort(self) -> None:
        self._aborted = True
        self._shutdown(socket.SHUT_RDWR)

    def _shutdown(self, how: int) -> None:
        """Shut the control socket down from another thread (never once this thread closed it)."""
        with self._sock_lock:
            if self._sock_closed:
                return
            try:
                self.sock.shutdown(how)
            except OSError:
                pass

    # -- main loop
    def run(self) -> None:
        try:
            self._arm_login_timer()
            tlsmod.set_timeout(self.sock, self.cfg.INACTIVE)
            if self.implicit and not self.cfg.SECUREIMPLICITZOS:
                self.start_tls()
                self.greet()
            elif self.implicit:
                self.greet()
                self.start_tls()
            else:
                self.greet()
            while not self._aborted:
                if self._opened:           # a protected command opened while a transfer ran
                    self._dispatch_protected(*self._opened.popleft())
                    continue
                line = self.read_line()
                if line is None:
                    continue
                self.dispatch(line)
        except _Close as exc:
            self.server.emit(self, "info", f"session ends: {exc}")
        except Exception as exc:             # never let one session take the server down
            if tlsmod.is_network_error(exc):  # the peer reset, vanished or broke TLS: one line
                self.server.emit(self, "info", f"session ends: {tlsmod.network_error_text(exc)}")
            else:
                log.exception("session %d failed", self.id)
                self.server.emit(self, "info", f"session ends on an internal error: {exc!r}")
        finally:
            self.server.login_deadlines.disarm(self.id)
            self._close_passive()
            with self._sock_lock:
                self._sock_closed = True
                try:
                    self.sock.close()
                except OSError:
                    pass
            self.server._ended(self)

    def greet(self) -> None:
        minutes = max(1, self.cfg.INACTIVE // 60)
        self.send(220, ["FTPS Traversal Lab FTP server ready.",
                        f"Connection will close if idle for more than {minutes} minutes."])

    def _attls_refusal(self) -> str | None:
        """TLSMECHANISM ATTLS: why AT-TLS cannot secure this control connection (None: it can)."""
        if self.server.attls is None:
            return None
        if self.mapping is None:
            return (f"no AT-TLS rule in {self.server.attls.source} maps this connection "
                    f"(Inbound, local port {self.local_port})")
        return self.mapping.unusable_for_ftp()

    def _tls_setup(self, mapping: attls.Mapping | None) -> tuple:
        """(context, TLS role, handshake timeout) for a connection: the server's own context, or
        with ATTLS the context of the mapping's environment and its HandshakeRole."""
        if mapping is None:
            return self.server.tls_ctx, "server", None
        return self.server.attls_contexts.get(mapping), mapping.role, mapping.handshake_timeout

    def start_tls(self) -> None:
        if (why := self._attls_refusal()) is not None:
            self.server.emit(self, "info", f"TLS not started: {why}")
            raise _Close(why)
        ctx, role, timeout = self._tls_setup(self.mapping)
        if self.mapping is not None:
            self.server.emit(self, "info", f"AT-TLS rule {self.mapping.rule} ({self.mapping.where}): "
                                           f"HandshakeRole {role}, {'/'.join(self.mapping.versions)}")
        try:
            self.ctrl = tlsmod.secure(ctx, self.sock, role, timeout or self.cfg.INACTIVE or 30, watch=True)
        except tlsmod.TLSFailure as exc:
            if self._login_expired:        # no reply can be sent in the middle of a handshake
                raise _Close(f"TLS handshake not done within LOGINTIMEOUT ({self.cfg.LOGINTIMEOUT} s)") from None
            self.server.emit(self, "info", f"TLS handshake failed: {exc.reason}")
            self._linger_close()
            raise _Close(f"TLS handshake failed: {exc.reason}") from None
        self.tls_family = tlsmod.SessionFamily()
        self.tls_family.adopt(self.ctrl, control=True)
        self.server.emit(self, "info", f"TLS established: {self.ctrl.version} {self.ctrl.cipher}")

    def _linger_close(self) -> None:
        """Half-close and read what the client still sends, so that our TLS alert is not
        destroyed by the RST a close() with unread bytes would send."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            tlsmod.set_timeout(self.sock, 1)
            while self.sock.recv(4096):
                pass
        except OSError:
            pass

    def _gss_ready(self) -> bool:
        return self.gss is not None and self.gss.complete

    def _open_protected(self, line: bytes) -> tuple[str, str, bool] | None:
        """A MIC/ENC line opened: (verb, inner line, private); None when it is none (or not now)."""
        verb = _verb(line)
        if verb not in ("MIC", "ENC") or not self._gss_ready():
            return None
        arg = grammar.parse_command(line).arg
        inner, private = self.gss.protection.open_command(verb, arg)
        return verb, inner, private

    def dispatch(self, line: bytes) -> None:
        verb = _verb(line)
        if verb in ("MIC", "ENC", "CONF"):
            self._dispatch_security_command(verb, line)
            return
        self.server.emit(self, "C>S", line.decode("utf-8", "surrogateescape"))
        if self._gss_ready() and not self.cleared and self.cfg.SECURE_CTRLCONN in ("SAFE", "PRIVATE"):
            self.send(533, "All commands must be protected.")
            return
        self._dispatch_command(line)

    def _dispatch_security_command(self, verb: str, line: bytes) -> None:
        """MIC / ENC / CONF (RFC 2228): open the command inside and run it; its reply is protected
        the same way (631 / 632)."""
        shown = grammar.printable(line.decode("utf-8", "surrogateescape")[:60])
        if not self._gss_ready():
            self.server.emit(self, "C>S", shown)
            self.send(503, "No security data exchange has completed.")
            return
        if verb == "CONF":
            # GSSAPI has no confidentiality without integrity (MIT ftpd answers the same)
            self.server.emit(self, "C>S", shown)
            self.send(537, "CONF protected commands not supported.")
            return
        try:
            opened = self._open_protected(line)
        except (gss.KerberosError, GrammarError) as exc:
            self.server.emit(self, "C>S", shown)
            self.server.emit(self, "info", f"{verb}: failed security check: {getattr(exc, 'reason', exc)}")
            self.send(535, "Failed security check.")
            return
        self._dispatch_protected(*opened)

    def _dispatch_protected(self, verb: str, inner: str, private: bool) -> None:
        """Run the command a MIC/ENC line held; every reply to it is protected the same way."""
        self.server.emit(self, "C>S", f"[{verb}] {inner}")
        self.cmd_private = private
        try:
            if self.cfg.SECURE_CTRLCONN == "PRIVATE" and not private and not self.cleared:
                self.send(533, "All commands must be ENC-protected (SECURE_CTRLCONN PRIVATE).")
            elif _verb(inner.encode("utf-8", "surrogateescape")) in ("MIC", "ENC", "CONF"):
                self.send(500, "A protected command cannot hold another one.")
            else:
                self._dispatch_command(inner.encode("utf-8", "surrogateescape"))
        finally:
            self.cmd_private = None

    def _dispatch_command(self, line: bytes) -> None:
        try:
            cmd = grammar.parse_command(line)
        except GrammarError:
            self.send(500, "Syntax error, command unrecognized.")
            return
        handler = getattr(self, f"cmd_{cmd.verb}", None)
        if handler is None:
            self.send(500, f"Unknown command {cmd.verb}.")
            return
        if cmd.verb not in _NO_LOGIN and not self.logged_in:
            self.send(530, "Not logged in.")
            return
        pending_rename = self.rename_from
        try:
            handler(cmd.arg)
        except _Handled:
            pass
        except _Refuse as r:
            self.send(r.code, r.text)
        except _FILE_RACES as exc:
            # The file system changed under the command (another session removed or replaced a
            # path since it was checked): that command fails, the session goes on.
            self.server.emit(self, "info", f"{cmd.verb}: {exc.strerror or exc}")
            self.send(550, f"{exc.strerror or 'Requested action not taken'}.")
        if cmd.verb != "RNFR" and pending_rename is not None:
            self.rename_from = None

    # -- paths
    def virtual(self, arg: str) -> str:
        path = arg if arg.startswith("/") else f"{self.cwd.rstrip('/')}/{arg}"
        parts: list[str] = []
        for p in path.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(p)
        return "/" + "/".join(parts)

    def _inside(self, real: str) -> bool:
        """Is this resolved path the root or below it?"""
        root = str(self.server.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def real(self, arg: str, must_exist: bool = True) -> Path:
        """The real path of a client path; symlinks resolved, and it must stay in the root."""
        if "\x00" in arg:
            raise _Refuse(501, "Bad path.")
        v = self.virtual(arg or ".")
        real = os.path.realpath(self.server.root / v.lstrip("/"))
        if not self._inside(real):
            raise _Refuse(550, f"{arg}: permission denied (outside the FTP root).")
        if must_exist and not os.path.lexists(real):
            raise _Refuse(550, f"{arg}: no such file or directory.")
        return Path(real)

    # -- login
    def cmd_USER(self, arg: str) -> None:
        if not arg:
            raise _Refuse(501, "USER needs a name.")
        secured = self.ctrl is not None or self.cleared or self._gss_ready()
        if self.cfg.SECURE_FTP == "REQUIRED" and not secured:
            raise _Refuse(530, "Security is required: issue AUTH TLS before USER.")
        if self._gss_ready():
            self._gss_user(arg)
            return
        if self.cfg.SECURE_LOGIN != "NO_CLIENT_AUTH" and self.ctrl is None and not self.cleared:
            raise _Refuse(530, f"SECURE_LOGIN {self.cfg.SECURE_LOGIN}: a TLS client certificate is required.")
        self.user, self.logged_in = arg, False
        if self._cert_user_ok(arg) and self.cfg.SECURE_PASSWORD == "OPTIONAL" \
                and self.cfg.SECURE_LOGIN != "NO_CLIENT_AUTH":
            self._logged_in(232, f"{arg} is logged on, authorized by its TLS client certificate.")
            return
        self.send(331, "Send password please.")

    def _gss_user(self, user: str) -> None:
        """USER after ADAT: the Kerberos principal logs in as the user of its name (z/OS: "ticket
        principal must match login id"), without a password (232). Another user: 530 under
        SECURE_LOGIN REQUIRED/VERIFY_USER, else the password is asked for (331), as MIT ftpd does."""
        principal = self.gss.principal
        self.user, self.logged_in = user, False
        if principal.rpartition("@")[0] == user and user in self.server.users:
            self._logged_in(232, f"GSSAPI user {principal} is authorized as {user}.")
            return
        if self.cfg.SECURE_LOGIN != "NO_CLIENT_AUTH":
            self.user = None
            raise _Refuse(530, f"GSSAPI user {principal} is not authorized as {user}.")
        self.send(331, f"GSSAPI user {principal} is not authorized as {user}; password required.")

    def _cert_user_ok(self, user: str) -> bool:
        """SECURE_LOGIN: REQUIRED = a trusted cert (checked in the handshake); VERIFY_USER = it maps to user."""
        if self.cfg.SECURE_LOGIN == "NO_CLIENT_AUTH":
            return True
        cert = self.ctrl.peer_cert if self.ctrl is not None else self._cert_before_ccc
        if cert is None:
            return False
        if self.cfg.SECURE_LOGIN == "REQUIRED":
            return True
        fp = normalise_cert_key(cert.fingerprint(hashes.SHA256()).hex())
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        mapping = self.cfg.CERTUSERMAP
        mapped = mapping.get(fp) or next((mapping[c] for c in cns if c in mapping), None)
        return mapped == user

    def cmd_PASS(self, arg: str) -> None:
        if self.user is None:
            raise _Refuse(503, "Login with USER first.")
        if self.logged_in:
            raise _Refuse(503, "Already logged in.")
        user, self.user = self.user, None
        throttle = self.server.throttle
        attempt = throttle.begin(self.peer_ip, user)
        if attempt.locked:
            # not a guess: the password is not even compared while its address or user is locked
            self.server.emit(self, "info", f"login refused for {user!r}: {attempt.locked} is locked "
                                           f"(LOGINLIMIT {self.cfg.LOGINLIMIT} in {self.cfg.LOGINWINDOW} s)")
            time.sleep(self.cfg.LOGINDELAY)
            raise _Refuse(530, "PASS command failed: too many failed logins, try again later.")
        good = self.server.users.get(user)
        right = good is not None and hmac.compare_digest(_octets(good), _octets(arg))
        ok = right and self._cert_user_ok(user)
        for key in throttle.end(attempt, ok):
            self.server.emit(self, "info", f"login throttle: {key} has {self.cfg.LOGINLIMIT} failed logins in "
                                           f"{self.cfg.LOGINWINDOW} s; its logins are refused until they age out")
            log.warning("login throttle engaged for %s (session %d)", key, self.id)
        if not ok:
            why = "certificate does not map to this user" if right else "bad user or password"
            self.server.emit(self, "info", f"failed login for {user!r}: {why}")
            time.sleep(self.cfg.LOGINDELAY * max(1, throttle.failures(attempt)))
            raise _Refuse(530, "PASS command failed.")
        self.user = user
        self._logged_in(230, f"{self.user} is logged on.  Working directory is \"/\".")

    def _logged_in(self, code: int, text: str) -> None:
        if self._login_timer:
            self._login_timer = False
            if not self.server.login_deadlines.disarm(self.id) or self._login_expired:
                # LOGINTIMEOUT passed while this login was being checked: too late all the same
                self._login_expired = True
                self._login_timeout()
        self.logged_in, self.cwd = True, "/"
        self.server.emit(self, "info", f"login {self.user}")
        self.send(code, text)

    def cmd_QUIT(self, arg: str) -> None:
        self.send(221, "Quit command received. Goodbye.")
        raise _Close("QUIT")

    def cmd_REIN(self, arg: str) -> None:
        self.send(220, "REIN command successful; the session starts over.")
        if self.ctrl is not None:
            self.ctrl.ccc(notify=True)
            self.ctrl = None
        self.implicit = False
        self.gss = None
        self.reset()
        self.reuse_required = False   # RFC 4217 section 13: must not mandate reuse after REIN
        if not self._login_timer:     # logged out: the time to log in again is bounded too
            self._arm_login_timer()

    def cmd_NOOP(self, arg: str) -> None:
        self.send(200, "NOOP command successful.")

    def cmd_SYST(self, arg: str) -> None:
        self.send(215, "UNIX Type: L8")

    def cmd_HELP(self, arg: str) -> None:
        verbs = sorted(n[4:] for n in dir(self) if n.startswith("cmd_"))
        lines = ["The following commands are recognized:"]
        lines += ["  " + " ".join(verbs[i:i + 12]) for i in range(0, len(verbs), 12)]
        self.send(214, lines + ["HELP command successful."])

    def cmd_FEAT(self, arg: str) -> None:
        feats = []
        if self._gss_enabled():
            feats.append("AUTH GSSAPI")
        if self._auth_enabled():
            feats += ["AUTH TLS", "PBSZ", "PROT"]
            if self.cfg.TLSRFCLEVEL != "DRAFT":
                feats.append("CCC")
        feats += ["EPRT", "EPSV"]
        if self._auth_enabled() and "SSCN" in self.cfg.EXTENSIONS:
            feats.append("SSCN")
        ext = self.cfg.EXTENSIONS
        if "MDTM" in ext:
            feats.append("MDTM")
        feats.append("MLST type*;size*;modify*;perm*;")
        if "REST_STREAM" in ext:
            feats.append("REST STREAM")
        if "SIZE" in ext:
            feats.append("SIZE")
        feats.append("TVFS")
        if "UTF8" in ext:
            feats.append("UTF8")
        self.send(211, ["Extensions supported", *[f" {f}" for f in feats], "End"])

    def cmd_OPTS(self, arg: str) -> None:
        word = arg.split(" ", 1)[0].upper()
        if word == "UTF8":
            self.send(200, "UTF8 mode is always on.")
        elif word == "MLST":
            self.send(200, "MLST OPTS type;size;modify;perm;")
        else:
            raise _Refuse(501, f"OPTS {word} not understood.")

    def cmd_STAT(self, arg: str) -> None:
        if arg:
            # a listing: only after login (with SECURE_FTP REQUIRED that login was protected)
            if not self.logged_in:
                raise _Refuse(530, "Not logged in.")
            self._list_control(arg, 213)
            return
        prot = {"C": "clear", "P": "private", "S": "safe"}[self.prot]
        ctrl = "TLS " + self.ctrl.version if self.ctrl else ("clear after CCC" if self.cleared else
                                                             f"Kerberos {self.gss.principal}" if self._gss_ready()
                                                             else "clear")
        where = f"  Working directory: {self.cwd}" if self.logged_in else ""
        lines = [f"FTP server status for {self.peer_ip} port {self.peer_port}",
                 f"User: {self.user or '-'}  Logged in: {'yes' if self.logged_in else 'no'}{where}"]
        if self._auth_enabled():
            lines.append(f"TLS security is supported at the {self.cfg.TLSRFCLEVEL} level")
            if self.server.attls is not None:
                rule = f"rule {self.mapping.rule}" if self.mapping else "no rule maps this connection"
                lines.append(f"TLSMECHANISM ATTLS: {self.server.attls.source}, {rule}")
        lines += [f"Control connection: {ctrl}; data connections: {prot}",
                  f"TYPE {self.type}, MODE S, STRU F", "End of status"]
        self.send(211, lines, dashed=True)

    # -- TLS (RFC 2228 / 4217)
    def _auth_enabled(self) -> bool:
        tls = self.server.tls_ctx is not None or self.server.attls is not None
        return tls and "AUTH_TLS" in self.cfg.EXTENSIONS

    def _gss_enabled(self) -> bool:
        return "AUTH_GSSAPI" in self.cfg.EXTENSIONS and self.server.keytab is not None \
            and gss.available() is None

    def cmd_AUTH(self, arg: str) -> None:
        mech = arg.strip().upper()
        if self.implicit:
            raise _Refuse(503, "Server on the TLS secure port does not accept the AUTH command")
        if self.ctrl is not None or self.cleared or self.gss is not None:
            raise _Refuse(503, "Authentication already established")
        if mech == "GSSAPI":
            self._auth_gssapi()
            return
        if not self._auth_enabled():
            raise _Refuse(502, "AUTH is not enabled on this server (EXTENSIONS AUTH_TLS and a certificate).")
        if mech not in ("TLS", "TLS-C", "SSL", "TLS-P"):
            raise _Refuse(504, "Server does not understand the specified mechanism")
        if (why := self._attls_refusal()) is not None:
            # the reply code z/OS gives here is UNCONFIRMED; 534 is RFC 2228's "denied for policy reasons"
            self.server.emit(self, "info", f"AUTH TLS refused: {why}")
            raise _Refuse(534, f"AUTH TLS refused: {why}")
        self.send(234, "Security environment established - ready for negotiation")
        self.start_tls()
        self.reset()     # RFC 4217 section 4: the client logs in again

    def _auth_gssapi(self) -> None:
        """AUTH GSSAPI (RFC 2228, EXTENSIONS AUTH_GSSAPI): 334, then ADAT until the context is made."""
        if not self._gss_enabled():
            raise _Refuse(504, "Server does not understand the specified mechanism")
        try:
            acceptor = gss.Acceptor(self.server.keytab)
        except gss.KerberosError as exc:
            self.server.emit(self, "info", f"AUTH GSSAPI: {exc.reason}")
            raise _Refuse(431, "Unable to accept security mechanism GSSAPI now.") from None
        self.reset()                     # RFC 2228: AUTH starts the login over
        self.gss = acceptor
        self.send(334, "Using authentication mechanism GSSAPI")

    def cmd_ADAT(self, arg: str) -> None:
        if self.gss is None:
            raise _Refuse(503, "Must issue AUTH command before ADAT command")
        if self.gss.complete:
            raise _Refuse(503, "Security data exchange completed")
        try:
            out = self.gss.step(gss.b64decode(arg))
        except GrammarError:
            raise _Refuse(501, "ADAT needs base64 data.") from None
        except gss.KerberosError as exc:
            self.server.emit(self, "info", f"ADAT: GSSAPI failed: {exc.reason}")
            self.gss = None
            raise _Refuse(535, "GSSAPI authentication failed.") from None
        if not self.gss.complete:
            self.send(335, f"ADAT={gss.b64encode(out or b'')}")
            return
        self.server.emit(self, "info", f"GSSAPI: {self.gss.principal} authenticated")
        self.send(235, f"ADAT={gss.b64encode(out)}" if out else "GSSAPI authentication succeeded.")

    def cmd_SSCN(self, arg: str) -> None:
        """SSCN [ON|OFF] (lab extension, EXTENSIONS SSCN): who is the TLS client on data connections.
        ON: this server (so that two servers can run a protected three-way transfer: one of them
        must be the TLS client, RFC 4217 section 7 leaves server-to-server TLS out); OFF (default):
        the FTP client, as RFC 4217 says. Replies as glftpd and DrFTPD give them."""
        if "SSCN" not in self.cfg.EXTENSIONS or not self._auth_enabled():
            raise _Refuse(502, "SSCN is not enabled on this server (EXTENSIONS SSCN).")
        word = arg.strip().upper()
        if word not in ("", "ON", "OFF"):
            raise _Refuse(501, "SSCN takes ON or OFF.")
        if word:
            self.sscn = word == "ON"
        self.send(200, f"SSCN:{'CLIENT' if self.sscn else 'SERVER'} METHOD")

    def _need_protected_ctrl(self, verb: str) -> None:
        """PBSZ and PROT belong to a TLS control connection: not before AUTH, not after CCC."""
        if self.cleared:
            raise _Refuse(503, f"Command {verb} rejected -- {verb} not allowed after CCC")
        if self.ctrl is None and not self._gss_ready():
            raise _Refuse(503, "Must first establish authentication")

    def cmd_PBSZ(self, arg: str) -> None:
        self._need_protected_ctrl("PBSZ")
        if not grammar.is_decimal(arg.strip()):
            raise _Refuse(501, "PBSZ needs a number.")
        if self._gss_ready():
            # Kerberos: the largest protected block; z/OS takes 512..32768 (501 otherwise)
            size = int(arg.strip()) if len(arg.strip()) < 12 else 1 << 40
            if self.cfg.REPLYMODE == "ZOS" and not 512 <= size <= 32768:
                raise _Refuse(501, "PBSZ size must be in the range 512 to 32768.")
            if size < 1:
                raise _Refuse(501, "PBSZ size must be at least 1.")
            self.pbsz, self.pbsz_size = True, min(size, self.cfg.SECURE_PBSZ)
            self.send(200, f"PBSZ={self.pbsz_size}")
            return
        self.pbsz = True
        self.send(200, "PBSZ=0")

    def cmd_PROT(self, arg: str) -> None:
        self._need_protected_ctrl("PROT")
        if not self.pbsz:
            raise _Refuse(503, "Must first issue PBSZ")
        level = arg.strip().upper()
        if level not in ("C", "S", "P", "E"):
            raise _Refuse(504, "Server does not understand the specified protection level")
        dc = self.cfg.SECURE_DATACONN
        # PROT S (integrity only) exists with Kerberos, never with TLS; PROT E never (z/OS)
        safe_ok = self._gss_ready() and dc not in ("PRIVATE", "NEVER")
        if (level == "C" and dc in ("SAFE", "PRIVATE")) or level == "E" or (level == "S" and not safe_ok) or \
                (level == "P" and dc == "NEVER"):
            raise _Refuse(536, "Data connection protection level not supported")
        self.prot = level
        name = {"P": "private", "S": "safe", "C": "clear"}[level]
        self.send(200, f"Data connection protection set to {name}.")

    def cmd_CCC(self, arg: str) -> None:
        if self._gss_ready() and not self.cleared:
            self._ccc_gssapi()
            return
        if self.ctrl is None:
            raise _Refuse(533, "CCC: the control connection is not protected")
        if self.implicit:
            raise _Refuse(534, "Command ccc not allowed for connection to secure port")
        if self.cfg.SECURE_CTRLCONN in ("SAFE", "PRIVATE"):
            raise _Refuse(534, "CCC not supported")
        if self.cfg.TLSRFCLEVEL == "DRAFT":
            raise _Refuse(534, "CCC not supported at TLSRFCLEVEL DRAFT")
        if self.server.attls is not None and self.cfg.TLSRFCLEVEL == "CCCNONOTIFY":
            # IBM: CCCNONOTIFY is invalid with TLSMECHANISM ATTLS and CCC then fails the session
            # (AT-TLS cannot leave TLS without close_notify). The exact reply is UNCONFIRMED.
            self.server.emit(self, "info", "CCC: TLSRFCLEVEL CCCNONOTIFY is invalid with TLSMECHANISM ATTLS "
                                           "(IBM); the session fails")
            self.send(421, "CCC failed: TLSRFCLEVEL CCCNONOTIFY is not valid with TLSMECHANISM ATTLS; "
                           "closing the session.")
            raise _Close("CCC with TLSRFCLEVEL CCCNONOTIFY and TLSMECHANISM ATTLS")
        self.send(200, "CCC command successful; the control connection is now clear.")
        notify = self.cfg.TLSRFCLEVEL == "RFC4217"
        self._cert_before_ccc = self.ctrl.peer_cert
        self.ctrl.ccc(notify=notify)
        self.server.emit(self, "info", f"CCC: control connection clear ({'close_notify exchanged' if notify else 'no alerts'})")
        self.ctrl = None
        self.cleared = True

    def _ccc_gssapi(self) -> None:
        """CCC under Kerberos (RFC 2228): itself protected, answered protected; then clear commands.
        Data keep their PROT."""
        if self.cmd_private is None:
            raise _Refuse(533, "CCC must be integrity protected (MIC or ENC).")
        if self.cfg.SECURE_CTRLCONN in ("SAFE", "PRIVATE"):
            raise _Refuse(534, "CCC not supported")
        self.send(200, "CCC command successful; the control connection is now clear.")
        self.cleared = True
        self.server.emit(self, "info", "CCC: control connection clear (Kerberos: commands no longer wrapped)")

    # -- navigation
    def cmd_PWD(self, arg: str) -> None:
        self.send(257, f"\"{self.cwd}\" is working directory.")

    cmd_XPWD = cmd_PWD

    def cmd_CWD(self, arg: str) -> None:
        if not self.real(arg).is_dir():
            raise _Refuse(550, f"{arg}: not a directory.")
        self.cwd = self.virtual(arg)
        self.send(250, f"\"{self.cwd}\" is the working directory.")

    def cmd_CDUP(self, arg: str) -> None:
        self.cmd_CWD("..")

    cmd_XCUP = cmd_CDUP

    def cmd_TYPE(self, arg: str) -> None:
        t = arg.strip().upper()
        if t in ("A", "A N", "I", "L 8"):
            self.type = "A" if t.startswith("A") else "I"
            self.send(200, f"Representation type is {'ASCII' if self.type == 'A' else 'Image'}.")
        else:
            raise _Refuse(504, f"TYPE {arg} not implemented.")

    def cmd_MODE(self, arg: str) -> None:
        if arg.strip().upper() != "S":
            raise _Refuse(504, "Only MODE S (stream) is implemented.")
        self.send(200, "Data transfer mode is Stream.")

    def cmd_STRU(self, arg: str) -> None:
        if arg.strip().upper() != "F":
            raise _Refuse(504, "Only STRU F (file) is implemented.")
        self.send(200, "File structure is File.")

    def cmd_ALLO(self, arg: str) -> None:
        self.send(202, "ALLO command ignored.")

    # -- file system
    def cmd_DELE(self, arg: str) -> None:
        p = self.real(arg)
        if p.is_dir():
            raise _Refuse(550, f"{arg}: is a directory.")
        self._fs(os.unlink, p)
        self.send(250, f"{arg} deleted.")

    def cmd_MKD(self, arg: str) -> None:
        p = self.real(arg, must_exist=False)
        self._fs(os.mkdir, p)
        self.send(257, f"\"{self.virtual(arg)}\" created.")

    cmd_XMKD = cmd_MKD

    def cmd_RMD(self, arg: str) -> None:
        p = self.real(arg)
        if p == self.server.root:
            raise _Refuse(550, "Cannot remove the root directory.")
        self._fs(os.rmdir, p)
        self.send(250, f"{arg} removed.")

    cmd_XRMD = cmd_RMD

    def cmd_RNFR(self, arg: str) -> None:
        self.real(arg)
        self.rename_from = arg
        self.send(350, "Ready for RNTO.")

    def cmd_RNTO(self, arg: str) -> None:
        if self.rename_from is None:
            raise _Refuse(503, "RNFR required first.")
        src, self.rename_from = self.real(self.rename_from), None
        dst = self.real(arg, must_exist=False)
        self._fs(os.rename, src, dst)
        self.send(250, "Rename successful.")

    def _fs(self, fn, *args) -> None:
        try:
            fn(*args)
        except OSError as exc:
            raise _Refuse(550, f"{exc.strerror}.") from None

    def cmd_SIZE(self, arg: str) -> None:
        if "SIZE" not in self.cfg.EXTENSIONS:
            raise _Refuse(500, "SIZE not enabled (EXTENSIONS SIZE).")
        fd, _ = self._open_file(arg, self.real(arg))
        try:            # RFC 3659 4: the size as this TYPE would transfer it
            self.send(213, str(netascii.wire_size(fd) if self.type == "A" else os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def cmd_MDTM(self, arg: str) -> None:
        if "MDTM" not in self.cfg.EXTENSIONS:
            raise _Refuse(500, "MDTM not enabled (EXTENSIONS MDTM).")
        p = self.real(arg)
        self.send(213, time.strftime("%Y%m%d%H%M%S", time.gmtime(p.stat().st_mtime)))

    def cmd_REST(self, arg: str) -> None:
        if "REST_STREAM" not in self.cfg.EXTENSIONS:
            raise _Refuse(502, "REST not enabled (EXTENSIONS REST_STREAM).")
        try:
            self.rest = grammar.parse_decimal(arg)
        except GrammarError as exc:
            raise _Refuse(501, f"REST needs a byte offset: {exc}.") from None
        self.send(350, f"Restarting at {self.rest}. Send STORE or RETRIEVE to initiate transfer.")

    def cmd_MLST(self, arg: str) -> None:
        p = self.real(arg)
        self.send(250, ["Listing " + (arg or self.cwd), f" {_facts(p)} {self.virtual(arg or '.')}", "End"])

    # -- data connection setup
    def _data_setup_allowed(self, verb: str) -> None:
        if self.epsv_all and verb != "EPSV":
            raise _Refuse(503, "EPSV ALL received - command not allowed after EPSV ALL")

    def _check_port_cmd(self, host: str, port: int) -> None:
        c = self.cfg
        if c.PORTCOMMAND == "REJECT":
            raise _Refuse(504, "PORT and EPRT are rejected by this server (PORTCOMMAND REJECT).")
        if c.PORTCOMMANDIPADDR == "NOREDIRECT" and host != self.peer_ip:
            self.server.emit(self, "info", f"PORTCOMMANDIPADDR NOREDIRECT: refused {host}:{port} "
                                           f"(the client is {self.peer_ip})")
            raise _Refuse(504, f"Port command rejected: {host} is not the client's address "
                               f"(PORTCOMMANDIPADDR NOREDIRECT).")
        if c.PORTCOMMANDPORT == "NOLOWPORTS" and port < 1024:
            raise _Refuse(504, f"Port command rejected: port {port} is below 1024.")

    def cmd_PORT(self, arg: str) -> None:
        self._data_setup_allowed("PORT")
        if ":" in self.local_ip:
            raise _Refuse(522, "command PORT not allowed with this session - current protocol is not IPv4.")
        try:
            hp = grammar.parse_port_args(arg)
        except GrammarError as exc:
            raise _Refuse(501, f"Syntax error in PORT: {exc}") from None
        self._set_active(hp.host, hp.port)
        self.send(200, "Port request OK.")

    def cmd_EPRT(self, arg: str) -> None:
        self._data_setup_allowed("EPRT")
        try:
            hp = grammar.parse_eprt_args(arg)
        except GrammarError as exc:
            if "not supported" in str(exc):
                raise _Refuse(522, "Network protocol not supported. Use (1)") from None
            raise _Refuse(501, f"Syntax error in EPRT: {exc}") from None
        if (":" in hp.host) != (":" in self.local_ip):
            want = 2 if ":" in self.local_ip else 1
            raise _Refuse(522, f"network protocol {2 if ':' in hp.host else 1} not consistent with this session. Use {want}.")
        self._set_active(hp.host, hp.port)
        self.send(200, "EPRT request OK.")

    def _set_active(self, host: str, port: int) -> None:
        self._check_port_cmd(host, port)
        self._close_passive()
        self.active = (host, port)

    def cmd_PASV(self, arg: str) -> None:
        self._data_setup_allowed("PASV")
        if ":" in self.local_ip:
            raise _Refuse(522, "No IPv4 address available for PASV. Use EPSV.")
        port = self._open_passive()
        self.send(227, grammar.format_227(grammar.HostPort(self.local_ip, port)))

    def cmd_EPSV(self, arg: str) -> None:
        a = arg.strip().upper()
        if a == "ALL":
            self.epsv_all = True
            self.send(200, "EPSV ALL command successful.")
            return
        want = "2" if ":" in self.local_ip else "1"
        if a and a != want:
            raise _Refuse(522, f"Network protocol not supported. Use ({want})")
        port = self._open_passive()
        self.send(229, grammar.format_229(port))

    def _open_passive(self) -> int:
        self._close_passive()
        self.active = None
        family = socket.AF_INET6 if ":" in self.local_ip else socket.AF_INET
        rng = self.cfg.PASSIVEDATAPORTS
        if rng is None:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((self.local_ip, 0))
            s.listen(1)
            self.passive = s
            return s.getsockname()[1]
        low, high = rng
        ports = list(range(low, high + 1))
        start = random.randrange(len(ports))
        with self.server._passive_lock:
            for port in ports[start:] + ports[:start]:
                s = socket.socket(family, socket.SOCK_STREAM)
                # Ports of finished data connections linger in TIME_WAIT; REUSEADDR lets a new
                # listener take them (Linux still refuses a second listener on the same port).
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.local_ip, port))
                    s.listen(1)
                except OSError:
                    s.close()
                    continue
                self.passive = s
                return port
        self.server.emit(self, "info", f"PASSIVEDATAPORTS ({low},{high}): every port is busy")
        raise _Refuse(425, f"Can't open passive connection: all PASSIVEDATAPORTS ({low},{high}) are busy.")

    # -- data connections
    def _wait(self, sock: socket.socket, write: bool, deadline: float) -> bool:
        """Wait for sock, but give up early when the control connection speaks or closes."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            rl = [self.sock] + ([] if write else [sock])
            wl = [sock] if write else []
            r, w = waiting.select(rl, wl, min(left, 1.0))
            if sock in r or sock in w:
                return True
            if self.sock in r:
                return False

    def _open_data(self) -> socket.socket:
        deadline = time.monotonic() + (self.cfg.DATATIMEOUT or 86400)
        if self.passive is not None:
            return self._accept_passive(deadline)
        return self._connect_active(deadline)

    def _accept_passive(self, deadline: float) -> socket.socket:
        """The client's connection to our passive port (PASSIVEDATACONN NOREDIRECT: from its address only)."""
        lsock = self.passive
        foreign = 0
        while True:
            if not self._wait(lsock, False, deadline):
                if foreign:      # a three-way (proxy) transfer meets NOREDIRECT: say so
                    raise _Refuse(425, f"Can't open data connection: {foreign} connection(s) from another "
                                       f"address than {self.peer_ip} closed (PASSIVEDATACONN NOREDIRECT).")
                raise _Refuse(425, "Can't open data connection: nothing connected.")
            conn, peer = lsock.accept()
            if self.cfg.PASSIVEDATACONN == "NOREDIRECT" and _unmap(peer[0]) != self.peer_ip:
                foreign += 1
                if foreign <= _FOREIGN_LOGGED:      # a host that keeps connecting cannot flood the log
                    more = "; further ones are not logged" if foreign == _FOREIGN_LOGGED else ""
                    self.server.emit(self, "info", f"PASSIVEDATACONN NOREDIRECT: closed data connection "
                                                   f"from {peer[0]}:{peer[1]}{more}")
                conn.close()
                continue
            self._close_passive()
            return conn

    def _connect_active(self, deadline: float) -> socket.socket:
        """Connect to the PORT/EPRT address from the port below the control port (20 for 21) when free."""
        host, port = self.active or (self.peer_ip, self.peer_port)   # RFC 959 default data port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for src_port in (self.local_port - 1, 0):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.local_ip, max(src_port, 0)))
            except OSError as exc:
                s.close()
                self.server.emit(self, "info", f"cannot bind data port {src_port}: {exc.strerror}")
                continue
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err in (errno.EADDRNOTAVAIL, errno.EADDRINUSE) and src_port:
                s.close()
                continue
            why = os.strerror(err) if err not in (0, errno.EINPROGRESS) else None
            if why is None and not self._wait(s, True, deadline):
                why = "timed out"
            if why is None and (err := s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)):
                why = os.strerror(err)
            if why is not None:
                s.close()
                raise _Refuse(425, f"Can't open data connection to {host}:{port}: {why}.")
            s.setblocking(True)
            return s
        raise _Refuse(425, "Can't open data connection: no local port.")

    def _data_conn(self, what: str, prepare: Callable[[], None] | None = None):
        """Check protection, connect, prepare(), send 150, secure: the data connection (socket or
        TLSConn). prepare: the command's own step once the connection is there (STOR truncates);
        on TLS data only once the data connection's TLS is known to be this session's (_bound), so
        a refused connection leaves the file as it was."""
        if self.prot == "C" and self.cfg.SECURE_DATACONN in ("SAFE", "PRIVATE"):
            self.active = None
            self._close_passive()
            if self.cfg.REPLYMODE == "ZOS":
                self.send(425, [" Server requires protected data connection.",
                                "Issue PROT P (PROTECT PRIVATE) and retry."])
                raise _Handled()
            raise _Refuse(522, "Data connections must be protected: issue PROT P.")
        passive = self.passive is not None
        tls_data = self.prot == "P" and not self._gss_ready()
        try:
            sock = self._open_data()
        finally:
            self.active = None
            self._close_passive()
        if prepare is not None and not tls_data:
            _prepare(prepare, sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send(150, f"Opening {'BINARY' if self.type == 'I' else 'ASCII'} mode data connection for {what}.")
        tlsmod.set_timeout(sock, self.cfg.DATATIMEOUT)
        if self._gss_ready() and self.prot in ("S", "P"):     # RFC 2228 blocks, no handshake
            return gss.GSSConn(sock, self.gss.protection, self.prot, self.pbsz_size or self.cfg.SECURE_PBSZ)
        if self.prot != "P":
            return sock
        try:
            ctx, role, timeout = self._tls_setup(self._data_mapping(sock, passive))
            if self.sscn:                  # SSCN ON: we are the TLS client of this data connection
                ctx, role = self.server.sscn_context(), "client"
            conn = tlsmod.secure(ctx, sock, role, timeout or min(self.cfg.DATATIMEOUT or 30, 30), watch=True)
        except tlsmod.TLSFailure as exc:
            sock.close()
            self.server.emit(self, "info", f"data TLS handshake failed: {exc.reason}")
            raise _Refuse(522, f"TLS negotiation failed on the data connection: {exc.reason}") from None
        self._bound(conn, sock)
        if prepare is not None:
            _prepare(prepare, sock)
        tlsmod.set_timeout(sock, self.cfg.DATATIMEOUT)
        return conn

    def _bound(self, conn: tlsmod.TLSConn, sock: socket.socket) -> None:
        """Session binding: a data connection resumes a TLS session of this control connection
        (tlsmod.SessionFamily), or under SECURE_SESSION_REUSE ALLOWED none at all (a full
        handshake). Resuming another session (that of a thief's own AUTH TLS, which the shared
        cache would resume) is never legitimate: 522 (RFC 4217 reports a refused resumption with
        522), the data connection closed before a byte of the file moved."""
        binding = self.tls_family.binding(conn)
        if binding == "own" or (binding == "full" and not self.reuse_required):
            self.tls_family.adopt(conn)        # its TLS 1.3 tickets: the next data connection's
            return
        try:
            peer = sock.getpeername()
            who = f"from {_unmap(peer[0])}:{peer[1]}"
        except OSError:
            who = "(peer gone)"
        sock.close()
        if binding == "foreign":
            self.server.emit(self, "info", f"session binding: data connection {who} resumed a TLS session that is "
                                           "not this control connection's; closed before any data")
            raise _Refuse(522, "Data connection TLS session is not the session of this control connection; "
                               "data connection closed.")
        self.server.emit(self, "info", f"SECURE_SESSION_REUSE REQUIRED: data connection {who} did not resume "
                                       "this control connection's TLS session (full handshake); "
                                       "closed before any data")
        raise _Refuse(522, "Data connection TLS session was not reused (SECURE_SESSION_REUSE REQUIRED).")

    def _data_mapping(self, sock: socket.socket, passive: bool) -> attls.Mapping | None:
        """TLSMECHANISM ATTLS: the mapping of a data connection. SecondaryMap On: the control
        connection's (IBM: data connections share its environment); Off: the rule that maps the
        data connection itself (passive: inbound, active: outbound), or 522 when none does."""
        if self.mapping is None or self.mapping.secondary_map:
            return self.mapping
        local, peer = sock.getsockname(), sock.getpeername()
        direction = "inbound" if passive else "outbound"
        mapping = self.server.attls.match(direction, local[1], peer[1], _unmap(local[0]), _unmap(peer[0]))
        why = (f"no AT-TLS rule maps it ({direction.title()}, local port {local[1]}, remote port {peer[1]}) "
               f"and rule {self.mapping.rule} has SecondaryMap Off") if mapping is None else mapping.unusable_for_ftp()
        if why is not None:
            sock.close()
            self.server.emit(self, "info", f"data connection not protected: {why}")
            raise _Refuse(522, f"TLS on the data connection: {why}.")
        return mapping

    def _transfer(self, what: str, work, prepare: Callable[[int], None] | None = None) -> None:
        """Run work(conn, rest) on the data connection in a helper thread, so that this thread
        can watch the control connection for ABOR meanwhile (it alone talks on control).
        prepare(rest) runs once the data connection is made, before the 150 reply."""
        rest, self.rest = self.rest, 0
        conn = self._data_conn(what, None if prepare is None else lambda: prepare(rest))
        outcome: dict = {}
        done = os.eventfd(0)

        def run() -> None:
            try:
                outcome["n"] = work(conn, rest)
            except BaseException as exc:      # handed to the session thread below
                outcome["exc"] = exc
            finally:
                os.eventfd_write(done, 1)
        worker = threading.Thread(target=run, name=f"ftps-data-{self.id}", daemon=True)
        worker.start()
        try:
            aborted = self._watch_for_abor(done, conn)
        except _Close:
            # The client is gone mid-transfer: no reply can reach it, but the log must still say
            # that this transfer is incomplete, never let it pass for a success.
            self.server.emit(self, "info", f"426 {what}: transfer incomplete, control connection lost")
            raise
        finally:
            worker.join()
            os.close(done)
        exc = outcome.get("exc")
        if aborted or exc is not None:
            datapath.finish(conn, clean=False)
        if aborted:
            self.send(426, "Connection closed; transfer aborted.")
            self.send(226, "ABOR command successful.")
            return
        if isinstance(exc, tlsmod.Truncated):
            raise _Refuse(426, "Data connection closed without TLS close_notify: transfer incomplete.")
        if isinstance(exc, (OSError, TimeoutError, tlsmod.TLSTimeout)):
            raise _Refuse(426, f"Connection closed; transfer aborted ({exc}).")
        if exc is not None:
            raise exc
        n = outcome["n"]
        self.server.emit(self, "info", f"{what}: {n} bytes")
        self.send(226, f"Transfer complete ({n} bytes).")

    def _watch_for_abor(self, done: int, conn) -> bool:
        """Wait for the transfer; True when the client sent ABOR (the data connection is then cut).
        Any other command waits in the line queue until the transfer is over (RFC 959 4.1.3), and
        from then on nothing more is read: the kernel's buffers and TCP hold the client back. So
        the server keeps at most one read and MAX_LINE bytes of an unfinished line, and scans each
        byte once, whatever the client sends during a transfer."""
        while True:
            if self._lines and _verb(self._lines[0]) == "ABOR":
                self._lines.popleft()
                self.server.emit(self, "C>S", "ABOR")
                _cut(conn)
                return True
            if self._lines and not self._opened and _verb(self._lines[0]) in ("MIC", "ENC"):
                try:                       # open it once (a token unwraps once): ABOR or later
                    opened = self._open_protected(self._lines[0])
                except (gss.KerberosError, GrammarError):
                    opened = None
                if opened is not None:
                    self._lines.popleft()
                    if _verb(opened[1].encode("utf-8", "surrogateescape")) == "ABOR":
                        self.server.emit(self, "C>S", f"[{opened[0]}] ABOR")
                        _cut(conn)
                        return True
                    self._opened.append(opened)
            watching = not self._lines and not self._opened
            pending = watching and self.ctrl is not None and self.ctrl.conn.pending() > 0
            ready = [self.sock] if pending else \
                waiting.select([done] + ([self.sock] if watching else []))[0]
            if done in ready:
                return False
            if self.sock in ready:
                try:
                    self._read_lines()
                except _Close:
                    _cut(conn)
                    raise

    def _open_file(self, arg: str, path: Path, write: bool = False) -> tuple[int, bool]:
        """Open a regular file for RETR/SIZE, or for STOR/APPE (created when missing): (fd, created).

        O_NONBLOCK: a FIFO or a device is never waited on (a FIFO without a peer would hang the
        session); the type is checked on the open descriptor, so a rename in between cannot slip
        one in. O_NOFOLLOW: the path was resolved inside the root; a symlink put there since is
        refused. A STOR/APPE holds an exclusive flock on the file: a second upload to it is 450."""
        flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
        created = False
        try:
            if write:
                try:
                    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                    created = True
                except FileExistsError:
                    fd = os.open(path, flags)
            else:
                fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ELOOP):    # a FIFO nobody reads; a symlink
                raise _Refuse(550, f"{arg}: not a plain file.") from None
            raise _Refuse(550, f"{arg}: {exc.strerror}.") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Refuse(550, f"{arg}: not a plain file.")
            if write:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _Refuse(450, f"{arg}: file busy: another upload is writing it; try again later.") from None
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd, created

    def _restart_at(self, fd: int, text: bool) -> None:
        """554 (RFC 3659 5) when the REST marker is beyond the end of the file (TYPE A: its wire size)."""
        size = os.fstat(fd).st_size
        if self.rest > size and (not text or self.rest > netascii.wire_size(fd)):
            self.rest = 0
            raise _Refuse(554, "Restart position is beyond the end of the file.")

    def cmd_RETR(self, arg: str) -> None:
        fd, _ = self._open_file(arg, self.real(arg))
        try:
            text = netascii.ToWire() if self.type == "A" else None
            self._restart_at(fd, text is not None)

            def work(conn, rest):
                n = datapath.send_file(conn, fd, rest, text=text)
                datapath.finish(conn, linger=0)
                return n
            self._transfer(f"{arg} ({os.fstat(fd).st_size} bytes)", work)
        finally:
            os.close(fd)

    def _store(self, arg: str, append: bool) -> None:
        """STOR/APPE into the file itself (not a temporary file renamed at the end), under an exclusive
        flock: a second upload to a busy file is 450, and an interrupted upload leaves its partial
        file for REST + STOR to resume (RFC 3659 5), as vsftpd and z/OS do."""
        p = self.real(arg, must_exist=False)
        if p.is_dir():
            raise _Refuse(550, f"{arg}: is a directory.")
        if self.type == "A" and self.rest and not append:
            # The marker counts wire octets (RFC 3659 5); finding the file offset that matches
            # would mean re-reading the file as TYPE A. Binary restarts are what clients use.
            self.rest = 0
            raise _Refuse(554, "Restart of an upload in TYPE A is not supported: use TYPE I.")
        text = netascii.FromWire() if self.type == "A" else None
        fd, created = self._open_file(arg, p, write=True)

        def prepare(rest):
            # No O_APPEND: splice() cannot write to an O_APPEND file (EINVAL); the flock makes
            # this the only writer, so the end found here stays the end. The old content goes
            # once the data connection is there (not when it cannot be made) and before the 150,
            # as vsftpd does: freeing a big file's pages is not part of the data flow.
            if append:
                os.lseek(fd, 0, os.SEEK_END)
            else:
                os.ftruncate(fd, rest)
                os.lseek(fd, rest, os.SEEK_SET)

        def work(conn, rest):
            n = datapath.recv_file(conn, fd, text=text)
            datapath.finish(conn)
            return n
        try:
            if not append:
                self._restart_at(fd, False)
            self._transfer(arg, work, prepare)
        except (_Refuse, _Close):
            if created:
                _remove_if_empty(p, fd)     # refused, or nothing received: leave nothing behind
            raise
        finally:
            os.close(fd)

    def cmd_STOR(self, arg: str) -> None:
        self._store(arg, append=False)

    def cmd_APPE(self, arg: str) -> None:
        self._store(arg, append=True)

    def _listing(self, arg: str, fmt: str) -> bytes:
        """The body of LIST/NLST/MLSD on the data connection (file names as they are: it is data)."""
        lines = self._listing_lines(arg, fmt)
        return "".join(f"{line}\r\n" for line in lines).encode("utf-8", "surrogateescape")

    def _listing_lines(self, arg: str, fmt: str) -> list[str]:
        args = [a for a in arg.split() if not a.startswith("-")]
        target = args[0] if args else "."
        p = self.real(target)
        try:
            entries = sorted(os.listdir(p)) if p.is_dir() else [p.name]
        except OSError as exc:        # e.g. another session removed the directory since is_dir()
            raise _Refuse(550, f"{target}: {exc.strerror or 'cannot be listed'}.") from None
        base = p if p.is_dir() else p.parent
        lines = []
        for name in entries:
            try:
                if fmt == "NLST":
                    lines.append(name)
                elif fmt == "MLSD":
                    # a symlink is followed only inside the root: no size or date from outside it
                    inside = self._inside(os.path.realpath(base / name))
                    lines.append(f"{_facts(base / name, follow=inside)} {name}")
                else:
                    lines.append(_ls_line(base / name, name))
            except OSError:
                continue
        return lines

    def _send_listing(self, arg: str, fmt: str) -> None:
        body = self._listing(arg, fmt)

        def work(conn, rest):
            conn.sendall(body)
            datapath.finish(conn, linger=0)
            return len(body)
        self._transfer(f"{fmt} {arg}".strip(), work)

    def cmd_LIST(self, arg: str) -> None:
        self._send_listing(arg, "LIST")

    def cmd_NLST(self, arg: str) -> None:
        self._send_listing(arg, "NLST")

    def cmd_MLSD(self, arg: str) -> None:
        if not self.real(arg or ".").is_dir():
            raise _Refuse(501, f"{arg}: not a directory.")
        self._send_listing(arg, "MLSD")

    def _list_control(self, arg: str, code: int) -> None:
        self.send(code, [f"Status of {arg}:", *self._listing_lines(arg, "LIST"), "End of status"])

    def cmd_ABOR(self, arg: str) -> None:
        self._close_passive()
        self.active = None
        self.send(226, "ABOR command successful; no transfer in progress.")


class _Handled(_Refuse):
    """The reply was already sent (multi-line raw); nothing more to say."""

    def __init__(self) -> None:
        super().__init__(0, "")


_FOREIGN_LOGGED = 5      # foreign passive connections logged per data connection (NOREDIRECT)
_LOGIN_GRACE = 5         # seconds a session past LOGINTIMEOUT has to send its 421 before it is cut off

_NO_LOGIN = {"USER", "PASS", "QUIT", "AUTH", "ADAT", "PBSZ", "PROT", "CCC", "FEAT", "SYST", "NOOP", "HELP",
             "STAT", "OPTS", "REIN"}


def _prepare(prepare: Callable[[], None], sock: socket.socket) -> None:
    """A command's step once its data connection is there; the connection closed if it fails."""
    try:
        prepare()
    except BaseException:
        sock.close()
        raise


def _remove_if_empty(path: Path, fd: int) -> None:
    """Remove the file this upload created when it is still empty and still the one at path."""
    try:
        st = os.fstat(fd)
        if st.st_size == 0 and os.stat(path, follow_symlinks=False).st_ino == st.st_ino:
            os.unlink(path)
    except OSError:
        pass


def _octets(text: str) -> bytes:
    """A password as bytes, for a constant-time comparison (hmac.compare_digest)."""
    return text.encode("utf-8", "surrogateescape")


def _verb(line: bytes) -> str:
    """The verb of a queued command line ("" when it is none, or an overlong one)."""
    try:
        return grammar.parse_command(line).verb if line else ""
    except GrammarError:
        return ""


def _cut(conn) -> None:
    """Stop a data transfer at once: both directions of its TCP connection (TLS or not)."""
    sock = getattr(conn, "sock", conn)      # a TLSConn or GSSConn, or the socket itself
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _unmap(ip: str) -> str:
    """An IPv4 client on a dual-stack listener is an IPv4 session (PASV/PORT work)."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _ls_line(path: Path, name: str) -> str:
    st = os.lstat(path)
    t = time.gmtime(st.st_mtime)
    when = (f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}"
            if time.time() - st.st_mtime < 180 * 86400 else f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d}  {t.tm_year}")
    return f"{stat.filemode(st.st_mode)} {st.st_nlink:3d} ftp      ftp      {st.st_size:12d} {when} {name}"


def _facts(path: Path, follow: bool = True) -> str:
    """RFC 3659 facts of path; follow=False describes a symlink itself (type=OS.unix=slink)."""
    st = os.stat(path) if follow else os.lstat(path)
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "OS.unix=slink" if stat.S_ISLNK(st.st_mode) else "file"
    perm = "elcmfd" if kind == "dir" else "radfw"
    modify = time.strftime("%Y%m%d%H%M%S", time.gmtime(st.st_mtime))
    return f"type={kind};size={st.st_size};modify={modify};perm={perm};"
