"""The data path: move a file over a data connection, plain or TLS, with no Python per byte.

Public API (conn is a connected socket.socket or a lab.ftps.tls.TLSConn)
    send_file(conn, fd, offset=0, hasher=None) -> bytes sent
        plain: os.sendfile (zero copy); TLS: 1 MiB reads, one SSL_write and one send() per MiB
    send_file(conn, fd, skip, text=netascii.ToWire())   # TYPE A: LF -> CRLF, skip = REST in
        wire octets; returns the wire octets sent
    send_stream(conn, read_into) -> bytes sent      # any source with readinto (e.g. a listing)
    recv_file(conn, fd, hasher=None) -> bytes received
        plain without hasher: os.splice socket -> pipe -> file (zero copy) when fd is a file;
        otherwise recv_into a 1 MiB buffer and one write per MiB. fd=None discards the data.
        TLS: TLSConn.fill - one recv() per MiB into OpenSSL's memory BIO, SSL_read straight into
        the 1 MiB buffer (one record per call, no Python object per call), then one write (and
        hash update) per MiB.
        A TLS connection closed without close_notify raises lab.ftps.tls.Truncated.
    recv_file(conn, fd, text=netascii.FromWire())   # TYPE A: CRLF -> LF; returns wire octets
    finish(conn, clean=True)     # end of data: close_notify on TLS, half-close, drain, close
    BUFSIZE
hasher is anything with update(buffer) (hashlib releases the GIL on big buffers).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Callable
from typing import Protocol

from lab.ftps import waiting
from lab.ftps.netascii import FromWire, ToWire
from lab.ftps.tls import TLSConn, set_timeout

BUFSIZE = 1 << 20
_PIPE_SIZE = 1 << 20

Conn = socket.socket | TLSConn      # a data connection, plain or TLS (or Kerberos-protected: gss.GSSConn)


class Hasher(Protocol):
    """hashlib's interface, as far as the data path uses it."""

    def update(self, data: memoryview, /) -> None: ...


def _is_tls(conn: Conn) -> bool:
    """A protected connection: TLS, or RFC 2228 blocks (lab.ftps.gss.GSSConn, which has the
    TLSConn methods used here). Only a bare socket takes the zero-copy paths."""
    return not isinstance(conn, socket.socket)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def send_file(conn: Conn, fd: int, offset: int = 0, hasher: Hasher | None = None,
              text: ToWire | None = None) -> int:
    """Send the file behind fd from offset to its end (TYPE A: offset counts wire octets)."""
    if text is not None:
        return _send_text(conn, fd, offset, hasher, text)
    if not _is_tls(conn) and hasher is None:
        sock: socket.socket = conn
        total = 0
        out = sock.fileno()
        while True:
            try:
                n = os.sendfile(out, fd, offset + total, 1 << 30)
            except BlockingIOError:
                raise TimeoutError("data connection send timed out") from None
            if n == 0:
                return total
            total += n
    os.lseek(fd, offset, os.SEEK_SET)
    return send_stream(conn, lambda view: os.readv(fd, [view]), hasher=hasher)


