"""The FTP wire grammar, in one place: commands, replies, and the address announcements
(PORT, EPRT, 227, 229) that NAT devices and firewalls look for.

RFC 959 (commands, replies, PORT/PASV), RFC 1123 4.1.2.6 (scan a 227 for the first digit),
RFC 2428 (EPRT/EPSV). Pure functions and small incremental readers: the server, the client,
the ALG and the dynamic filter all parse the control channel with this module.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LINE = 4096          # longest control line we accept (RFC 959 sets no limit; servers do)
MAX_REPLY = 8 << 20      # longest multi-line reply a reader keeps (a STAT of a big directory fits)
CRLF = b"\r\n"


class GrammarError(ValueError):
    """A line that does not follow the grammar (the message says what is wrong)."""


# -- commands ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    verb: str        # upper case, e.g. "RETR"
    arg: str         # the rest of the line after one space ("" when none)

    def __str__(self) -> str:
        return f"{self.verb} {self.arg}" if self.arg else self.verb


def parse_command(line: bytes | str) -> Command:
    """Split one control line (CRLF or LF optional) into verb and argument."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "surrogateescape")
    line = line.rstrip("\r\n")
    # Telnet IP/DM sequences (RFC 959 ABOR) may precede the verb; drop non-printables there.
    # (bytes arrive here as surrogate escapes: IAC IP = \udcff\udcf4, IAC DM = \udcff\udcf2)
    line = line.lstrip("\xff\xf4\xf2\x00\udcff\udcf4\udcf2")  # noqa: B005 - a set of bytes
    verb, _, arg = line.partition(" ")
    if not verb or not verb.isascii() or not verb.isalpha() or len(verb) > 4:
        raise GrammarError(f"not an FTP command: {line[:40]!r}")
    return Command(verb.upper(), arg)


def format_command(verb: str, arg: str = "") -> bytes:
    """One command line. CR, LF or NUL inside it would end it early or smuggle a second command
    (`RETR a\r\nDELE b`): GrammarError."""
    line = f"{verb} {arg}" if arg else verb
    if any(c in line for c in "\r\n\x00"):
        raise GrammarError(f"CR, LF or NUL inside a command: {printable(line[:40])}")
    return line.encode("utf-8", "surrogateescape") + CRLF


# Characters that some reader takes for the end of a line or that rewrite a terminal: C0 and C1
# controls (CR, LF, NUL, VT, FF, FS/GS/RS, NEL, ESC, ...), DEL, LINE/PARAGRAPH SEPARATOR, and raw
# bytes 0x80-0x9f carried as surrogate escapes (a Latin-1 reader sees C1 controls there). TAB stays.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\udc80-\udc9f]")
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\x00": "\\0"}


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _ESCAPES:
        return _ESCAPES[c]
    n = ord(c)
    return f"\\x{n & 0xFF:02x}" if n < 0x100 or 0xDC80 <= n <= 0xDC9F else f"\\u{n:04x}"


def printable(text: str) -> str:
    """text with every line-breaking or control character shown as an escape (`\\r`, `\\x0b`):
    client-chosen text in a reply or a log line can then never start a line of its own."""
    return _UNPRINTABLE.sub(_escape, text)


# The first word of a command line, as a server would read it however it is spelt: after Telnet
# IP/Synch, NULs and blanks, up to the next blank (any Unicode space, tab, VT, ...).
_FIRST_WORD = re.compile(r"[\s\x00\xff\xf4\xf2\udcff\udcf4\udcf2]*([^\s\x00]*)(.*)", re.S)
_SECRET_VERBS = ("PASS", "ACCT", "ADAT")     # ADAT carries a Kerberos ticket and authenticator


