"""Kerberos for FTP: the GSSAPI mechanism of RFC 2228 (AUTH GSSAPI, ADAT, MIC/ENC/CONF, PBSZ/PROT
data blocks), on python-gssapi over MIT Kerberos.

Public API
    available() -> str | None                       # why Kerberos cannot be used here (None: it can)
    Initiator(host, ccache=None)                    # the client: target ftp@host (host-based name)
        .first_token() -> bytes ; .step(token) -> bytes | None ; .complete
    Acceptor(keytab=None)                           # the server: any principal of the keytab
        .step(token) -> bytes | None ; .complete ; .principal ("alice@REALM")
    Protection (both have one once complete: .protection)
        .command(line, private) -> "MIC <b64>" | "ENC <b64>"       # RFC 2228 protected command
        .open_command(verb, arg) -> (line, private)                 # the server's side of it
        .reply_lines(raw_reply, private) -> bytes                   # 631 / 632 line by line
        .open_reply(code, lines) -> (raw reply bytes, private)      # the client's side of it
        .wrap(data, private) / .unwrap(token) -> (data, private)
    GSSConn(sock, protection, level "S"|"P", pbsz)   # a data connection in RFC 2228 blocks
        sendall(data), recv_into(buf), fill(buf) -> (n, ended), close_notify(), bulk(), sock
    KerberosError                                   # a GSSAPI failure, one line (.reason)

The wire, as MIT's ftp/ftpd speak it (krb5-appl): the client sends AUTH GSSAPI (334), then ADAT
with the base64 of its GSS token until the server answers 235 (done, `ADAT=` carries the server's
last token for mutual authentication) or 335 (more). From then on commands are gss_wrap()ed:
`MIC <base64>` (integrity, no confidentiality) or `ENC <base64>` (integrity and confidentiality);
each line of the reply to a protected command is wrapped the same way and sent as `631` (MIC) or
`632` (ENC), with `-` for all but the last line. `CONF` (confidentiality without integrity) has no
GSSAPI form: 537 (MIT ftpd does the same), so 633 never occurs. Data with PROT S or P goes in
blocks: a 4-byte big-endian length and a gss_wrap() token of at most PBSZ bytes (S: integrity,
P: privacy); the sender ends the data with the token of an empty block, so that a cut connection
is an incomplete transfer (MIT's secure_flush does the same).
"""

from __future__ import annotations

import base64
import binascii
import socket
import struct
import threading

from lab.ftps.grammar import GrammarError, ReplyReader
from lab.ftps.tls import Truncated, fill_by_recv

MAX_BLOCK = 1 << 20        # the largest data block accepted, whatever PBSZ says (hostile lengths)


