"""The control-channel tracker shared by the ALG and the dynamic filter (pure: no sockets).

A device sees an FTP control connection as TCP segments, not lines. This module turns the
segments of each direction back into the byte stream, in sequence order (retransmissions and
overlaps are parsed once; a segment beyond a gap is reported so the device can drop it and let
TCP resend), and finds in that stream what a device acts on:

- announcements: PORT/EPRT from the client, single-line 227/229 from the server, each only at the
  START of a line (`RETR PORT 1,2,3,4,5,6` or a text line of a multi-line reply never match),
  parsed by lab.ftps.grammar, the one FTP grammar of the project;
- TLS: a line that starts with a TLS record byte (after AUTH TLS -> 234, or from the first byte on
  an implicit port) switches the direction to TLS; TLS records are then skipped by their length
  field, never read as text;
- the end of TLS (CCC): a record boundary followed by a byte that cannot start a TLS record is the
  first plaintext byte, and inspection resumes right there. The kernel's nf_conntrack_ftp only
  looks at segments that start right after a newline it saw, so it misses that first line.

Direction: the client is whoever opened the connection (its SYN without ACK, to a control
port: conntrack's original direction); the server's packets carry the reverse tuple. Port
numbers never decide who is speaking, and a connection whose opening SYN the device did not see
is not tracked at all: nothing on it is read, rewritten or opened.

Holding: when a segment ends inside a line that may still become an announcement ("PO", "227 (10,0"),
`held_start` says where it starts. The ALG leaves those bytes out of the segment it forwards and
sends the whole (rewritten) line with the segment that completes it; see nat.seqadj (the ALG).

Whose bytes: a device must read exactly the bytes the receiver will take, or it acts on a line the
receiver never saw (a neighbour's forged "227 (server,0,22)" opening server:22). So a segment is read
only when (`Receipt`, for what `see()` is given):
- it comes from its sender's side of the router: the interface and neighbour (link-layer address) the
  connection's SYN (client) or SYN-ACK (server) came from; the server's side is learnt only from a
  SYN-ACK that answers the client's SYN;
- the router forwards it (a TTL or hop limit of 1 expires here) and the receiver accepts it: a good TCP
  checksum, the ACK flag on data, an acknowledgement of nothing but bytes the receiver sent (and not
  older than its largest window), a start inside the window the receiver advertised, a timestamp not
  older than the sender's last one (PAWS), and old bytes the same as the first time (a retransmission
  with other bytes is refused: the receiver keeps the first).
Anything else is `refused` with the reason: the device drops it (a forwarded TTL-1 packet is left to
the kernel, which drops it and answers ICMP) and says so. What cannot be told apart from the real
sender: a neighbour on the sender's own link that also forges the sender's link-layer address
(README: Security).

Memory is bounded: a line longer than MAX_LINE is skipped to its end, a held line longer than
HOLD_LIMIT is released unrewritten, the bytes kept for comparing retransmissions are the last RECENT
of each direction, and the connection table has a size limit and idle expiry.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.devkit.tcpseg import Segment
from lab.ftps.grammar import (
    MAX_LINE,
    Announcement,
    GrammarError,
    ReplyReader,
    command_announcement,
    is_tls_record,
    reply_announcement,
)

C2S = "c2s"   # client -> server: commands
S2C = "s2c"   # server -> client: replies
OTHER = {C2S: S2C, S2C: C2S}

HOLD_LIMIT = 512          # an announcement line is short; longer held lines are released as they are
RECENT = 8192             # bytes of each direction kept to compare a retransmission with
PAWS_WINDOW = 1           # ticks a timestamp may be behind the last one and still be taken (Linux's TCP_PAWS_WINDOW)
TLS_TYPES = frozenset((0x14, 0x15, 0x16, 0x17, 0x18))   # change_cipher_spec .. heartbeat
MASK32 = 0xFFFFFFFF

_CANDIDATES = {C2S: (b"PORT ", b"EPRT "), S2C: (b"227 ", b"229 ")}
_WRONG_SIDE = {C2S: re.compile(rb"^22[79][ -]"), S2C: re.compile(rb"^(PORT|EPRT) ", re.I)}


def _may_be_announcement(direction: str, prefix: bytes) -> bool:
    """Could a line starting with these bytes still turn out to be an announcement?"""
    head = prefix[:5].upper()
    return any(p.startswith(head) or head.startswith(p) for p in _CANDIDATES[direction])


@dataclass(frozen=True)
class ConnId:
    client: str
    cport: int
    server: str
    sport: int

    def __str__(self) -> str:
        return f"{self.client}:{self.cport}>{self.server}:{self.sport}"


@dataclass
class Finding:
    """Something the tracker found in one direction's stream.

    kind: "announcement" (ann is set), "held-line" (a line that was held back and is complete or
    released, unchanged), "malformed" / "ignored" / "overlong" (message says why; nothing to act on),
    "tls-start", "tls-end".
    start/end: stream offsets of the line (end exclusive); held: the line was held back across a
    segment boundary, so whoever forwards the stream must send it now.
    """

    kind: str
    start: int
    end: int
    line: bytes = b""
    ann: Announcement | None = None
    held: bool = False
    message: str = ""


@dataclass
class Fed:
    """What one segment was, relative to the stream: offsets [start, end), and what it revealed."""

    start: int
    end: int
    status: str                  # "new" (some bytes not seen before), "old" (all seen), "gap" (beyond a
    #                              a hole), "refused" (not read: `reason`; see the module's docstring)
    findings: list[Finding] = field(default_factory=list)
    reason: str = ""
    forward: bool = False        # refused, but leave the verdict to the kernel (it will not deliver it)


@dataclass(frozen=True)
class Receipt:
    """How a segment reached the device: the side it came from (ingress interface index and the
    neighbour's link-layer address: None where unknown, e.g. in a unit test) and whether the
    receiving stack would take it (see ControlTracker.see)."""

    side: tuple | None = None


class HalfStream:
    """One direction of one control connection."""

    def __init__(self, direction: str, hold: bool = True) -> None:
        self.direction = direction
        self.hold = hold
        self.base: int | None = None       # sequence number of stream offset 0
        self.next = 0                      # offsets below this have been parsed
        self.mode = "plain"                # plain | tls | skip (to the next newline)
        self.line = bytearray()
        self.line_start = 0
        self.held_start: int | None = None
        self._tls_hdr = bytearray()
        self._tls_left = 0
        self._replies = ReplyReader()
        self.fin_at: int | None = None
        self.tls_seen = False
        # what a receiving stack knows of this direction (its sender's SYN, its receiver's ACKs)
        self.side: tuple | None = None       # where this direction's packets come from
        self.wscale: int | None = None       # the shift the sender offered in its SYN
        self.scale = 0                       # the shift in force for the sender's windows
        self.ts_recent: int | None = None    # the sender's newest timestamp
        self.max_window = 0                  # the largest window the sender advertised (scaled)
        self.acked: int | None = None        # the receiver's highest acknowledgement (offset)
        self.right_edge: int | None = None   # acked + the receiver's window: where it stops taking
        self.recent = bytearray()            # the last RECENT bytes of the stream, ending at `next`

    # -- sequence numbers <-> stream offsets ------------------------------------------------
    def start(self, seq: int, syn: bool) -> None:
        """First segment seen: a SYN anchors offset 0 at seq+1; anything else starts mid-stream,
        so the first (partial) line is skipped instead of being misread."""
        self.base = (seq + 1) & MASK32 if syn else seq
        if not syn:
            self.mode = "skip"

    def offset(self, seq: int) -> int:
        """The stream offset of a sequence number, unwrapped around what was parsed last."""
        assert self.base is not None
        here = (self.base + self.next) & MASK32
        diff = ((seq - here + 0x80000000) & MASK32) - 0x80000000
        return self.next + diff

    def seq(self, offset: int) -> int:
        assert self.base is not None
        return (self.base + offset) & MASK32

    # -- feeding ------------------------------------------------------------------------------
    def feed(self, start: int, data: bytes, fin: bool = False) -> Fed:
        end = start + len(data)
        if start > self.next:
            return Fed(start, end, "gap")
        findings: list[Finding] = []
        status = "old"
        if end > self.next:
            status = "new"
            fresh = data[self.next - start:]
            self.recent += fresh
            del self.recent[:-RECENT]
            self._parse(fresh, self.next, findings)
            self.next = end
            self._end_of_segment(end, findings)
        if fin and self.fin_at is None and end == self.next:
            self.fin_at = end
            self._release(end, findings, "connection closed inside a held line")
        return Fed(start, end, status, findings)

    @property
    def holding(self) -> bool:
        return self.held_start is not None

    def differs(self, start: int, data: bytes) -> bool:
        """Do bytes already read (those still kept) differ from `data` at `start`?"""
        kept = self.next - len(self.recent)
        lo, hi = max(start, kept), min(start + len(data), self.next)
        return lo < hi and data[lo - start:hi - start] != self.recent[lo - kept:hi - kept]

    @property
    def sent_end(self) -> int:
        """The offset just past everything this direction sent (its FIN takes one)."""
        return self.next + (1 if self.fin_at is not None else 0)

    def _parse(self, data: bytes, pos: int, out: list[Finding]) -> None:
        i, n = 0, len(data)
        while i < n:
            if self.mode == "skip":
                nl = data.find(b"\n", i)
                if nl < 0:
                    return
                i = nl + 1
                self.mode, self.line_start = "plain", pos + i
                self.line.clear()
            elif self.mode == "tls":
                i = self._skip_tls(data, i, pos, out)
            elif not self.line and data[i] in TLS_TYPES:
                # A text line never starts with 0x14..0x18: this is a TLS record (AUTH TLS -> 234, or
                # an implicit port). From here bytes are only counted, never read or changed.
                self.mode = "tls"
                self.tls_seen = True
                out.append(Finding("tls-start", pos + i, pos + i, bytes(data[i:i + 5]),
                                   message="TLS record" if is_tls_record(data[i:i + 3]) else "TLS-like byte"))
            else:
                nl = data.find(b"\n", i)
                stop = n if nl < 0 else nl + 1
                self.line += data[i:stop]
                i = stop
                if len(self.line) > MAX_LINE:
                    self._overlong(pos + i, out)
                elif nl >= 0:
                    self._line_done(out)
                    self.line_start = pos + i

    def _skip_tls(self, data: bytes, i: int, pos: int, out: list[Finding]) -> int:
        n = len(data)
        while i < n:
            if self._tls_left:
                take = min(self._tls_left, n - i)
                self._tls_left -= take
                i += take
                continue
            if not self._tls_hdr and data[i] not in TLS_TYPES:
                # A record boundary followed by text: TLS was shut down (CCC). Resume on this byte.
                self.mode, self.line_start = "plain", pos + i
                self.line.clear()
                out.append(Finding("tls-end", pos + i, pos + i))
                return i
            take = min(5 - len(self._tls_hdr), n - i)
            self._tls_hdr += data[i:i + take]
            i += take
            if len(self._tls_hdr) == 5:
                self._tls_left = int.from_bytes(self._tls_hdr[3:5], "big")
                self._tls_hdr.clear()
        return i

    def _line_done(self, out: list[Finding]) -> None:
        line = bytes(self.line)
        start, end = self.line_start, self.line_start + len(line)
        held = self.held_start == start
        self.held_start = None
        self.line.clear()
        finding = self._classify(line, start, end)
        if finding is None and held:
            finding = Finding("held-line", start, end, line)
        if finding is not None:
            finding.held = held
            out.append(finding)

    def _classify(self, line: bytes, start: int, end: int) -> Finding | None:
        try:
            if self.direction == C2S:
                if _may_be_announcement(C2S, line):
                    ann = command_announcement(line)
                    if ann:
                        return Finding("announcement", start, end, line, ann)
            else:
                in_reply = self._in_multiline()
                self._feed_reply(line)
                if not in_reply and _may_be_announcement(S2C, line):
                    ann = reply_announcement(line)
                    if ann:
                        return Finding("announcement", start, end, line, ann)
                if in_reply and _may_be_announcement(S2C, line) and len(line) > 4:
                    return Finding("ignored", start, end, line,
                                   message="227/229 text inside a multi-line reply")
        except GrammarError as exc:
            return Finding("malformed", start, end, line, message=str(exc))
        if _WRONG_SIDE[self.direction].match(line):
            side = "client" if self.direction == C2S else "server"
            return Finding("ignored", start, end, line,
                           message=f"{line[:4].decode('ascii', 'replace')} sent by the {side}: not its announcement")
        return None

    def _in_multiline(self) -> bool:
        return self._replies.in_multiline

    def _feed_reply(self, line: bytes) -> None:
        try:
            self._replies.feed(line if line.endswith(b"\n") else line + b"\n")
        except GrammarError:
            self._replies = ReplyReader()    # not a reply: forget the framing, start afresh

    def _overlong(self, pos: int, out: list[Finding]) -> None:
        out.append(Finding("overlong", self.line_start, pos, b"", held=self.held_start is not None,
                           message=f"line longer than {MAX_LINE} bytes skipped"))
        self.held_start = None
        self.line.clear()
        self.mode = "skip"

    def _end_of_segment(self, end: int, out: list[Finding]) -> None:
        """Decide whether the unfinished line (if any) is held back from this segment."""
        if self.mode != "plain" or not self.line:
            self._release(end, out, "")
            return
        if not self.hold:
            return
        if not _may_be_announcement(self.direction, bytes(self.line)) or (
                self.direction == S2C and self._in_multiline()):
            self._release(end, out, "")
        elif len(self.line) > HOLD_LIMIT:
            self._release(end, out, f"announcement line longer than {HOLD_LIMIT} bytes not rewritten",
                          "overlong")
            self.line.clear()
            self.mode = "skip"
        else:
            self.held_start = self.line_start

    def _release(self, end: int, out: list[Finding], why: str, kind: str = "held-line") -> None:
        """Stop holding: the bytes held so far go out unchanged, with the current segment."""
        if self.held_start is None:
            return
        out.append(Finding(kind, self.held_start, end,
                           bytes(self.line[:end - self.held_start]), held=True, message=why))
        self.held_start = None


def _same_side(known: tuple | None, now: tuple | None) -> bool:
    """Did a packet come from the side a direction's packets come from? The interface must be the
    same; the neighbour's link-layer address too, where the kernel handed both (it does not for
    every packet: NFQUEUE gives none when the packet has no link-layer header left)."""
    if known is None or now is None:
        return True
    if known[0] != now[0]:
        return False
    return known[1] is None or now[1] is None or known[1] == now[1]


def _side_text(side: tuple) -> str:
    """A side as words: `interface 3, neighbour 02:00:00:00:00:01`."""
    ifindex, hw = (tuple(side) + (None, None))[:2]
    mac = ":".join(f"{b:02x}" for b in hw[:6]) if isinstance(hw, bytes | bytearray) else hw
    return f"interface {ifindex}" + (f", neighbour {mac}" if mac else "")


class Conn:
    """Both directions of one control connection, plus a slot for the device's own state."""

    def __init__(self, cid: ConnId, hold: bool, now: float) -> None:
        self.id = cid
        self.halves = {C2S: HalfStream(C2S, hold), S2C: HalfStream(S2C, hold)}
        self.last = now
        self.closing_since: float | None = None
        self.device: dict = {}

    @property
    def tls(self) -> bool:
        """Is either direction currently encrypted (the device is blind)?"""
        return any(h.mode == "tls" for h in self.halves.values())