def loggable(line: str) -> str:
    """A line as it may be logged or shown: the argument of PASS (and ACCT, ADAT) replaced by ****
    whatever the case or spacing (` PASS x`, `pass\tx`), made printable, and valid UTF-8.
    RFC 2577 and the README: a password is never logged. Harmless on any other line (a reply
    starts with its code), so a log applies it to every line."""
    m = _FIRST_WORD.match(line.rstrip("\r\n"))
    word = m.group(1) if m else ""
    shown = f"{printable(word)} ****" if word.upper() in _SECRET_VERBS else printable(line.rstrip("\r\n"))
    try:            # raw bytes that are not UTF-8 (surrogate escapes) as \xHH: valid text for any log
        return shown.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return shown.encode("utf-8", "backslashreplace").decode("utf-8")


# -- replies ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]   # text of each line without the code prefix

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def kind(self) -> int:
        """First digit: 1 preliminary, 2 completion, 3 intermediate, 4 transient, 5 permanent."""
        return self.code // 100

    def __str__(self) -> str:
        return format_reply(self.code, list(self.lines)).decode("utf-8", "replace").rstrip()


def format_reply(code: int, text: str | list[str], dashed: bool = False) -> bytes:
    """One reply; several lines become `code-first` ... `code last` (RFC 959 4.2).

    A str is one line; a list is the lines. Whatever the text holds (an echoed path, a file name),
    every line on the wire starts with the code or, inside a multi-line reply, with a space
    (`dashed`: with `code-`): control characters are escaped (printable), so no CR, LF or NUL
    can start a line that a client or a device would read as a reply or a command of its own."""
    lines = [printable(line) for line in ([text] if isinstance(text, str) else text)] or [""]
    out = []
    for i, line in enumerate(lines):
        if i == len(lines) - 1:
            out.append(f"{code} {line}")
        elif i == 0 or dashed:
            out.append(f"{code}-{line}")
        else:
            # a middle line is indented: never taken for the end (`123 ...`), a reply or a command
            out.append(line if line.startswith(" ") else f" {line}")
    return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")


# 1yz-5yz (RFC 959), and 631-633: RFC 2228's protected replies (a reply wrapped by the security mechanism)
_REPLY_START = re.compile(r"^([1-5]\d\d|63[1-3])([ -])(.*)$", re.S | re.ASCII)


class ReplyReader:
    """Incremental reply parser: feed bytes, take complete replies (multi-line aware)."""

    def __init__(self) -> None:
        self._buf = b""
        self._code: int | None = None
        self._lines: list[str] = []
        self._size = 0           # bytes of the multi-line reply read so far (MAX_REPLY)

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        replies = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    raise GrammarError("reply line too long")
                return replies
            raw, self._buf = self._buf[:nl], self._buf[nl + 1:]
            line = raw.rstrip(b"\r").decode("utf-8", "surrogateescape")
            reply = self._line(line)
            if reply:
                replies.append(reply)
            elif self._size > MAX_REPLY:
                self._code, self._lines, self._size = None, [], 0
                raise GrammarError(f"multi-line reply longer than {MAX_REPLY} bytes")

    @property
    def in_multiline(self) -> bool:
        """Inside a multi-line reply (its text lines are not replies of their own)."""
        return self._code is not None

    def _line(self, line: str) -> Reply | None:
        m = _REPLY_START.match(line)
        if self._code is None:
            if not m:
                raise GrammarError(f"not an FTP reply: {line[:40]!r}")
            code, sep, text = int(m.group(1)), m.group(2), m.group(3)
            if sep == " ":
                return Reply(code, (text,))
            self._code, self._lines, self._size = code, [text], len(line)
            return None
        if m and int(m.group(1)) == self._code and m.group(2) == " ":
            reply = Reply(self._code, (*self._lines, m.group(3)))
            self._code, self._lines, self._size = None, [], 0
            return reply
        self._lines.append(line[1:] if line.startswith(" ") else line)
        self._size += len(line) + 2
        return None