def _send_text(conn: Conn, fd: int, skip: int, hasher: Hasher | None, text: ToWire) -> int:
    """TYPE A from the start of the file; the first `skip` wire octets are not sent (REST)."""
    _bulk(conn)
    total, offset = 0, 0
    while chunk := os.pread(fd, BUFSIZE // 2, offset):     # CRLF can double it
        offset += len(chunk)
        wire = text.convert(chunk)
        if skip:
            cut = min(skip, len(wire))
            wire, skip = wire[cut:], skip - cut
        if wire:
            if hasher is not None:
                hasher.update(wire)
            _sendall(conn, wire)
            total += len(wire)
    return total


def _sendall(conn: Conn, data: bytes | memoryview) -> None:
    try:
        conn.sendall(data)
    except BlockingIOError:
        raise TimeoutError("data connection send timed out") from None


def _bulk(conn: Conn) -> None:
    if _is_tls(conn):
        conn.bulk()


def send_stream(conn: Conn, read_into: Callable[[memoryview], int], view: memoryview | None = None,
                hasher: Hasher | None = None) -> int:
    """Send everything read_into(buffer) yields until it returns 0."""
    view = view if view is not None else memoryview(bytearray(BUFSIZE))
    _bulk(conn)
    total = 0
    while True:
        n = read_into(view)
        if not n:
            return total
        chunk = view[:n]
        if hasher is not None:
            hasher.update(chunk)
        _sendall(conn, chunk)
        total += n


def _splice_ok(fd: int | None, hasher: Hasher | None) -> bool:
    if fd is None or hasher is not None or not hasattr(os, "splice"):
        return False
    try:
        # splice() into an O_APPEND file fails with EINVAL: such a file takes the copying path
        return stat.S_ISREG(os.fstat(fd).st_mode) and not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
    except OSError:
        return False


def recv_file(conn: Conn, fd: int | None, hasher: Hasher | None = None,
              text: FromWire | None = None) -> int:
    """Receive until the sender ends the data; write to fd (None = discard). Returns the octets
    received (TYPE A: before CRLF -> LF; the hash covers what is written)."""
    if not _is_tls(conn) and text is None and _splice_ok(fd, hasher):
        return _recv_splice(conn, fd)
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    tls = _is_tls(conn)
    _bulk(conn)
    total = 0
    while True:
        filled, eof = conn.fill(buf) if tls else _fill_plain(conn, view)
        total += filled
        chunk = view[:filled]
        if text is not None:
            chunk = memoryview(text.convert(chunk) + (text.flush() if eof else b""))
        if chunk:
            if hasher is not None:
                hasher.update(chunk)
            if fd is not None:
                _write_all(fd, chunk)
        if eof:
            return total


def _fill_plain(sock: socket.socket, view: memoryview) -> tuple[int, bool]:
    """TLSConn.fill for a plain socket: (bytes, ended).

    A quarter MiB or more before touching the file or the hash: few calls per MiB."""
    filled = 0
    while filled < BUFSIZE // 4:
        try:
            n = sock.recv_into(view[filled:])
        except BlockingIOError:
            raise TimeoutError("data connection receive timed out") from None
        if not n:
            return filled, True
        filled += n
    return filled, False


def _recv_splice(sock: socket.socket, fd: int) -> int:
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass
        total = 0
        src = sock.fileno()
        while True:
            try:
                n = os.splice(src, w, _PIPE_SIZE, flags=os.SPLICE_F_MOVE)
            except BlockingIOError:
                raise TimeoutError("data connection receive timed out") from None
            if n == 0:
                return total
            left = n
            while left:
                left -= os.splice(r, fd, left, flags=os.SPLICE_F_MOVE)
            total += n
    finally:
        os.close(r)
        os.close(w)


def finish(conn: Conn, clean: bool = True, linger: float = 5.0) -> None:
    """End a data connection, for sender and receiver alike.

    clean (the data ended normally): send close_notify on TLS (the sender's end of file; the
    receiver's answer), half-close, then read until the peer closes. Reading on is what makes it
    reliable: bytes never read (TLS 1.3 tickets sent during an upload) would turn close() into a
    RST that can destroy the tail of the data, and reading through TLS takes in the new session
    ticket that the next data connection resumes. Ending TLS with close_notify also keeps the
    session resumable (OpenSSL drops sessions of connections freed without one).
    linger=0 (a sender that has nothing more to learn, e.g. the server after RETR): read only
    what has already arrived, so a client that waits for the 226 before closing never stalls.
    not clean: just close (the session is rightly no longer resumable).
    """
    tls = _is_tls(conn)
    sock = conn.sock if tls else conn
    try:
        if clean:
            if tls:
                conn.close_notify()
            sock.shutdown(socket.SHUT_WR)
            _drain(conn, linger)
    except Exception:     # the peer may be gone already (OSError, TLS errors): closing is all that is left
        pass
    sock.close()


def _drain(conn: Conn, seconds: float) -> None:
    """Read until the peer closes (at most seconds); seconds=0: only what has already arrived."""
    sock = conn.sock if _is_tls(conn) else conn
    set_timeout(sock, seconds or 1)
    buf = bytearray(65536)
    while seconds or waiting.select([sock], [], 0)[0]:
        if not conn.recv_into(buf):
            return
