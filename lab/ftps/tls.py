"""TLS for FTP with pyOpenSSL: contexts, the handshake, session reuse, CCC and end-of-data.

Public API
    server_context(cert, key, cas=(), client_auth="none"|"optional"|"required",
                   ciphers=(), session_timeout=100, max_version="TLSV1.3", min_version="TLSV1.2")
    client_context(cas=(), cert=None, key=None, verify=True, ciphers=(), max_version=..., min_version=...)
    keyring_files(keyring, lab_ca=None) -> list[Path]   # z/OS KEYRING -> CA files
    set_timeout(sock, seconds)     # kernel SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket
    accept_tls(ctx, sock, timeout, watch=False) -> TLSConn          # we are the TLS server
    connect_tls(ctx, sock, timeout, session=None, hostname=None, watch=False) -> TLSConn   # the TLS client
    secure(ctx, sock, role, timeout, session=None, hostname=None, watch=False)  # role "client" | "server"
    SessionFamily: the TLS sessions of one control connection (session binding, see below)
        family.adopt(conn)  # the sessions conn was given (control, then each accepted data connection)
        family.binding(conn) -> "full" | "own" | "foreign"   # what a data connection's handshake resumed
        family.holds(session)  # a session (client side: the one it is about to offer) is the family's
    TLSConn: recv(n) / recv_into(buf) (0 = close_notify; Truncated = EOF without close_notify),
             fill(buf) -> (n, ended)   # bulk: records straight into buf until full or the end
             sendall(data), close_notify(), ccc(notify: bool), session, session_reused,
             peer_cert (cryptography x509 or None), version, cipher, sock
             bulk()                    # data connections: memory BIOs, 1 MiB per system call
             resumed_key, session_keys # watch=True: fingerprints of the session resumed / given
    check_hostname(cert, host) -> bool
    TLSFailure (handshake or verification failed; .reason), Truncated, TLSTimeout
    TLSSetupError (a certificate/key/CA file OpenSSL refuses; .path, .reason)
    is_network_error(exc), network_error_text(exc)   # a reset/timeout/TLS EOF: one log line

Why these choices:
- A socket BIO without read-ahead, so OpenSSL never reads past a record. That is what makes CCC
  exact: after the close_notify (RFC4217) or right after the 200 (CCCNONOTIFY) the next bytes on
  the TCP socket are plaintext and nothing is lost.
- Timeouts are kernel socket timeouts on a blocking socket (no Python select per call): a read
  that times out surfaces as WantRead, which TLSConn reports as TLSTimeout.
- The data path calls SSL_read straight into the caller's buffer (no per-call allocation) and
  SSL_write with the caller's big buffer (OpenSSL cuts it into records in one call).
- A data connection (never subject to CCC) switches to memory BIOs after its handshake (bulk):
  through a socket BIO without read-ahead OpenSSL makes two read() calls per 16 KiB record and one
  write() per record; with memory BIOs the lab makes one recv() and one send() per MiB. Measured on
  loopback (2 cores, 256 MiB, median of 10): 0.56 -> 0.50 CPU-s for both ends together, +13% MB/s.
  The cryptography wheel's OpenSSL offers no kTLS and no read-ahead control; this is the lever left.
- Session binding (issue 18): one server context, so one session cache and one ticket key, serves
  every control and data connection; OpenSSL resumes any session it issued, also one a thief got on
  its own control connection. So a data connection must resume a session of *its* control
  connection's family: the session the control handshake made (TLS 1.2: its master secret; TLS
  1.3: each ticket is a session of its own, with its own PSK), and every session a data connection
  of that control connection was given (TLS 1.3 chains: each data connection resumes the ticket
  the previous one brought). A session is known by the SHA-256 of its master key (TLS 1.3: the
  ticket's PSK), which only the two ends of that session know. Session ids do not serve: a TLS 1.3
  ticket gets a new id, a resumed stateless ticket has none on the server, and in TLS 1.2 a client
  chooses the id it sends with a ticket. The resumed session must be read during the handshake
  (watch=True: an OpenSSL info callback on that connection), since in TLS 1.3 the server has
  swapped it for a new ticket's session by the time SSL_do_handshake returns. The cryptography
  bindings offer neither SSL_set_session_id_context (a per-control-connection id context would make
  OpenSSL itself refuse a foreign session) nor a new-session callback; the info callback costs a
  dozen Python calls per handshake, nothing per byte.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
import struct
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from OpenSSL import SSL

from lab.ftps import waiting
from lab.ftps.config import cipher_list

try:                                    # direct SSL_read into our buffer (see TLSConn.recv_into)
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
    _FAST = hasattr(_lib, "SSL_read") and hasattr(_lib, "SSL_session_reused")
except ImportError:                     # pragma: no cover - pyOpenSSL internals moved
    _ffi = _lib = None
    _FAST = False

# AES-128-GCM first: the fastest suite with AES-NI, the CPU is the limit for FTPS here.
_TLS13_DEFAULT = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
_TLS12_DEFAULT = ("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE+AESGCM:ECDHE+CHACHA20:"
                  "ECDHE+AES:AES128-GCM-SHA256:AES128-SHA:AES256-SHA")


class TLSFailure(Exception):
    """The TLS handshake or the peer's certificate was refused; .reason says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TLSSetupError(ValueError):
    """A certificate, key or CA file OpenSSL would not take: .path names it, .reason says why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _load_file(load, path: str | Path, what: str) -> None:
    """One OpenSSL file load; its failure as a TLSSetupError naming the file."""
    try:
        load(path)
    except SSL.Error as exc:
        raise TLSSetupError(path, f"OpenSSL cannot use this {what}: {_ssl_reason(exc)}") from None


class Truncated(Exception):
    """The peer closed TCP without close_notify: the data may be incomplete (RFC 4217 12.6)."""


class TLSTimeout(TimeoutError):
    """No TLS progress within the socket timeout."""


# Errno values of a peer that reset, vanished or cannot be reached (beside ConnectionError's).
_NETWORK_ERRNOS = {errno.ENOTCONN, errno.ESHUTDOWN, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
                   errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def is_network_error(exc: BaseException) -> bool:
    """Is exc what a network does to a session (a reset, a broken pipe, a timeout, a TLS EOF or
    alert), as opposed to a bug? Those are one log line, never a traceback."""
    if isinstance(exc, (ConnectionError, TimeoutError, Truncated, TLSTimeout, TLSFailure, SSL.Error)):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def network_error_text(exc: BaseException) -> str:
    """One line for a network error: `connection reset by peer (ConnectionResetError)`."""
    if isinstance(exc, SSL.Error):
        return f"TLS: {_ssl_reason(exc)} ({type(exc).__name__})"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or "no detail")
    return f"{text[:1].lower()}{text[1:]} ({type(exc).__name__})"


def set_timeout(sock: socket.socket, seconds: float | None) -> None:
    """Blocking socket with kernel send/receive timeouts (0/None = wait forever)."""
    sock.settimeout(None)
    secs = float(seconds or 0)
    tv = struct.pack("ll", int(secs), int((secs - int(secs)) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def keyring_files(keyring: str | None, lab_ca: str | Path | None = None) -> list[Path]:
    """The CA files a z/OS KEYRING names: a PEM bundle, a folder of PEM files, or `*AUTH*/*`
    (every CA certificate of the lab = the lab CA file)."""
    files: list[Path] = []
    if keyring and keyring.strip().upper() == "*AUTH*/*":
        keyring = None
        if lab_ca:
            files.append(Path(lab_ca))
    elif keyring:
        p = Path(keyring)
        files += sorted(f for f in p.iterdir() if f.suffix in (".pem", ".crt")) if p.is_dir() else [p]
    if lab_ca and Path(lab_ca) not in files:
        files.append(Path(lab_ca))
    return files


def _base_context(method: int, ciphers: Iterable[str], max_version: str = "TLSV1.3",
                  min_version: str = "TLSV1.2") -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION if min_version.upper() == "TLSV1.3" else SSL.TLS1_2_VERSION)
    if max_version.upper() == "TLSV1.2":
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    legacy, modern = cipher_list(ciphers)
    ctx.set_cipher_list((legacy or _TLS12_DEFAULT).encode())
    if modern == "":                       # only TLS <= 1.2 suites named (the z/OS names)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    else:
        ctx.set_tls13_ciphersuites((modern or _TLS13_DEFAULT).encode())
    return ctx


def _verify_cb(conn: SSL.Connection, cert, err: int, depth: int, ok: int) -> bool:
    if not ok:
        errors = conn.get_app_data() or []
        cn = cert.to_cryptography().subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        errors.append(f"{cn[0].value if cn else '?'}: {_x509_error(err)}")
        conn.set_app_data(errors)
    return bool(ok)


def _x509_error(err: int) -> str:
    names = {10: "certificate has expired", 9: "certificate is not yet valid",
             18: "self-signed certificate", 19: "self-signed certificate in chain",
             20: "unable to get local issuer certificate (untrusted CA)",
             21: "unable to verify the first certificate", 62: "hostname mismatch"}
    return names.get(err, f"X509 verify error {err}")


def server_context(cert: str | Path, key: str | Path, cas: Iterable[str | Path] = (),
                   client_auth: str = "none", ciphers: Iterable[str] = (),
                   session_timeout: int = 100, max_version: str = "TLSV1.3",
                   min_version: str = "TLSV1.2") -> SSL.Context:
    """A TLS server context; client_auth "required" makes the handshake demand a trusted cert."""
    ctx = _base_context(SSL.TLS_SERVER_METHOD, ciphers, max_version, min_version)
    ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)     # CIPHERSUITE order = preference (z/OS)
    _load_file(lambda p: ctx.use_certificate_chain_file(str(p)), cert, "certificate")
    _load_file(lambda p: ctx.use_privatekey_file(str(p)), key, "private key")
    _load_file(lambda p: ctx.check_privatekey(), key, "private key with this certificate")
    for ca in cas:
        _load_file(lambda p: ctx.load_verify_locations(str(p)), ca, "CA certificate")
        _load_file(lambda p: ctx.load_client_ca(str(p).encode()), ca, "CA certificate")
    # A session id context is what lets data connections resume the control session.
    ctx.set_session_id(b"ftplab-ftps")
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(max(1, int(session_timeout or 1)))
    mode = {"none": SSL.VERIFY_NONE, "optional": SSL.VERIFY_PEER,
            "required": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT}[client_auth]
    ctx.set_verify(mode, _verify_cb)
    return ctx


def client_context(cas: Iterable[str | Path] = (), cert: str | Path | None = None,
                   key: str | Path | None = None, verify: bool = True,
                   ciphers: Iterable[str] = (), max_version: str = "TLSV1.3",
                   min_version: str = "TLSV1.2") -> SSL.Context:
    """A TLS client context; verify=False accepts any server certificate (like curl -k)."""
    ctx = _base_context(SSL.TLS_CLIENT_METHOD, ciphers, max_version, min_version)
    cas = list(cas)
    for ca in cas:
        _load_file(lambda p: ctx.load_verify_locations(str(p)), ca, "CA certificate")
    if cert:
        _load_file(lambda p: ctx.use_certificate_chain_file(str(p)), cert, "certificate")
        _load_file(lambda p: ctx.use_privatekey_file(str(p)), key or cert, "private key")
    ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
    ctx.set_verify(SSL.VERIFY_PEER if verify else SSL.VERIFY_NONE, _verify_cb)
    return ctx


_BULK_NET = 1 << 20        # bytes per recv() and per send() of a bulk connection at full speed
_BULK_START = 64 << 10     # its first size: most data connections (listings, small files) stay small


# -- session binding (see the module notes): which sessions belong to which control connection

def _fingerprint(session_ptr) -> bytes | None:
    """SHA-256 of a session's master key (TLS 1.3: its PSK); None for no session or no key yet.
    Only the digest is kept, never the secret."""
    if session_ptr == _ffi.NULL:
        return None
    buf = _ffi.new("unsigned char[]", 64)
    n = _lib.SSL_SESSION_get_master_key(session_ptr, buf, 64)
    secret = _ffi.buffer(buf, n)[:] if n > 0 else b""
    if not secret.strip(b"\0"):           # a session whose keys are not made yet
        return None
    return hashlib.sha256(secret).digest()


def session_fingerprint(session: SSL.Session | None) -> bytes | None:
    """The fingerprint of a pyOpenSSL session (client side: the session about to be offered)."""
    ptr = getattr(session, "_session", None)
    return _fingerprint(ptr) if _WATCHABLE and ptr is not None else None


class _Watch:
    """What one handshake showed: the session it resumed and every session it was given."""

    __slots__ = ("resumed", "keys")

    def __init__(self) -> None:
        self.resumed: bytes | None = None
        self.keys: set[bytes] = set()

    def see(self, ssl) -> None:
        key = _fingerprint(_lib.SSL_get_session(ssl))
        if key is None:
            return
        # The first session seen once OpenSSL decided to resume is the resumed one (TLS 1.3 swaps
        # it for each new ticket's session later in the same handshake).
        if self.resumed is None and _lib.SSL_session_reused(ssl):
            self.resumed = key
        self.keys.add(key)


_WATCHED: dict[int, _Watch] = {}      # SSL* address -> its watch, only while its handshake runs
_WATCHABLE = _FAST and all(hasattr(_lib, n) for n in ("SSL_set_info_callback", "SSL_SESSION_get_master_key",
                                                      "SSL_get_session"))
if _WATCHABLE:
    @_ffi.callback("void(*)(SSL *, int, int)")
    def _info_cb(ssl, where, ret):        # every handshake state change of a watched connection
        watch = _WATCHED.get(int(_ffi.cast("uintptr_t", ssl)))
        if watch is not None:
            watch.see(ssl)


class SessionFamily:
    """The TLS sessions one control connection was given: its own handshake's and those of the data
    connections accepted for it. A data connection may resume only one of these.

    The control connection's sessions are kept for good; those of data connections (one or two new
    per TLS 1.3 data connection) up to `limit`, newest kept: a client resumes the latest one, and
    TLSTIMEOUT expires the others anyway."""

    def __init__(self, limit: int = 1024):
        self._control: set[bytes] = set()
        self._recent: deque[bytes] = deque()
        self._keys: set[bytes] = set()
        self._limit = limit

    def _add(self, key: bytes | None, control: bool) -> None:
        if key is None or key in self._keys:
            return
        self._keys.add(key)
        if control:
            self._control.add(key)
            return
        self._recent.append(key)
        if len(self._recent) > self._limit:
            self._keys.discard(self._recent.popleft())

    def adopt(self, conn: TLSConn, control: bool = False) -> None:
        """Take in the sessions conn was given (its handshake's, its TLS 1.3 tickets, what it holds now)."""
        for key in conn.session_keys:
            self._add(key, control)
        self._add(session_fingerprint(conn.session), control)

    def add_session(self, session: SSL.Session | None, control: bool = False) -> None:
        """Client side: a session the client holds from one of its connections."""
        self._add(session_fingerprint(session), control)

    def holds(self, session: SSL.Session | None) -> bool:
        key = session_fingerprint(session)
        return key is not None and key in self._keys

    def binding(self, conn: TLSConn) -> str:
        """What conn's handshake did: "full" (no session resumed), "own" (one of this family),
        "foreign" (any other session, or one that cannot be told: refuse it)."""
        if not conn.session_reused:
            return "full"
        return "own" if conn.resumed_key is not None and conn.resumed_key in self._keys else "foreign"


class TLSConn:
    """One TLS connection on one TCP socket (control or data)."""

    def __init__(self, conn: SSL.Connection, sock: socket.socket):
        self.conn = conn
        self.sock = sock
        self._ssl = getattr(conn, "_ssl", None)
        self._rmem = self._wmem = None       # memory BIOs, once bulk() switched the connection
        self.resumed_key: bytes | None = None    # watch=True: the fingerprint of the session resumed
        self.session_keys: frozenset[bytes] = frozenset()   # ... and of every session seen

    def bulk(self) -> None:
        """Move records through memory BIOs from now on (data connections only: no CCC after it).

        Reads take whatever TCP has (up to 1 MiB) in one recv() and hand it to OpenSSL; writes
        collect the records of a whole sendall() and leave in one send(). The BIOs belong to the
        SSL object (freed with it); the socket is still ours and still carries the timeouts."""
        if self._rmem is not None or not _FAST or self._ssl is None:
            return
        rmem, wmem = _lib.BIO_new(_lib.BIO_s_mem()), _lib.BIO_new(_lib.BIO_s_mem())
        for bio in (rmem, wmem):
            _lib.BIO_set_mem_eof_return(bio, -1)     # empty = "retry", not end of file
        _lib.SSL_set_bio(self._ssl, rmem, wmem)
        self._rmem, self._wmem = rmem, wmem
        self._net_buffer(_BULK_START)

    def _net_buffer(self, size: int) -> None:
        """The buffer between the socket and the BIOs. It starts small and grows to 1 MiB the first
        time a recv() or a flush fills it: a MiB for every small transfer, hundreds of them at once,
        cost more in allocation than the system calls it saves."""
        self._net = bytearray(size)
        self._net_ptr = _ffi.from_buffer(self._net)
        self._net_view = memoryview(self._net)

    def _grow(self) -> None:
        if len(self._net) < _BULK_NET:
            self._net_buffer(_BULK_NET)

    def _feed(self) -> None:
        """Bulk: send what OpenSSL has written, then one recv() into the read BIO."""
        self._flush()
        try:
            n = self.sock.recv_into(self._net)
        except BlockingIOError:                      # SO_RCVTIMEO expired
            raise TLSTimeout("timed out reading TLS") from None
        if not n:
            raise Truncated("connection closed without TLS close_notify")
        _lib.BIO_write(self._rmem, self._net_ptr, n)
        if n == len(self._net):
            self._grow()

    def _flush(self) -> None:
        """Bulk: send every record waiting in the write BIO."""
        while (n := _lib.BIO_read(self._wmem, self._net_ptr, len(self._net))) > 0:
            try:
                self.sock.sendall(self._net_view[:n])
            except BlockingIOError:                  # SO_SNDTIMEO expired
                raise TLSTimeout("timed out writing TLS") from None
            if n == len(self._net):
                self._grow()

    def _read(self, ptr, n: int) -> int:
        """One SSL_read of up to n bytes at ptr: > 0 bytes, 0 = close_notify; raises on failure."""
        ssl = self._ssl
        while True:
            got = _lib.SSL_read(ssl, ptr, n)
            if got > 0:
                return got
            if self._rmem is not None and _lib.SSL_get_error(ssl, got) == _lib.SSL_ERROR_WANT_READ:
                self._feed()
                continue
            try:
                self.conn._raise_ssl_error(ssl, got)
            except SSL.ZeroReturnError:
                return 0
            except SSL.Error as exc:
                raise _read_failure(exc) from None
            return 0                                 # pragma: no cover - _raise_ssl_error always raises

    # -- facts about the session
    @property
    def version(self) -> str:
        return self.conn.get_protocol_version_name()

    @property
    def cipher(self) -> str:
        return self.conn.get_cipher_name() or ""

    @property
    def session(self) -> SSL.Session:
        return self.conn.get_session()

    @property
    def session_reused(self) -> bool:
        if _FAST and self._ssl is not None:
            return bool(_lib.SSL_session_reused(self._ssl))
        return False  # pragma: no cover

    @property
    def peer_cert(self) -> x509.Certificate | None:
        cert = self.conn.get_peer_certificate()
        return cert.to_cryptography() if cert is not None else None

    # -- data
    def recv(self, n: int = 65536) -> bytes:
        buf = bytearray(n)
        got = self.recv_into(buf)
        return bytes(buf[:got])

    def recv_into(self, buf: bytearray | memoryview, nbytes: int | None = None) -> int:
        """Up to nbytes (one TLS record at most). 0 = the peer sent close_notify."""
        view = memoryview(buf)
        n = len(view) if nbytes is None else min(nbytes, len(view))
        if _FAST and self._ssl is not None:
            return self._read(_ffi.from_buffer(view), n)
        try:
            return self.conn.recv_into(view, min(n, 16384))
        except SSL.ZeroReturnError:
            return 0
        except SSL.Error as exc:
            raise _read_failure(exc) from None

    def fill(self, buf: bytearray) -> tuple[int, bool]:
        """Read records into buf until it is full or the peer's close_notify: (bytes, ended).

        The bulk path of data connections: one SSL_read per record straight into buf, no Python
        object per call. Errors as recv_into (Truncated, TLSTimeout, OSError)."""
        if not (_FAST and self._ssl is not None):     # pragma: no cover - pyOpenSSL internals moved
            return fill_by_recv(self.recv_into, buf)
        ptr, size, filled = _ffi.from_buffer(buf), len(buf), 0
        read = self._read
        while filled < size:
            got = read(ptr + filled, size - filled)
            if not got:
                return filled, True
            filled += got
        return filled, False

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.conn.sendall(data)      # bulk: records pile up in the write BIO, sent below
        except SSL.WantWriteError:
            raise TLSTimeout("timed out writing TLS") from None
        except SSL.Error as exc:
            raise OSError(f"TLS write: {_ssl_reason(exc)}") from None
        if self._wmem is not None:
            self._flush()

    # -- ends
    def close_notify(self) -> None:
        """Send close_notify (end of data); the TCP connection is closed by the caller."""
        try:
            self.conn.shutdown()
            if self._wmem is not None:
                self._flush()
        except (SSL.Error, OSError):
            pass

    def ccc(self, notify: bool, wait: float = 5.0) -> socket.socket:
        """Leave TLS on this socket, keep TCP: the plain socket is returned.

        notify=True (TLSRFCLEVEL RFC4217): send close_notify, then read the peer's if it sends one.
        A peer that goes straight to plaintext (curl's passive CCC mode towards some servers,
        a CCCNONOTIFY peer) is detected by peeking at the first byte: TLS records start with
        0x14-0x17, FTP lines with printable characters.
        notify=False (CCCNONOTIFY): no alerts at all; the TLS state is simply dropped.
        """
        if notify:
            self.close_notify()
            r, _ = waiting.select([self.sock], [], wait)
            if r:
                first = self.sock.recv(1, socket.MSG_PEEK)
                if first and 0x14 <= first[0] <= 0x17:
                    try:
                        while self.recv_into(bytearray(4096)):
                            pass            # data before close_notify is not expected; skip it
                    except (Truncated, TLSTimeout, OSError):
                        pass
        # Tell OpenSSL the shutdown is done so freeing the object never writes anything.
        self.conn.set_shutdown(SSL.SENT_SHUTDOWN | SSL.RECEIVED_SHUTDOWN)
        return self.sock


def fill_by_recv(recv_into, buf: bytearray) -> tuple[int, bool]:
    """fill() from a recv_into that returns 0 at the end of the data: (bytes, ended)."""
    view, filled = memoryview(buf), 0
    while filled < len(buf):
        n = recv_into(view[filled:])
        if not n:
            return filled, True
        filled += n
    return filled, False


def _read_failure(exc: SSL.Error) -> Exception:
    """What a failed SSL_read (other than the peer's close_notify) means to the caller."""
    if isinstance(exc, SSL.WantReadError):        # the kernel receive timeout expired
        return TLSTimeout("timed out reading TLS")
    if isinstance(exc, SSL.SysCallError):
        if exc.args and exc.args[0] in (-1, 0):
            return Truncated("connection closed without TLS close_notify")
        return OSError(f"TLS read: {exc}")
    if "unexpected eof" in str(exc).lower():
        return Truncated("connection closed without TLS close_notify")
    return OSError(f"TLS read: {_ssl_reason(exc)}")


def _ssl_reason(exc: Exception) -> str:
    try:
        errs = exc.args[0]
        if isinstance(errs, list) and errs:
            return "; ".join(e[2] for e in errs if len(e) > 2) or str(exc)
    except (IndexError, TypeError):
        pass
    return str(exc) or type(exc).__name__


def _handshake(conn: SSL.Connection, sock: socket.socket, timeout: float | None,
               watch: bool = False) -> TLSConn:
    set_timeout(sock, timeout)
    ssl = getattr(conn, "_ssl", None) if watch and _WATCHABLE else None
    seen = None
    if ssl is not None:
        seen = _WATCHED[int(_ffi.cast("uintptr_t", ssl))] = _Watch()
        _lib.SSL_set_info_callback(ssl, _info_cb)
    try:
        _do_handshake(conn)
        if seen is not None:
            seen.see(ssl)                  # the session it holds at the end
    finally:
        if ssl is not None:
            _lib.SSL_set_info_callback(ssl, _ffi.NULL)
            _WATCHED.pop(int(_ffi.cast("uintptr_t", ssl)), None)
    tc = TLSConn(conn, sock)
    if seen is not None:
        tc.resumed_key, tc.session_keys = seen.resumed, frozenset(seen.keys)
    return tc


def _do_handshake(conn: SSL.Connection) -> None:
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        raise TLSFailure("TLS handshake timed out") from None
    except SSL.SysCallError as exc:
        errors = conn.get_app_data() or []
        raise TLSFailure("; ".join(errors) or f"connection closed during TLS handshake ({exc.args[-1]})") from None
    except SSL.Error as exc:
        errors = conn.get_app_data() or []
        raise TLSFailure("; ".join(errors) or _ssl_reason(exc)) from None


def accept_tls(ctx: SSL.Context, sock: socket.socket, timeout: float | None = 30,
               watch: bool = False) -> TLSConn:
    """TLS server side on a connected socket (also on an active-mode data connection).
    watch: note the sessions resumed and given (TLSConn.resumed_key/session_keys, SessionFamily)."""
    conn = SSL.Connection(ctx, sock)
    conn.set_accept_state()
    return _handshake(conn, sock, timeout, watch)


def connect_tls(ctx: SSL.Context, sock: socket.socket, timeout: float | None = 30,
                session: SSL.Session | None = None, hostname: str | None = None,
                watch: bool = False) -> TLSConn:
    """TLS client side (also on an accepted active-mode data connection: RFC 4217 section 7)."""
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    if hostname and not _is_ip(hostname):
        conn.set_tlsext_host_name(hostname.encode("idna"))
    if session is not None:
        conn.set_session(session)
    return _handshake(conn, sock, timeout, watch)


def secure(ctx: SSL.Context, sock: socket.socket, role: str, timeout: float | None = 30,
           session: SSL.Session | None = None, hostname: str | None = None,
           watch: bool = False) -> TLSConn:
    """The handshake in the given TLS role: "client", or "server" (also "server-with-client-auth",
    whose context demands the certificate). An AT-TLS policy picks the role per connection
    (HandshakeRole); two endpoints in the same role fail the handshake, as they do for real."""
    if role == "client":
        return connect_tls(ctx, sock, timeout, session=session, hostname=hostname, watch=watch)
    return accept_tls(ctx, sock, timeout, watch)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def check_hostname(cert: x509.Certificate, host: str) -> bool:
    """Does the certificate name host (SAN DNS/IP, or CN when there are no SANs)? SECURE_HOSTNAME."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if _is_ip(host):
        ip = ipaddress.ip_address(host)
        return bool(sans) and ip in sans.get_values_for_type(x509.IPAddress)
    names = sans.get_values_for_type(x509.DNSName) if sans else [
        a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    host = host.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host or (name.startswith("*.") and host.split(".", 1)[-1] == name[2:] and "." in host):
            return True
    return False