class LineReader:
    """Incremental command-line splitter (CRLF or bare LF), with a length limit.

    feed() returns the complete lines in order. A line longer than `limit` is reported once, as
    TOO_LONG in its place, as soon as it passes the limit, and the rest of it (up to its newline)
    is dropped: the reader never holds more than `limit` bytes of an unfinished line, and each
    byte is scanned once (a peer sending megabytes without a newline costs nothing more)."""

    TOO_LONG = b""        # never a real line: every real one ends with \n

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._skipping = False
        self.limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            part = data[start:] if nl < 0 else data[start:nl + 1]
            if self._skipping:
                self._skipping = nl < 0
            elif len(self._buf) + len(part) > self.limit:
                self._buf.clear()
                self._skipping = nl < 0
                lines.append(self.TOO_LONG)
            elif nl < 0:
                self._buf += part
            else:
                lines.append(bytes(self._buf + part))
                self._buf.clear()
            if nl < 0:
                return lines
            start = nl + 1

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)


# -- host/port announcements -----------------------------------------------------------

@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# Six decimal numbers of at most three digits; _six_to_hostport checks that each is a byte.
_SIX = re.compile(r"(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})", re.ASCII)


def is_decimal(text: str) -> bool:
    """ASCII digits only: FTP numbers are ASCII; str.isdigit() alone also takes '²' and '٣'."""
    return text.isascii() and text.isdigit()


MAX_OFFSET = (1 << 63) - 1     # the largest file offset (off_t) the kernel takes


def parse_decimal(text: str, high: int = MAX_OFFSET) -> int:
    """A decimal number 0..high (ASCII digits only, no sign), or GrammarError saying what is wrong.
    The digits are counted before int() reads them: a 5000-digit argument is refused, not parsed."""
    text = text.strip()
    if not is_decimal(text):
        raise GrammarError(f"{printable(text[:20])!r} is not a decimal number")
    if len(text.lstrip("0")) > len(str(high)) or int(text) > high:
        raise GrammarError(f"{text[:20]}{'...' if len(text) > 20 else ''} is out of range (0..{high})")
    return int(text)


def _check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise GrammarError(f"port {port} out of range")
    return port


def _six_to_hostport(numbers: tuple[str, ...]) -> HostPort:
    values = [int(n) for n in numbers]
    if any(v > 255 for v in values):
        raise GrammarError(f"number above 255 in {','.join(numbers)}")
    return HostPort(".".join(str(v) for v in values[:4]), _check_port(values[4] * 256 + values[5]))


def parse_port_args(arg: str) -> HostPort:
    """`h1,h2,h3,h4,p1,p2` (the argument of PORT)."""
    m = _SIX.fullmatch(arg.strip())
    if not m:
        raise GrammarError(f"PORT needs h1,h2,h3,h4,p1,p2, got {arg[:40]!r}")
    return _six_to_hostport(m.groups())


def format_port_args(hp: HostPort) -> str:
    a = hp.host.split(".")
    return ",".join([*a, str(hp.port >> 8), str(hp.port & 0xFF)])


def parse_eprt_args(arg: str) -> HostPort:
    """`<d>1<d>a.b.c.d<d>port<d>` or `<d>2<d>ipv6<d>port<d>` (RFC 2428 section 2)."""
    arg = arg.strip()
    if len(arg) < 7:
        raise GrammarError("EPRT argument too short")
    d = arg[0]
    if not (33 <= ord(d) <= 126) or d.isdigit():
        raise GrammarError("EPRT delimiter must be a printable non-digit")
    parts = arg.split(d)
    if len(parts) != 5 or parts[0] or parts[4]:
        raise GrammarError(f"EPRT needs {d}af{d}addr{d}port{d}, got {arg[:40]!r}")
    af, addr, port = parts[1:4]
    if af not in ("1", "2"):
        raise GrammarError(f"EPRT network protocol {af!r} not supported")
    try:
        ip = ipaddress.IPv4Address(addr) if af == "1" else ipaddress.IPv6Address(addr)
    except ValueError as exc:
        raise GrammarError(f"EPRT address {addr[:40]!r}: {exc}") from None
    if not is_decimal(port) or len(port) > 5:
        raise GrammarError(f"EPRT port {port[:10]!r} is not a number")
    return HostPort(str(ip), _check_port(int(port)))


