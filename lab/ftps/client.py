"""The lab's FTP/FTPS client: the z/OS client statements, every data mode, failures by stage.

Public API
    c = FTPClient(config=ClientConfig(), security=None | "plain" | "tls" | "tls-ccc" | "implicit"
                  | "implicit-zos", data=None | "pasv" | "epsv" | "port" | "eprt",
                  ca=None, cert=None, key=None, verify=None, port_address=None, log=None)
    c.connect(host, port=None)      # default port 21, or TLSPORT for implicit security
    c.login(user, password)         # AUTH TLS / USER / PASS / PBSZ 0 / PROT P / CCC (+NOOP)
    c.get(remote, local=None, rest=0, expect_sha256=None, ascii=False) -> TransferResult  # local None = discard
    c.put(local, remote, rest=0, ascii=False) -> TransferResult     # ascii: TYPE A (CRLF on the wire)
    c.ls(path="", verb="LIST") -> str          (c.last_result has its TransferResult)
    c.size(path), c.cwd(path), c.pwd(), c.command(verb, arg="") -> Reply, c.ccc(), c.rein(),
    c.quit(), c.close()
    c.transcript: list[(ts, dir, line)], dir "C>S" / "S>C" / "info", grammar.loggable (PASS masked)
    TransferResult(bytes, sha256, seconds, mbps, direction, remote).to_dict()
    FTPError(stage, reason, code=None): stage in STAGES =
        connect | tls | login | data-setup | data-connect | transfer | verify
Also a context manager (closes on exit).

What the options mean
- security overrides the TLS statements: "tls" = SECURE_MECHANISM TLS + PROT P; "tls-ccc" = the
  same then CCC after login (TLSRFCLEVEL RFC4217: close_notify both ways; CCCNONOTIFY: none;
  DRAFT: the z/OS client has no CCC -> FTPError tls); "implicit" = handshake first on TLSPORT
  (SECUREIMPLICITZOS FALSE); "implicit-zos" = clear 220 first, then the handshake (TRUE).
  security=None derives it from the config (SECURE_MECHANISM, and the port equal to TLSPORT).
- data forces one data mode. data=None runs the z/OS algorithm: EPSV4 TRUE tries EPSV first and
  stops using EPSV/EPRT for the session when it is refused or the 229 is malformed; then
  FWFRIENDLY TRUE -> PASV, FALSE -> PORT. PASSIVEIGNOREADDR TRUE connects to the control peer
  address with the 227 port (default FALSE: trusts the 227 address, as z/OS does).
- Data connections fail fast: connect/accept wait DATACONNTIME (default 2 s); replies wait
  INACTTIME; connect + TLS + login must finish within MYOPENTIME.
- TLS: data connections resume the control session (SECURE_SESSION_REUSE ALLOWED/REQUIRED;
  REQUIRED fails when the server did not resume; NONE never offers it). Session binding: a data
  connection that resumed any session but the one offered, which this control connection got,
  is closed before a byte moves (stage tls), under ALLOWED too. A TLS 1.3 ticket resumes
  once, so each data connection offers the session the previous one ended with (a chain that
  starts at the control connection), and every data connection ends with close_notify both
  ways (OpenSSL drops sessions of connections that end without it). The FTP client is the
  TLS client on data connections also in active mode. SECURE_HOSTNAME REQUIRED checks the
  server certificate names the host. verify=None verifies the server certificate when CAs are
  given (ca / KEYRING), like curl without -k otherwise.
- Stages: "verify" is a SHA-256 mismatch (expect_sha256) or a size mismatch after a transfer;
  certificate problems are "tls". A truncated TLS data stream (no close_notify) is "transfer".
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.ftps import attls, grammar, gss, netascii, waiting
from lab.ftps import data as datapath
from lab.ftps import tls as tlsmod
from lab.ftps.config import ClientConfig
from lab.ftps.grammar import GrammarError, Reply, ReplyReader
from lab.ftps.keepalive import keep_alive
from lab.ftps.modes import DATA_MODES, STAGES
from lab.ftps.modes import SECURITY_MODES as SECURITY

#: Seconds CCC at TLSRFCLEVEL RFC4217 waits for the server's close_notify (tls.TLSConn.ccc's default).
CCC_NOTIFY_WAIT = 5.0
#: Commands every server knows (RFC 959): a 500 to one of them is not "command not implemented".
RFC959_VERBS = {"NOOP", "TYPE", "MODE", "STRU", "PASV", "PORT", "CWD", "PWD", "RETR", "STOR", "LIST", "NLST",
                "QUIT", "SYST", "STAT"}


class FTPError(Exception):
    """A failed step; stage says where (STAGES), code is the FTP reply code when there was one."""

    def __init__(self, stage: str, reason: str, code: int | None = None):
        assert stage in STAGES, stage
        super().__init__(f"{stage}: {reason}" + (f" (reply {code})" if code else ""))
        self.stage, self.reason, self.code = stage, reason, code


@dataclass
class TransferResult:
    bytes: int
    sha256: str
    seconds: float           # the data flow: from the data connection being ready to the final reply
    mbps: float              # MB/s (10^6 bytes per second) over those seconds
    direction: str = ""      # "get" | "put" | "ls"
    remote: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class FTPClient:
    def __init__(self, config: ClientConfig | None = None, *, security: str | None = None,
                 data: str | None = None, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, verify: bool | None = None,
                 port_address: str | None = None, log: Callable[[str, str], None] | None = None,
                 ccache: str | None = None):
        if security is not None and security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}")
        if data is not None and data not in DATA_MODES:
            raise ValueError(f"data must be one of {', '.join(DATA_MODES)}")
        self.cfg = config or ClientConfig()
        if security in ("tls", "tls-ccc", "implicit", "implicit-zos"):
            dc = self.cfg.SECURE_DATACONN if self.cfg.SECURE_DATACONN in ("SAFE", "PRIVATE") else "PRIVATE"
            self.cfg = self.cfg.updated(SECURE_MECHANISM="TLS", SECURE_DATACONN=dc)
        elif security in ("gssapi", "gssapi-ccc"):
            dc = self.cfg.SECURE_DATACONN if self.cfg.SECURE_DATACONN in ("SAFE", "PRIVATE") else "PRIVATE"
            self.cfg = self.cfg.updated(SECURE_MECHANISM="GSSAPI", SECURE_DATACONN=dc)
        elif security == "plain":
            self.cfg = self.cfg.updated(SECURE_MECHANISM="NONE")
        if security in ("implicit", "implicit-zos"):
            self.cfg = self.cfg.updated(SECUREIMPLICITZOS=(security == "implicit-zos"))
        self.security = security
        self.data_mode = data
        self.cas = tlsmod.keyring_files(self.cfg.KEYRING, ca)
        self.cert, self.key = cert, key
        self.verify = bool(self.cas) if verify is None else verify
        # TLSMECHANISM ATTLS: TLS as the AT-TLS policy's rule for each connection says
        self.attls = attls.load_policy(self.cfg.ATTLSPOLICY) if self.cfg.TLSMECHANISM == "ATTLS" else None
        self._attls_contexts = attls.Contexts(cert, key, ca, verify) if self.attls else None
        self.mapping: attls.Mapping | None = None     # the control connection's AT-TLS mapping
        # Kerberos (RFC 2228): the ticket cache (None: KRB5CCNAME), the established protection,
        # and whether commands go ENC (SECURE_CTRLCONN PRIVATE) or MIC (z/OS: safe after ADAT)
        self.ccache = ccache
        self.gss: gss.Protection | None = None
        self.pbsz = 0
        self.port_address = port_address
        self.log = log
        self.transcript: list[tuple[float, str, str]] = []
        self.sock: socket.socket | None = None
        self.ctrl: tlsmod.TLSConn | None = None
        self.host = ""
        self.implicit = False
        self.ccc_done = False
        self._after_ccc: tuple[str, float] | None = None   # (TLSRFCLEVEL, seconds CCC waited) until a reply
        self._last_verb = ""
        self._ccc_first = b""
        self.prot = "C"
        self._reader = ReplyReader()
        self._replies: list[Reply] = []
        self._ctx = None
        self._session = None            # the session the next data connection offers
        self._family = tlsmod.SessionFamily()   # every session this control connection got
        self._no_epsv = False
        self.last_result: TransferResult | None = None
        self.tls_info: dict = {}
        self._stage_now = "connect"     # the STAGES entry a failure now belongs to
        self._tls_fresh = False         # TLS just established, nothing read through it yet

    # -- plumbing
    def _note(self, direction: str, line: str) -> None:
        line = grammar.loggable(line)     # PASS in any spelling masked; a hostile server's bytes made printable
        self.transcript.append((time.time(), direction, line))
        if self.log:
            self.log(direction, line)

    def _tls_setup(self, mapping: attls.Mapping | None) -> tuple:
        """(context, TLS role, handshake timeout or None): the client's own context, or with ATTLS
        the context of the mapping's environment and its HandshakeRole."""
        if mapping is None:
            return self._tls_context(), "client", None
        try:
            return self._attls_contexts.get(mapping), mapping.role, mapping.handshake_timeout
        except tlsmod.TLSSetupError as exc:
            raise FTPError("tls", f"AT-TLS rule {mapping.rule}: {exc.reason}") from None

    def _attls_refusal(self) -> str | None:
        """TLSMECHANISM ATTLS: why AT-TLS cannot secure the control connection (None: it can)."""
        if self.attls is None:
            return None
        local, peer = self.sock.getsockname(), self.sock.getpeername()
        self.mapping = self.attls.match("outbound", local[1], peer[1], local[0], peer[0])
        if self.mapping is None:
            return (f"no AT-TLS rule in {self.attls.source} maps the control connection "
                    f"(Outbound, remote port {peer[1]})")
        return self.mapping.unusable_for_ftp()

    def _tls_context(self):
        if self._ctx is None:
            try:
                self._ctx = tlsmod.client_context(self.cas, self.cert, self.key, verify=self.verify,
                                                  ciphers=self.cfg.CIPHERSUITE,
                                                  max_version=self.cfg.TLSMAXVERSION)
            except Exception as exc:
                raise FTPError("tls", f"cannot set up TLS: {exc}") from None
        return self._ctx

    @property
    def _channel(self):
        """What carries the control channel now: the TLSConn while protected, else the TCP socket."""
        return self.ctrl if self.ctrl is not None else self.sock

    def _send(self, verb: str, arg: str = "") -> None:
        try:
            line = grammar.format_command(verb, arg)
        except GrammarError as exc:          # a path with CR/LF would smuggle a second command
            raise FTPError(self._stage_now, f"refusing to send {verb}: {exc}") from None
        text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
        self._last_verb = verb.upper()
        if self.gss is not None and not self.ccc_done:
            private = self.cfg.SECURE_CTRLCONN == "PRIVATE"
            self._note("C>S", f"[{'ENC' if private else 'MIC'}] {text}")
            try:
                line = (self.gss.command(text, private) + "\r\n").encode("ascii")
            except gss.KerberosError as exc:
                raise FTPError("tls", f"cannot protect {verb}: {exc.reason}") from None
        else:
            self._note("C>S", text)
        try:
            self._channel.sendall(line)
        except (OSError, tlsmod.TLSTimeout) as exc:
            raise FTPError(self._stage_now, f"control connection lost while sending {verb}: {exc}") from None

    def _ctrl_buffered(self) -> bool:
        return bool(self._replies) or (self.ctrl is not None and self.ctrl.conn.pending() > 0)

    def read_reply(self, timeout: float | None = None) -> Reply:
        tlsmod.set_timeout(self.sock, timeout or self.cfg.INACTTIME)
        fresh = self.ctrl is not None and self._tls_fresh
        while not self._replies:
            try:
                chunk = self._channel.recv(8192)
            except (BlockingIOError, tlsmod.TLSTimeout):
                raise FTPError(self._stage_now, "no reply from the server (timeout)") from None
            except (OSError, tlsmod.Truncated) as exc:
                # TLS 1.3: the server checks our certificate after our side of the handshake is
                # done, so its refusal arrives as an alert on the first read.
                # A reset right after our handshake is the same refusal with the alert lost.
                stage = "tls" if fresh or "alert" in str(exc).lower() else self._stage_now
                raise FTPError(stage, f"control connection lost: {exc}") from None
            if not chunk:
                raise FTPError("tls" if fresh else self._stage_now, "the server closed the control connection"
                               + (" right after the TLS handshake" if fresh else ""))
            if self._after_ccc is not None and not self._ccc_first:
                self._ccc_first = chunk[:1]       # the first byte the server sent in clear
            try:
                self._replies += self._reader.feed(chunk)
            except GrammarError as exc:
                if self._after_ccc is not None and self._ccc_first and 0x14 <= self._ccc_first[0] <= 0x17:
                    raise FTPError("tls", self._ccc_mismatch(None)) from None
                raise FTPError(self._stage_now, f"bad reply: {exc}") from None
        reply = self._replies.pop(0)
        self._tls_fresh = False
        if self._after_ccc is not None:
            level, self._after_ccc = self._after_ccc, None
            # a 500 to a command every server knows: our close_notify was read as part of it
            if level[0] == "RFC4217" and reply.code in (500, 501) and self._last_verb in RFC959_VERBS:
                for line in str(reply).splitlines():
                    self._note("S>C", line)
                raise FTPError("tls", self._ccc_mismatch(reply, level[1]), reply.code)
        mark = ""
        if reply.code in (631, 632, 633) and self.gss is not None:
            reply, mark = self._open_reply(reply)
        for line in str(reply).splitlines():
            self._note("S>C", mark + line)
        return reply

    def _ccc_mismatch(self, reply: Reply | None, waited: float = 0.0) -> str:
        """What went wrong at the first reply after CCC when the two ends' TLSRFCLEVEL differ."""
        if reply is None:      # we are at CCCNONOTIFY: TLS bytes where the first clear reply belongs
            return ("CCC: the server did not leave TLS without alerts as TLSRFCLEVEL CCCNONOTIFY expects: its "
                    "next reply was TLS data (its close_notify, as at RFC4217) where a clear reply belongs "
                    "(CCC/CCCNONOTIFY mismatch? the server seems to be at TLSRFCLEVEL RFC4217)")
        silent = f"no close_notify came back in {waited:.0f} s, and " if waited >= CCC_NOTIFY_WAIT - 0.5 else ""
        return (f"CCC: the server did not shut TLS down as TLSRFCLEVEL RFC4217 expects: {silent}it read our "
                f"close_notify as the start of the next command and answered {reply.lines[-1]!r} "
                f"(CCC/CCCNONOTIFY mismatch? the server seems to be at TLSRFCLEVEL CCCNONOTIFY)")

    def _open_reply(self, reply: Reply) -> tuple[Reply, str]:
        """A 631/632 reply -> the reply inside, checked (RFC 2228); 633 has no GSSAPI form."""
        try:
            raw, _ = self.gss.open_reply(reply.code, reply.lines)
            inner = gss.reply_reader_for(raw)
        except (gss.KerberosError, GrammarError) as exc:
            raise FTPError("tls", f"protected reply {reply.code} failed its check: "
                                  f"{getattr(exc, 'reason', exc)}", reply.code) from None
        if len(inner) != 1:
            raise FTPError("tls", f"protected reply {reply.code} held {len(inner)} replies, not one", reply.code)
        return inner[0], f"[{reply.code}] "

    def command(self, verb: str, arg: str = "") -> Reply:
        """Send one command, return its final reply (1xx are skipped)."""
        self._send(verb, arg)
        reply = self.read_reply()
        while reply.kind == 1:
            reply = self.read_reply()
        return reply

    def _expect(self, reply: Reply, ok: tuple[int, ...], stage: str, what: str) -> Reply:
        if reply.code not in ok and reply.kind not in ok:
            raise FTPError(stage, f"{what}: {reply.lines[-1] if reply.lines else ''}".strip(), reply.code)
        return reply

    # -- connect / TLS / login
    def connect(self, host: str, port: int | None = None) -> Reply:
        sec = self.security
        implicit = sec in ("implicit", "implicit-zos") or (
            sec is None and self.cfg.SECURE_MECHANISM == "TLS" and port is not None
            and self.cfg.TLSPORT and port == self.cfg.TLSPORT)
        port = port or (self.cfg.TLSPORT if implicit else 21)
        self.host, self.implicit = host, bool(implicit)
        self._stage_now = "connect"
        self._deadline = time.monotonic() + self.cfg.MYOPENTIME
        try:
            self.sock = socket.create_connection((host, port), timeout=self.cfg.MYOPENTIME)
        except OSError as exc:
            raise FTPError("connect", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keep_alive(self.sock, self.cfg.FTPKEEPALIVE)
        self._note("info", f"connected to {host}:{port}" + (" (implicit TLS)" if implicit else ""))
        # The greeting must come within MYOPENTIME (a SECUREIMPLICITZOS mismatch waits here).
        if implicit and not self.cfg.SECUREIMPLICITZOS:
            self._start_tls()
            greeting = self.read_reply(timeout=self._left())
        else:
            try:
                greeting = self.read_reply(timeout=self._left())
            except FTPError as exc:
                if not implicit:
                    raise
                raise FTPError("tls", f"{exc.reason}: no clear 220 on the implicit port "
                                      "(a handshake-first server? SECUREIMPLICITZOS TRUE waits for it)") from None
            if greeting.code == 220 and implicit:
                self._start_tls()
        self._expect(greeting, (220,), "connect", "server refused the session")
        if implicit:
            self.prot = "P"
        return greeting

    def _start_tls(self) -> None:
        self._stage_now = "tls"
        if (why := self._attls_refusal()) is not None:
            raise FTPError("tls", why)
        ctx, role, timeout = self._tls_setup(self.mapping)
        if self.mapping is not None:
            self._note("info", f"AT-TLS rule {self.mapping.rule} ({self.mapping.where}): HandshakeRole {role}")
        try:
            self.ctrl = tlsmod.secure(ctx, self.sock, role, min(timeout or 1e9, self._left()), hostname=self.host)
        except tlsmod.TLSFailure as exc:
            raise FTPError("tls", f"TLS handshake failed: {exc.reason}") from None
        if self.cfg.SECURE_HOSTNAME == "REQUIRED":
            cert = self.ctrl.peer_cert
            if cert is None or not tlsmod.check_hostname(cert, self.host):
                raise FTPError("tls", f"server certificate does not name {self.host} (SECURE_HOSTNAME REQUIRED)")
        self._tls_fresh = True
        self.tls_info = {"version": self.ctrl.version, "cipher": self.ctrl.cipher}
        self._note("info", f"TLS established: {self.ctrl.version} {self.ctrl.cipher}")

    def _left(self) -> float:
        return max(0.5, self._deadline - time.monotonic())

    def _auth_gssapi(self) -> bool:
        """AUTH GSSAPI and the ADAT exchange (RFC 2228); True when Kerberos protects the session."""
        self._stage_now = "tls"
        reply = self.command("AUTH", "GSSAPI")
        required = self.cfg.SECURE_FTP == "REQUIRED" or self.security in ("gssapi", "gssapi-ccc")
        if reply.code != 334:
            if required:
                raise FTPError("tls", f"server refused AUTH GSSAPI: {reply.lines[-1]}", reply.code)
            self._note("info", "AUTH GSSAPI refused; continuing in clear (SECURE_FTP ALLOWED)")
            return False
        try:
            init = gss.Initiator(self.host, self.ccache)
            token = init.first_token()
            while True:
                reply = self.command("ADAT", gss.b64encode(token))
                if reply.code not in (235, 335):
                    raise FTPError("tls", f"ADAT refused: {reply.lines[-1]}", reply.code)
                text = reply.lines[-1]
                token = gss.b64decode(text.split("ADAT=", 1)[1]) if "ADAT=" in text else b""
                if token or not init.complete:
                    token = init.step(token) or b""
                if reply.code == 235:
                    break
        except gss.KerberosError as exc:
            raise FTPError("tls", f"Kerberos: {exc.reason}") from None
        except GrammarError:
            raise FTPError("tls", f"ADAT reply is not base64: {reply.lines[-1]}", reply.code) from None
        if not init.complete:
            raise FTPError("tls", "the server ended ADAT before the GSSAPI context was complete", reply.code)
        self.gss = init.protection
        self._note("info", f"Kerberos established with ftp@{self.host}: commands "
                           f"{'ENC' if self.cfg.SECURE_CTRLCONN == 'PRIVATE' else 'MIC'}-protected")
        return True

    def _protect_data_gssapi(self) -> None:
        """PBSZ (the largest protected block) and PROT P (or S) after a Kerberos login."""
        self._stage_now = "tls"
        reply = self._expect(self.command("PBSZ", str(self.cfg.SECURE_PBSZ)), (2,), "tls", "PBSZ refused")
        text = reply.lines[-1]
        self.pbsz = int(text.split("=", 1)[1]) if "PBSZ=" in text and text.split("=", 1)[1].isdigit() \
            else self.cfg.SECURE_PBSZ
        level = {"PRIVATE": "P", "SAFE": "S"}.get(self.cfg.SECURE_DATACONN)
        if level:
            self._expect(self.command("PROT", level), (2,), "tls", f"PROT {level} refused")
            self.prot = level

    def login(self, user: str, password: str = "") -> Reply:
        if self.cfg.SECURE_MECHANISM == "GSSAPI" and self.gss is None and not self.implicit:
            if self._auth_gssapi():
                self._stage_now = "login"
                reply = self.command("USER", user)
                if reply.code == 331:
                    reply = self.command("PASS", password)
                self._expect(reply, (230, 232, 202), "login", "login refused")
                self._protect_data_gssapi()
                if self.security == "gssapi-ccc":
                    self.ccc()
                self._stage_now = "data-setup"
                return reply
        wants_tls = self.cfg.SECURE_MECHANISM == "TLS"
        if wants_tls and not self.implicit and (why := self._attls_refusal()) is not None:
            if self.cfg.SECURE_FTP == "REQUIRED" or self.security in ("tls", "tls-ccc"):
                raise FTPError("tls", why)
            self._note("info", f"no TLS: {why}; continuing in clear (SECURE_FTP ALLOWED)")
            wants_tls = False
        if wants_tls and not self.implicit:
            self._stage_now = "tls"
            reply = self.command("AUTH", "TLS")
            if reply.code == 234:
                self._start_tls()
            elif self.cfg.SECURE_FTP == "REQUIRED" or self.security in ("tls", "tls-ccc"):
                raise FTPError("tls", f"server refused AUTH TLS: {reply.lines[-1]}", reply.code)
            else:
                self._note("info", "AUTH TLS refused; continuing in clear (SECURE_FTP ALLOWED)")
        self._stage_now = "login"
        reply = self.command("USER", user)
        if reply.code == 331:
            reply = self.command("PASS", password)
        self._expect(reply, (230, 232, 202), "login", "login refused")
        if self.ctrl is not None:
            self._stage_now = "tls"
            self._expect(self.command("PBSZ", "0"), (2,), "tls", "PBSZ refused")
            if self.cfg.SECURE_DATACONN in ("SAFE", "PRIVATE"):
                self._expect(self.command("PROT", "P"), (2,), "tls", "PROT P refused")
                self.prot = "P"
            elif self.cfg.SECURE_DATACONN == "NEVER" and self.implicit:
                self._expect(self.command("PROT", "C"), (2,), "tls", "PROT C refused")
                self.prot = "C"
            self._session = self.ctrl.session
            self._family = tlsmod.SessionFamily()
            self._family.add_session(self._session, control=True)
            if self.security == "tls-ccc":
                self.ccc()
        self._stage_now = "data-setup"
        return reply

    def ccc(self) -> Reply:
        """Clear the control connection (CCC) per TLSRFCLEVEL; data stays at the current PROT."""
        if self.gss is not None and not self.ccc_done:
            self._stage_now = "tls"
            reply = self._expect(self.command("CCC"), (200,), "tls", "server refused CCC")
            self.ccc_done = True            # commands go clear now; data stay protected
            self._note("info", "control connection clear after CCC (Kerberos: commands no longer wrapped)")
            if self.cfg.CCCNOOP:
                self._expect(self.command("NOOP"), (2,), "tls", "NOOP after CCC failed")
            return reply
        if self.ctrl is None:
            raise FTPError("tls", "CCC needs a TLS control connection")
        if self.cfg.TLSRFCLEVEL == "DRAFT":
            raise FTPError("tls", "CCC is not available at TLSRFCLEVEL DRAFT")
        if self.attls is not None and self.cfg.TLSRFCLEVEL == "CCCNONOTIFY":
            # IBM: an invalid combination; CCC then fails the session (AT-TLS cannot leave TLS
            # without close_notify)
            self.close()
            raise FTPError("tls", "CCC: TLSRFCLEVEL CCCNONOTIFY is not valid with TLSMECHANISM ATTLS; "
                                  "the session fails")
        self._stage_now = "tls"
        self._session = self.ctrl.session
        self._family.add_session(self._session, control=True)
        reply = self.command("CCC")
        self._expect(reply, (200,), "tls", "server refused CCC")
        notify = self.cfg.TLSRFCLEVEL == "RFC4217"
        started = time.monotonic()
        self.ctrl.ccc(notify=notify, wait=CCC_NOTIFY_WAIT)
        self.ctrl = None
        self.ccc_done = True
        self._after_ccc = (self.cfg.TLSRFCLEVEL, time.monotonic() - started)   # the next reply tells
        self._ccc_first = b""
        self._note("info", "control connection clear after CCC" + (" (close_notify exchanged)" if notify else " (no alerts)"))
        if self.cfg.CCCNOOP:
            self._expect(self.command("NOOP"), (2,), "tls", "NOOP after CCC failed")
        return reply

    def rein(self) -> Reply:
        """REIN: the server answers (protected), then both sides clear TLS (RFC 4217 section 13)."""
        reply = self._expect(self.command("REIN"), (220,), "login", "REIN refused")
        if self.ctrl is not None:
            self.ctrl.ccc(notify=True)
            self.ctrl = None
        self.implicit, self.ccc_done, self.prot, self._session = False, False, "C", None
        self._family = tlsmod.SessionFamily()
        self.gss = None
        return reply

    def quit(self) -> None:
        if self.sock is None:
            return
        try:
            self._send("QUIT")
            self.read_reply(timeout=5)
        except FTPError:
            pass
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock, self.ctrl = None, None

    def __enter__(self) -> FTPClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- simple commands
    def pwd(self) -> str:
        reply = self._expect(self.command("PWD"), (257,), "transfer", "PWD failed")
        text = reply.lines[-1]
        return text.split('"')[1] if text.count('"') >= 2 else text

    def cwd(self, path: str) -> Reply:
        return self._expect(self.command("CWD", path), (250,), "transfer", f"CWD {path} failed")

    def size(self, path: str) -> int:
        """The file's size in octets: asked in TYPE I (in TYPE A a server counts CRLFs)."""
        self._type(False, 0)
        reply = self._expect(self.command("SIZE", path), (213,), "transfer", f"SIZE {path} failed")
        try:
            return grammar.parse_decimal(reply.lines[-1].split(" ")[0])
        except GrammarError as exc:
            raise FTPError("transfer", f"SIZE {path}: bad reply: {exc}", reply.code) from None

    # -- data connections
    def _mode(self) -> str:
        if self.data_mode:
            return self.data_mode
        ipv6 = self.sock.family == socket.AF_INET6
        if ipv6 or (self.cfg.EPSV4 and not self._no_epsv):
            return "epsv"
        return "pasv" if self.cfg.FWFRIENDLY else "port"

    def _passive(self, mode: str) -> socket.socket:
        self._stage_now = "data-setup"
        if mode == "epsv":
            reply = self.command("EPSV")
            try:
                if reply.code != 229:
                    raise GrammarError(reply.lines[-1])
                hp = grammar.HostPort(self.sock.getpeername()[0], grammar.parse_229(reply.text))
            except GrammarError:
                if self.data_mode is None:       # z/OS: stop using EPSV/EPRT for this session
                    self._no_epsv = True
                    self._note("info", "EPSV refused or malformed; EPSV/EPRT off for this session")
                    return self._open_data_fallback()
                raise FTPError("data-setup", f"EPSV refused: {reply.lines[-1]}", reply.code) from None
        else:
            reply = self.command("PASV")
            try:
                if reply.code != 227:
                    raise GrammarError(reply.lines[-1])
                hp = grammar.parse_227(reply.text)
            except GrammarError:
                raise FTPError("data-setup", f"PASV refused: {reply.lines[-1]}", reply.code) from None
            if self.cfg.PASSIVEIGNOREADDR:
                hp = grammar.HostPort(self.sock.getpeername()[0], hp.port)
        self._stage_now = "data-connect"
        try:
            s = socket.create_connection((hp.host, hp.port), timeout=self.cfg.DATACONNTIME)
        except OSError as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise FTPError("data-connect", f"cannot connect to {hp}: {why}") from None
        return s

    def _open_data_fallback(self) -> socket.socket:
        """z/OS after EPSV failed: FWFRIENDLY TRUE -> PASV, FALSE -> PORT."""
        return self._passive("pasv") if self.cfg.FWFRIENDLY else self._active("port")

    def _active(self, mode: str) -> socket.socket:
        self._stage_now = "data-setup"
        local_ip = self.sock.getsockname()[0]
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        if mode == "port" and family == socket.AF_INET6:
            # nothing to announce: a PORT argument is an IPv4 address (a garbled one is dropped by
            # the kernel's FTP helper on the way); z/OS clients use EPRT on IPv6
            raise FTPError("data-setup", "PORT cannot carry this session's IPv6 address: on IPv6 the "
                                         "active-mode command is EPRT (RFC 2428)")
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.bind((local_ip, 0))
        lsock.listen(1)
        hp = grammar.HostPort(self.port_address or local_ip, lsock.getsockname()[1])
        if mode == "port":
            reply = self.command("PORT", grammar.format_port_args(hp))
        else:
            reply = self.command("EPRT", grammar.format_eprt_args(hp))
        if reply.code != 200:
            lsock.close()
            if mode == "eprt" and self.data_mode is None:
                self._no_epsv = True
            raise FTPError("data-setup", f"{mode.upper()} refused: {reply.lines[-1]}", reply.code)
        return lsock

    def _classify(self, reply: Reply, what: str) -> FTPError:
        text = reply.lines[-1] if reply.lines else ""
        full = " ".join(reply.lines)
        if reply.code == 425 and "protect" in full.lower():
            return FTPError("data-setup", f"{what}: {full.strip()}", reply.code)
        if reply.code == 425:
            return FTPError("data-connect", f"{what}: {text}", reply.code)
        if reply.code in (521, 522, 534, 536):
            return FTPError("tls", f"{what}: {text}", reply.code)
        if reply.code == 530:
            return FTPError("login", f"{what}: {text}", reply.code)
        return FTPError("transfer", f"{what}: {text}", reply.code)

    def _transfer(self, verb: str, arg: str, rest: int):
        """Set up the data connection, send the transfer command; return (conn, 1xx reply)."""
        if rest:
            self._stage_now = "transfer"
            self._expect(self.command("REST", str(rest)), (350,), "transfer", "REST refused")
        mode = self._mode()
        passive = mode in ("pasv", "epsv")
        dsock = self._passive(mode) if passive else self._active(mode)
        # (an EPSV refused under EPSV4 may have fallen back to PORT: look at what we got)
        listener = dsock if self._is_listener(dsock) else None
        try:
            self._stage_now = "transfer"
            self._send(verb, arg)
            early = None
            if listener is not None:
                dsock, early = self._accept(listener, f"{verb} {arg}".strip())
            reply = early or self.read_reply()
            if reply.kind != 1:
                raise self._classify(reply, f"{verb} {arg}".strip())
        except BaseException:
            (listener or dsock).close()
            if listener is not None and dsock is not listener:
                dsock.close()
            raise
        finally:
            if listener is not None:
                listener.close()
        dsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = dsock
        if self.gss is not None and self.prot in ("S", "P"):      # RFC 2228 blocks, no handshake
            conn = gss.GSSConn(dsock, self.gss, self.prot, self.pbsz or self.cfg.SECURE_PBSZ)
        elif self.prot == "P":
            self._stage_now = "tls"
            mapping = self._data_mapping(dsock, listener is None)
            session = None if self.cfg.SECURE_SESSION_REUSE == "NONE" or mapping is not self.mapping \
                else self._session
            ctx, role, timeout = self._tls_setup(mapping)
            try:
                conn = tlsmod.secure(ctx, dsock, role, timeout or self.cfg.DATACONNTIME + 3,
                                     session=session, hostname=self.host, watch=True)
            except tlsmod.TLSFailure as exc:
                dsock.close()
                detail = self._late_reply()
                raise FTPError("tls", f"TLS on the data connection failed: {exc.reason}{detail}") from None
            if (why := self._unbound(conn, session)) is not None:
                datapath.finish(conn, clean=False)     # before a byte of STOR data, or RETR data read
                self._note("info", why)
                raise FTPError("tls", why)
        tlsmod.set_timeout(dsock, self.cfg.INACTTIME)
        self._stage_now = "transfer"
        return conn, reply

    def _unbound(self, conn: tlsmod.TLSConn, offered) -> str | None:
        """Session binding, client side: why this data connection's TLS is not this control
        connection's, or None. Under SECURE_SESSION_REUSE REQUIRED it must resume the session
        offered, which this control connection got (at login, or from an earlier data connection of
        it); under ALLOWED a full handshake is fine, resuming any other session never."""
        if conn.session_reused:
            resumed = conn.resumed_key or tlsmod.session_fingerprint(conn.session)
            if offered is None or resumed is None or resumed != tlsmod.session_fingerprint(offered) \
                    or not self._family.holds(offered):
                return ("the data connection resumed a TLS session that is not this control connection's "
                        "(session binding); data connection closed")
            return None
        if self.cfg.SECURE_SESSION_REUSE == "REQUIRED":
            return ("the server did not resume this control connection's TLS session on the data connection "
                    "(SECURE_SESSION_REUSE REQUIRED); data connection closed")
        return None

    def _data_mapping(self, dsock: socket.socket, passive: bool) -> attls.Mapping | None:
        """TLSMECHANISM ATTLS: the data connection's mapping. SecondaryMap On: the control
        connection's; Off: the rule that maps the data connection itself (passive: outbound,
        active: inbound), or a tls failure when none does."""
        if self.mapping is None or self.mapping.secondary_map:
            return self.mapping
        local, peer = dsock.getsockname(), dsock.getpeername()
        direction = "outbound" if passive else "inbound"
        mapping = self.attls.match(direction, local[1], peer[1], local[0], peer[0])
        why = (f"no AT-TLS rule maps it ({direction.title()}, local port {local[1]}, remote port {peer[1]}) "
               f"and rule {self.mapping.rule} has SecondaryMap Off") if mapping is None else mapping.unusable_for_ftp()
        if why is not None:
            dsock.close()
            detail = self._late_reply()
            raise FTPError("tls", f"TLS on the data connection: {why}{detail}")
        return mapping

    @staticmethod
    def _is_listener(sock: socket.socket) -> bool:
        try:
            return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            return False

    def _late_reply_obj(self) -> Reply | None:
        try:
            return self.read_reply(timeout=2)
        except FTPError:
            return None

    def _late_reply(self) -> str:
        reply = self._late_reply_obj()
        return f" (server: {reply.code} {reply.lines[-1]})" if reply else ""

    def _accept(self, listener: socket.socket, what: str) -> tuple[socket.socket, Reply | None]:
        """Active mode: wait for the server's connection, or its error reply, DATACONNTIME at most.

        Returns the data socket and the 1xx reply when it came before the connection."""
        deadline = time.monotonic() + self.cfg.DATACONNTIME
        self._stage_now = "data-connect"
        early = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FTPError("data-connect", f"{what}: the server did not connect within "
                                               f"{self.cfg.DATACONNTIME:g} s")
            watch = [listener] if early else [listener, self.sock]
            r = [self.sock] if not early and self._ctrl_buffered() else \
                waiting.select(watch, [], left)[0]
            if listener in r:
                conn, _ = listener.accept()
                return conn, early
            if self.sock in r:
                reply = self.read_reply()
                if reply.kind != 1:
                    raise self._classify(reply, what)
                early = reply

    def _end_data(self, conn, linger: float = 5.0) -> None:
        """Close the data connection cleanly and keep its TLS session for the next one: in TLS 1.3
        a ticket resumes once, so each data connection resumes the ticket the previous one got
        (the chain starts at the control connection), as curl and lftp do."""
        datapath.finish(conn, clean=True, linger=linger)
        if isinstance(conn, tlsmod.TLSConn) and self.cfg.SECURE_SESSION_REUSE != "NONE":
            self._session = conn.session
            self._family.add_session(self._session)

    def _final(self, what: str) -> Reply:
        reply = self.read_reply()
        if reply.kind != 2:
            raise self._classify(reply, what)
        return reply

    # -- transfers
    def get(self, remote: str, local: str | Path | None = None, rest: int = 0,
            expect_sha256: str | None = None, hash_inline: bool | None = None,
            ascii: bool = False) -> TransferResult:
        """RETR remote into local (None = discard). The SHA-256 covers the bytes written
        (= received in TYPE I; ascii: TYPE A, CRLF on the wire becomes LF in the file)."""
        text = netascii.FromWire() if self._type(ascii, rest) else None
        fd = None
        if local is not None and str(local) != "-":
            flags = os.O_WRONLY | os.O_CREAT | (0 if rest else os.O_TRUNC)
            fd = os.open(local, flags, 0o644)
            if rest:
                os.lseek(fd, rest, os.SEEK_SET)
        elif local is not None:
            fd = 1
        # A regular file is hashed after the transfer (not timed); anything else on the fly.
        regular = fd is not None and stat.S_ISREG(os.fstat(fd).st_mode)
        inline = hash_inline if hash_inline is not None else not regular
        hasher = hashlib.sha256() if inline else None
        try:
            conn, _ = self._transfer("RETR", remote, rest)
            start = time.monotonic()     # timed: the data flow, as curl's time_total - time_pretransfer
            try:
                n = datapath.recv_file(conn, fd, hasher, text=text)
            except tlsmod.Truncated:
                datapath.finish(conn, clean=False)
                reply = self._late_reply_obj()
                if reply is not None and reply.kind != 2:
                    raise self._classify(reply, f"RETR {remote}") from None
                raise FTPError("transfer", f"RETR {remote}: data connection closed without TLS "
                                           "close_notify (incomplete transfer)") from None
            except (OSError, TimeoutError, tlsmod.TLSTimeout) as exc:
                datapath.finish(conn, clean=False)
                raise FTPError("transfer", f"RETR {remote}: {exc}") from None
            self._end_data(conn)
            self._final(f"RETR {remote}")
            seconds = time.monotonic() - start
        finally:
            if fd is not None and fd != 1:
                os.close(fd)
        digest = hasher.hexdigest() if hasher else _sha256_file(local, rest)
        result = _result(n, digest, seconds, "get", remote)
        if expect_sha256 and digest != expect_sha256.lower():
            raise FTPError("verify", f"SHA-256 of {remote} is {digest}, expected {expect_sha256}")
        self.last_result = result
        return result

    def put(self, local: str | Path, remote: str, rest: int = 0, append: bool = False,
            ascii: bool = False) -> TransferResult:
        """STOR (or APPE) local to remote, from byte rest on (ascii: TYPE A, LF goes as CRLF)."""
        text = netascii.ToWire() if self._type(ascii, rest) else None
        fd = os.open(local, os.O_RDONLY)
        try:
            conn, _ = self._transfer("APPE" if append else "STOR", remote, rest)
            start = time.monotonic()     # timed: the data flow, not the data-connection setup
            try:
                n = datapath.send_file(conn, fd, rest, text=text)
                self._end_data(conn, linger=self.cfg.INACTTIME)
            except (OSError, TimeoutError, tlsmod.TLSTimeout) as exc:
                datapath.finish(conn, clean=False)
                raise FTPError("transfer", f"STOR {remote}: {exc}") from None
            self._final(f"STOR {remote}")
            seconds = time.monotonic() - start
        finally:
            os.close(fd)
        result = _result(n, _sha256_file(local, rest), seconds, "put", remote)
        self.last_result = result
        return result

    def _type(self, ascii: bool, rest: int) -> bool:
        """Send TYPE A or TYPE I for a transfer; True for A."""
        if ascii and rest:
            # REST counts wire octets in TYPE A; the local offset would differ by every CR.
            raise FTPError("transfer", "a restart (REST) needs TYPE I, not TYPE A")
        t = "A" if ascii else "I"
        self._expect(self.command("TYPE", t), (200,), "transfer", f"TYPE {t} refused")
        return ascii

    def ls(self, path: str = "", verb: str = "LIST") -> str:
        self._expect(self.command("TYPE", "A"), (200,), "transfer", "TYPE A refused")
        start = time.monotonic()
        conn, _ = self._transfer(verb, path, 0)
        chunks = []

        class _Sink:
            def update(self, b) -> None:
                chunks.append(bytes(b))
        try:
            n = datapath.recv_file(conn, None, _Sink())
        except (tlsmod.Truncated, OSError, TimeoutError) as exc:
            datapath.finish(conn, clean=False)
            raise FTPError("transfer", f"{verb} {path}: {exc}") from None
        self._end_data(conn)
        self._final(f"{verb} {path}".strip())
        body = b"".join(chunks)
        self.last_result = _result(n, hashlib.sha256(body).hexdigest(), time.monotonic() - start, "ls", path)
        return body.decode("utf-8", "replace")


def _result(n: int, digest: str, seconds: float, direction: str, remote: str) -> TransferResult:
    seconds = max(seconds, 1e-9)
    return TransferResult(n, digest, round(seconds, 6), round(n / seconds / 1e6, 2), direction, remote)


def _sha256_file(path, offset: int = 0) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