class KerberosError(Exception):
    """A GSSAPI operation failed; .reason says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def available() -> str | None:
    """Why Kerberos cannot be used (python-gssapi missing), or None."""
    try:
        import gssapi  # noqa: F401
    except ImportError as exc:
        return f"Kerberos needs the python-gssapi package ({exc})"
    return None


def _gssapi():
    try:
        import gssapi
    except ImportError as exc:
        raise KerberosError(f"Kerberos needs the python-gssapi package ({exc})") from None
    return gssapi


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise GrammarError("not base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Protection:
    """gss_wrap/gss_unwrap on an established context, for the control and the data connections.
    One lock: a transfer's thread wraps data while the session thread may unwrap an ABOR, and a
    GSSAPI context is not safe for two threads at once."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._lock = threading.Lock()

    def wrap(self, data: bytes, private: bool) -> bytes:
        try:
            with self._lock:
                res = self._ctx.wrap(bytes(data), private)
        except Exception as exc:      # gssapi.exceptions.GSSError and friends
            raise KerberosError(f"gss_wrap failed: {_reason(exc)}") from None
        if private and not res.encrypted:
            raise KerberosError("gss_wrap did not encrypt (no confidentiality in this context)")
        return res.message

    def unwrap(self, token: bytes) -> tuple[bytes, bool]:
        try:
            with self._lock:
                res = self._ctx.unwrap(token)
        except Exception as exc:
            raise KerberosError(f"gss_unwrap failed: {_reason(exc)}") from None
        return res.message, bool(res.encrypted)

    def max_plain(self, pbsz: int, private: bool) -> int:
        """The largest block of data whose token fits in pbsz bytes."""
        with self._lock:
            return max(1, int(self._ctx.get_wrap_size_limit(pbsz, private)))

    # -- the control connection
    def command(self, line: str, private: bool) -> str:
        """A command line as RFC 2228 sends it once security is established."""
        token = self.wrap((line + "\r\n").encode("utf-8", "surrogateescape"), private)
        return f"{'ENC' if private else 'MIC'} {b64encode(token)}"

    def open_command(self, verb: str, arg: str) -> tuple[str, bool]:
        """MIC/ENC <b64> -> (the command line inside, was it private). The protection asked for
        must be what arrived: an ENC whose token is not encrypted is refused."""
        data, private = self.unwrap(b64decode(arg))
        if verb == "ENC" and not private:
            raise KerberosError("ENC command without confidentiality")
        return data.rstrip(b"\x00").decode("utf-8", "surrogateescape").rstrip("\r\n"), private

    def reply_lines(self, raw: bytes, private: bool) -> bytes:
        """A formatted reply (format_reply's bytes) wrapped line by line: 631/632, '-' but on the last."""
        lines = raw.decode("utf-8", "surrogateescape").split("\r\n")[:-1]
        code = 632 if private else 631
        out = []
        for i, line in enumerate(lines):
            token = b64encode(self.wrap((line + "\r\n").encode("utf-8", "surrogateescape"), private))
            out.append(f"{code}{'-' if i < len(lines) - 1 else ' '}{token}")
        return ("\r\n".join(out) + "\r\n").encode("ascii")

    def open_reply(self, code: int, lines: tuple[str, ...]) -> tuple[bytes, bool]:
        """The lines of a 631/632/633 reply -> the reply inside (raw bytes) and its protection."""
        if code == 633:
            raise KerberosError("633 (confidentiality without integrity) has no GSSAPI form")
        inner, private_all = [], True
        for line in lines:
            data, private = self.unwrap(b64decode(line))
            if code == 632 and not private:
                raise KerberosError("632 reply without confidentiality")
            private_all = private_all and private
            inner.append(data.rstrip(b"\x00"))
        raw = b"".join(d if d.endswith(b"\n") else d + b"\r\n" for d in inner)
        return raw, private_all


def _flags(gssapi):
    f = gssapi.RequirementFlag
    # mutual authentication, replay detection, integrity and confidentiality (MIT ftp asks for the
    # first two); no sequence flag: control replies and data blocks share the context and are
    # unwrapped in an order the peer did not wrap them in (a 150 and the first data block)
    return f.mutual_authentication | f.replay_detection | f.integrity | f.confidentiality


class _Exchange:
    """One side of the ADAT exchange: tokens in and out until the context is complete; then its
    Protection (wrap/unwrap). self._ctx is the gssapi.SecurityContext."""

    _ctx = None
    protection: Protection | None = None

    @property
    def complete(self) -> bool:
        return bool(self._ctx.complete)

    def step(self, token: bytes | None) -> bytes | None:
        try:
            out = self._ctx.step(token)
        except Exception as exc:
            raise KerberosError(_reason(exc)) from None
        if self._ctx.complete:
            self.protection = Protection(self._ctx)
            self._established()
        return out

    def _established(self) -> None:
        """Called once the context is complete."""


class Initiator(_Exchange):
    """The client's side of ADAT: a context for the service ftp@host."""

    def __init__(self, host: str, ccache: str | None = None):
        gssapi = _gssapi()
        try:
            store = {"ccache": ccache} if ccache else None
            creds = gssapi.Credentials(usage="initiate", store=store) if store else None
            target = gssapi.Name(f"ftp@{host}", gssapi.NameType.hostbased_service)
            self._ctx = gssapi.SecurityContext(name=target, creds=creds, usage="initiate", flags=_flags(gssapi))
        except Exception as exc:
            raise KerberosError(f"cannot start Kerberos for ftp@{host}: {_reason(exc)}") from None
        self.protection: Protection | None = None

    def first_token(self) -> bytes:
        return self.step(None) or b""


