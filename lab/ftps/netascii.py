"""TYPE A (RFC 959 3.1.1.1): NVT-ASCII on the wire, where every line ends in CRLF; local files
are Unix text, where lines end in LF.

    ToWire()    convert(chunk) -> bytes   a bare LF becomes CRLF (a CRLF in the file stays one)
    FromWire()  convert(chunk) -> bytes   CRLF becomes LF; a lone CR stays
                flush() -> bytes          what a chunk boundary held back (a final CR)
    wire_size(fd) -> int                  octets a whole file takes as TYPE A (SIZE, RFC 3659 4)

Both converters stream: a CR at the end of one chunk is paired with an LF at the start of the
next. The work is bytes.replace (C), never a Python loop over bytes. Only line ends change: the
lab has no EBCDIC, so the character set is passed through as it is (the z/OS translation tables
are out of scope).
"""

from __future__ import annotations

import os

CHUNK = 1 << 20


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ToWire:
    """File bytes -> TYPE A wire bytes."""

    def __init__(self) -> None:
        self._after_cr = False          # the previous chunk ended in CR

    def convert(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._after_cr and chunk[:1] == b"\n":
            out = b"\n" + _crlf(chunk[1:])      # the CR already went out with the last chunk
        else:
            out = _crlf(chunk)
        self._after_cr = chunk[-1:] == b"\r"
        return out


class FromWire:
    """TYPE A wire bytes -> file bytes."""

    def __init__(self) -> None:
        self._held = b""                # a CR that may be the first half of a CRLF

    def convert(self, chunk: bytes) -> bytes:
        data = self._held + bytes(chunk)
        self._held = b""
        if data[-1:] == b"\r":
            data, self._held = data[:-1], b"\r"
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held


def wire_size(fd: int) -> int:
    """The number of octets the file behind fd is as TYPE A (read from the start, fd's offset kept)."""
    conv, total, offset = ToWire(), 0, 0
    while chunk := os.pread(fd, CHUNK, offset):
        total += len(conv.convert(chunk))
        offset += len(chunk)
    return total