def format_eprt_args(hp: HostPort) -> str:
    af = 2 if ":" in hp.host else 1
    return f"|{af}|{hp.host}|{hp.port}|"


def _find_227(text: str, pos: int = 0) -> tuple[HostPort, tuple[int, int]]:
    """The first six comma-separated numbers from pos on (RFC 1123), and where they stand."""
    m = _SIX.search(text, pos)
    if not m:
        raise GrammarError(f"227 reply without h1,h2,h3,h4,p1,p2: {text[:60]!r}")
    return _six_to_hostport(m.groups()), m.span()


def parse_227(text: str) -> HostPort:
    """The address in a 227 text: the first six comma-separated numbers (RFC 1123)."""
    return _find_227(text)[0]


def format_227(hp: HostPort) -> str:
    return f"Entering Passive Mode ({format_port_args(hp)})"


_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)", re.ASCII)


def _find_229(text: str, pos: int = 0) -> tuple[int, tuple[int, int]]:
    """The port of the first `(|||port|)` from pos on, and where the part inside the brackets stands."""
    m = _EPSV.search(text, pos)
    if not m:
        raise GrammarError(f"229 reply without (|||port|): {text[:60]!r}")
    start, end = m.span()
    return _check_port(int(m.group(2))), (start + 1, end - 1)


def parse_229(text: str) -> int:
    """The port in a 229 text: `(|||port|)` with any repeated delimiter (RFC 2428 section 3)."""
    return _find_229(text)[0]


def format_229(port: int) -> str:
    return f"Entering Extended Passive Mode (|||{port}|)"


# -- announcements as the devices see them ----------------------------------------------

@dataclass(frozen=True)
class Announcement:
    """An address or port announced on the control channel, located in its line.

    kind is "PORT", "EPRT" (client -> server) or "227", "229" (server -> client).
    span is the byte range of the rewritable part inside the line (the numbers, or the
    EPRT/229 argument between and including the delimiters), so a device can replace it.
    host is None for 229 (it carries only a port).
    """

    kind: str
    host: str | None
    port: int
    span: tuple[int, int]


_CMD_ANN = re.compile(rb"^(PORT|EPRT) +([^\r\n]*)", re.I)
_227_ANN = re.compile(rb"^227 ")
_229_ANN = re.compile(rb"^229 ")


def command_announcement(line: bytes) -> Announcement | None:
    """PORT/EPRT in one client line (the whole line, as sent). None when it is not one.

    Raises GrammarError when the line is a PORT/EPRT whose argument does not parse.
    """
    m = _CMD_ANN.match(line)
    if not m:
        return None
    verb = m.group(1).upper().decode()
    stripped = m.group(2).decode("ascii", "replace").rstrip()
    # Only ASCII parses below, so characters and bytes count alike in the span.
    start = m.start(2)
    end = start + len(stripped)
    hp = parse_port_args(stripped) if verb == "PORT" else parse_eprt_args(stripped)
    return Announcement(verb, hp.host, hp.port, (start, end))


def reply_announcement(line: bytes) -> Announcement | None:
    """227/229 in one server line (single-line form `227 `/`229 `, as the kernel helper)."""
    text = line.decode("ascii", "replace")
    if _227_ANN.match(line):
        hp, span = _find_227(text, 4)
        return Announcement("227", hp.host, hp.port, span)
    if _229_ANN.match(line):
        port, span = _find_229(text, 4)
        return Announcement("229", None, port, span)
    return None


def is_tls_record(data: bytes) -> bool:
    """Does this look like the start of a TLS record (handshake, alert, CCS, application)?"""
    return len(data) >= 3 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 0x03 and data[2] <= 0x04