class ControlTracker:
    """The table of control connections a device watches. Bounded: at most max_conns entries,
    idle ones expire after `idle` seconds, closed ones `linger` seconds after FIN/RST."""

    def __init__(self, control_ports: list[int] | frozenset[int], hold: bool = True,
                 max_conns: int = 4096, idle: float = 3600.0, linger: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, ack_numbers: bool = True) -> None:
        self.control_ports = frozenset(control_ports)
        # False where a later hook rewrites the stream (a kernel helper on the same router): then
        # the ACKs a device sees count bytes it never saw, and the checks built on them (an ACK of
        # unsent bytes, the receiver's window) are not made; the others still are.
        self.ack_numbers = ack_numbers
        self.hold = hold
        self.max_conns = max_conns
        self.idle = idle
        self.linger = linger
        self.clock = clock
        self.conns: OrderedDict[ConnId, Conn] = OrderedDict()
        self.aliases: dict[ConnId, ConnId] = {}    # a reply's view of a NATed connection -> its id
        self.evicted = 0

    def segment(self, src: str, sport: int, dst: str, dport: int, seq: int, data: bytes,
                syn: bool = False, fin: bool = False, rst: bool = False, ack: bool = False
                ) -> tuple[Conn, str, Fed] | None:
        """Feed one TCP segment's stream fields, trusting them (what unit tests of the stream
        logic call; devices call see(), which first asks whether the receiver would take it).
        Returns the connection, the direction and what was found, or None for a segment of no
        control connection this tracker saw open.

        The direction comes from who opened the connection: a SYN without ACK to a control port
        makes its sender the client (conntrack's original direction). Port numbers never decide
        it: a client whose control connection comes *from* port 21 or 990 would otherwise have
        the server's replies read as its commands (slipstreaming). A connection whose opening
        SYN was not seen here is never tracked, so nothing on it is ever acted upon.
        """
        return self._segment(src, sport, dst, dport, seq, data, syn, fin, rst, ack, None, None)

    def see(self, seg: Segment, receipt: Receipt | None = None) -> tuple[Conn, str, Fed] | None:
        """segment() for a packet as it reached the device (what the device programs call): read
        only if it came from its sender's side and its receiver will accept it (the module's
        docstring); otherwise the Fed is `refused`, with the reason, and nothing is read."""
        return self._segment(seg.src, seg.sport, seg.dst, seg.dport, seg.seq, seg.payload,
                             seg.syn, seg.fin, seg.rst, seg.has_ack, seg, receipt or Receipt())

    def _segment(self, src: str, sport: int, dst: str, dport: int, seq: int, data: bytes,
                 syn: bool, fin: bool, rst: bool, ack: bool, seg: Segment | None,
                 receipt: Receipt | None) -> tuple[Conn, str, Fed] | None:
        now = self.clock()
        found = self._find(src, sport, dst, dport)
        opening = syn and not ack
        if opening and (found is None or found[1] == C2S) and dport in self.control_ports:
            if seg is not None and self._undeliverable(seg):
                return None       # the server never gets this SYN: no connection to track
            # A new connection, or a new one on a reused tuple (another initial sequence number).
            old = found[0] if found else None
            if old is None or old.halves[C2S].base != (seq + 1) & MASK32:
                found = self._new(ConnId(src, sport, dst, dport), now), C2S
                if receipt is not None:
                    found[0].halves[C2S].side = receipt.side
        if found is None:
            return None
        conn, direction = found
        half = conn.halves[direction]
        if seg is not None and receipt is not None:
            why, forward = self._refusal(conn, direction, seg, receipt)
            if why:
                return conn, direction, Fed(0, 0, "refused", reason=why, forward=forward)
        self.conns.move_to_end(conn.id)
        conn.last = now
        if half.base is None:
            half.start(seq, syn)
        offset = half.offset(seq) + (1 if syn else 0)
        if seg is not None:
            self._learn(conn, direction, seg, offset)
        fed = half.feed(offset, data, fin)
        if (fin or rst) and conn.closing_since is None:
            conn.closing_since = now
        return conn, direction, fed

    # -- would the receiver take it? -----------------------------------------------------------
    @staticmethod
    def _undeliverable(seg: Segment) -> str:
        """Why this router will not deliver the segment at all (empty: it will)."""
        if seg.ttl <= 1:
            return (f"{'hop limit' if seg.version == 6 else 'TTL'} {seg.ttl}: it expires at this router "
                    "and never reaches its receiver")
        if not seg.checksum_ok():
            return "bad TCP checksum: the receiver discards it"
        return ""

    def ack_offset(self, conn: Conn, direction: str, ack: int) -> int:
        """The offset in the other direction's stream that `ack`, sent in `direction`,
        acknowledges. A device that moves the other direction's bytes (the ALG) overrides it."""
        return conn.halves[OTHER[direction]].offset(ack)

    def _refusal(self, conn: Conn, direction: str, seg: Segment, receipt: Receipt) -> tuple[str, bool]:
        """Why the segment must not be read, and whether to leave its fate to the kernel."""
        half = conn.halves[direction]
        who = "client" if direction == C2S else "server"
        if direction == S2C and half.side is None and half.base is None:
            client_isn = conn.halves[C2S].base
            if not (seg.syn and seg.has_ack and client_isn is not None and seg.ack == client_isn):
                return "the server's first segment is not a SYN-ACK answering the client's SYN", False
            half.side = receipt.side
        if not _same_side(half.side, receipt.side):
            return (f"claims to come from the {who} but arrived from another side of the router "
                    f"({_side_text(receipt.side)}, the {who}'s is {_side_text(half.side)})"), False
        why = self._undeliverable(seg)
        if why:
            return why, seg.ttl <= 1
        if seg.rst:
            return "", False
        if seg.payload and not seg.has_ack and not seg.syn:
            return "data without the ACK flag: the receiver discards it", False
        if half.base is None:
            return "", False
        start = half.offset(seg.seq) + (1 if seg.syn else 0)
        why = self._numbers_refusal(conn, direction, seg, start) if self.ack_numbers else ""
        if why:
            return why, False
        ts = seg.tsval
        if ts is not None and half.ts_recent is not None and \
                ((half.ts_recent - ts) & MASK32) < 0x80000000 and (half.ts_recent - ts) & MASK32 > PAWS_WINDOW:
            return "its timestamp is older than the sender's last (PAWS): the receiver discards it", False
        if seg.payload and start < half.next and half.differs(start, seg.payload):
            return ("retransmits bytes already read with other bytes: the receiver keeps the first ones, "
                    "this one is not read"), False
        return "", False

    def _numbers_refusal(self, conn: Conn, direction: str, seg: Segment, start: int) -> str:
        """What the receiver's ACKs and window say of a segment starting at `start`."""
        half, other = conn.halves[direction], conn.halves[OTHER[direction]]
        if seg.payload and half.right_edge is not None and start >= half.right_edge:
            return (f"starts {start - half.right_edge + 1} bytes beyond the window the receiver "
                    "advertised: the receiver discards it")
        if seg.has_ack and other.base is not None:
            acked = self.ack_offset(conn, direction, seg.ack)
            if acked > other.sent_end:
                return "acknowledges bytes the other side never sent: the receiver discards it"
            if other.acked is not None and acked < other.acked - max(half.max_window, 1):
                return "acknowledges bytes older than the sender's largest window: the receiver discards it"
        return ""

    def _learn(self, conn: Conn, direction: str, seg: Segment, offset: int) -> None:
        """What an accepted segment tells about its connection's windows and timestamps."""
        half, other = conn.halves[direction], conn.halves[OTHER[direction]]
        if seg.syn:
            half.wscale = seg.wscale
            if direction == S2C and half.wscale is not None and other.wscale is not None:
                half.scale, other.scale = half.wscale, other.wscale
        window = seg.window << (0 if seg.syn else half.scale)
        half.max_window = max(half.max_window, window)
        ts = seg.tsval
        # as Linux: only a segment at or before the read position moves ts_recent on (one beyond a
        # hole, or a later one overtaken by an earlier, must not make the earlier look old)
        if ts is not None and offset <= half.next and \
                (half.ts_recent is None or ((ts - half.ts_recent) & MASK32) < 0x80000000):
            half.ts_recent = ts
        if seg.has_ack and other.base is not None:
            acked = self.ack_offset(conn, direction, seg.ack)
            if other.acked is None or acked > other.acked:
                other.acked = acked
            edge = acked + window
            if other.right_edge is None or edge > other.right_edge:
                other.right_edge = edge

    def _find(self, src: str, sport: int, dst: str, dport: int) -> tuple[Conn, str] | None:
        """The known connection a packet belongs to and its direction: the client's packets
        carry the opening SYN's tuple, the server's its reverse (or a NATed view of it)."""
        conn = self.conns.get(ConnId(src, sport, dst, dport))
        if conn is not None:
            return conn, C2S
        reply = ConnId(dst, dport, src, sport)
        conn = self.conns.get(self.aliases.get(reply, reply))
        if conn is None:
            conn = self._pair(reply)
        return (conn, S2C) if conn is not None else None

    def _pair(self, cid: ConnId) -> Conn | None:
        """The connection a server's packet belongs to when a NAT on this router translates one
        side: devices divert before conntrack, so a reply still carries the translated address
        (client-side source NAT: the NAT's outside address; server-side DNAT: the server's own).
        The ports and the untranslated side identify the connection; only a connection whose
        server has not answered yet is paired, so an answer is paired once, with its SYN's."""
        found = [c for c in self.conns.values()
                 if c.id.cport == cid.cport and c.id.sport == cid.sport
                 and (c.id.client == cid.client or c.id.server == cid.server)
                 and c.halves[S2C].base is None]
        if not found:
            return None
        conn = found[-1]
        self.aliases[cid] = conn.id
        return conn

    def _new(self, cid: ConnId, now: float) -> Conn:
        self.expire(now)
        while len(self.conns) >= self.max_conns:
            self.conns.popitem(last=False)   # least recently used
            self.evicted += 1
        conn = Conn(cid, self.hold, now)
        self.conns[cid] = conn
        return conn

    def expire(self, now: float | None = None) -> list[Conn]:
        now = self.clock() if now is None else now
        gone = [c for c in self.conns.values()
                if now - c.last > self.idle
                or (c.closing_since is not None and now - c.closing_since > self.linger)]
        for c in gone:
            del self.conns[c.id]
        if gone:
            self.aliases = {a: cid for a, cid in self.aliases.items() if cid in self.conns}
        return gone

    def between(self, a: str, b: str) -> list[Conn]:
        """Control connections between two hosts (either one the client)."""
        return [c for c in self.conns.values() if {c.id.client, c.id.server} == {a, b}]