class Acceptor(_Exchange):
    """The server's side of ADAT, with the keytab's keys (None: KRB5_KTNAME / the default)."""

    def __init__(self, keytab: str | None = None):
        gssapi = _gssapi()
        try:
            creds = gssapi.Credentials(usage="accept", store={"keytab": str(keytab)}) if keytab else None
            self._ctx = gssapi.SecurityContext(creds=creds, usage="accept")
        except Exception as exc:
            raise KerberosError(f"cannot accept Kerberos: {_reason(exc)}") from None
        self.protection: Protection | None = None
        self.principal = ""

    def _established(self) -> None:
        self.principal = str(self._ctx.initiator_name)


def check_keytab(keytab: str) -> None:
    """The keytab can be used to accept (KerberosError naming why not)."""
    gssapi = _gssapi()
    try:
        gssapi.Credentials(usage="accept", store={"keytab": str(keytab)})
    except Exception as exc:
        raise KerberosError(f"{keytab}: {_reason(exc)}") from None


# -- the data connection ---------------------------------------------------------------------------

class GSSConn:
    """A data connection in RFC 2228 blocks (PROT S: integrity; P: privacy). The interface of
    lab.ftps.tls.TLSConn that lab.ftps.data uses: sendall, recv_into, fill, close_notify, bulk, sock."""

    def __init__(self, sock: socket.socket, protection: Protection, level: str, pbsz: int):
        self.sock = sock
        self._p = protection
        self._private = level == "P"
        self._pbsz = pbsz
        self._max = protection.max_plain(pbsz, self._private)
        self._pending = b""
        self.peer_ended = False         # the peer's end-of-data token arrived
        self.sent_end = False

    def bulk(self) -> None:            # blocks are already as big as PBSZ allows
        pass

    # -- sending
    def sendall(self, data) -> None:
        view = memoryview(data)
        out = bytearray()
        for i in range(0, len(view), self._max):
            token = self._wrap(view[i:i + self._max])
            out += struct.pack(">I", len(token)) + token
        self._send(out)

    def _wrap(self, data) -> bytes:
        try:
            return self._p.wrap(data, self._private)
        except KerberosError as exc:        # the data path knows OSError: an aborted transfer
            raise OSError(f"Kerberos: {exc.reason}") from None

    def _send(self, out: bytes) -> None:
        try:
            self.sock.sendall(out)
        except BlockingIOError:
            raise TimeoutError("data connection send timed out") from None

    def close_notify(self) -> None:
        """The sender's end of data: the token of an empty block (the receiver sends nothing)."""
        if self.peer_ended or self.sent_end:
            return
        self.sent_end = True
        token = self._wrap(b"")
        self._send(struct.pack(">I", len(token)) + token)

    # -- receiving
    def _read_exact(self, n: int, first: bool = False) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except BlockingIOError:
                raise TimeoutError("data connection receive timed out") from None
            if not chunk:
                if first and not buf and self.sent_end:
                    return None          # we ended the data; the peer just closes
                raise Truncated("data connection closed before the end-of-data token (RFC 2228 blocks)")
            buf += chunk
        return bytes(buf)

    def _next_block(self) -> bytes:
        head = self._read_exact(4, first=True)
        if head is None:
            return b""
        (length,) = struct.unpack(">I", head)
        if length > max(self._pbsz, MAX_BLOCK):
            raise OSError(f"data block of {length} bytes is larger than PBSZ {self._pbsz}")
        try:
            data, private = self._p.unwrap(self._read_exact(length))
        except KerberosError as exc:
            raise OSError(f"Kerberos: {exc.reason}") from None
        if self._private and not private:
            raise OSError("PROT P data block without confidentiality")
        if not data:
            self.peer_ended = True
        return data

    def recv_into(self, buf, nbytes: int | None = None) -> int:
        view = memoryview(buf)
        n = len(view) if nbytes is None else min(nbytes, len(view))
        while not self._pending:
            if self.peer_ended:
                return 0
            self._pending = self._next_block()
            if not self._pending:
                return 0
        take = self._pending[:n]
        view[:len(take)] = take
        self._pending = self._pending[len(take):]
        return len(take)

    def fill(self, buf: bytearray) -> tuple[int, bool]:
        return fill_by_recv(self.recv_into, buf)


def reply_reader_for(raw: bytes):
    """The replies inside an unwrapped 631/632 reply (normally one)."""
    return ReplyReader().feed(raw)

