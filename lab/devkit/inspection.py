"""The models of the devices that read the control channel (what prediction asks them).

An inspecting device (the scapy ALG, the kernel's FTP helper, the dynamic filter) can act on a
data connection's announcement only when the announcement crosses it in cleartext. Which
security modes leave it readable is a fact of FTP, the same for every inspector; what differs
is each inspector's own blind spot (the kernel helper after CCC) and what it does with a line it
read (each device module says so in its Inspector):

- whom it believes: every inspector acts only on a whole line that names its sender's own address
  (`names_sender`); a line naming anyone else opens and rewrites nothing;
- `rewrites`: a NAT's inspector rewrites the address to the one the peer knows the sender by;
  "outside" (the scapy ALG: its outside interface's address, and only for a sender on the inside)
  or "translated" (nf_nat_ftp: the address conntrack translated the sender to, either side);
  None for a filter, which only reads;
- `related`: the data connection it expects is RELATED in conntrack (the kernel helper's
  expectation) rather than translated by a rule of its own (the scapy ALG's DNAT mapping).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.ftps.modes import CCC_MODES, KERBEROS_MODES, SECURITY_MODES

IMPLICIT = ("implicit", "implicit-zos")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def readable(security: str) -> tuple[bool, str]:
    """Does the data connection's announcement cross the control channel in cleartext?
    (yes/no, and why not)."""
    if security not in SECURITY_MODES:
        raise ValueError(f"unknown security mode {security!r}")
    if security == "plain" or security in CCC_MODES:
        return True, ""
    if security in IMPLICIT:
        return False, "the control channel is encrypted from the first byte (implicit TLS, no CCC possible)"
    if security in KERBEROS_MODES:
        return False, "the announcement is inside a Kerberos-protected reply (RFC 2228 MIC/631)"
    return False, "the announcement is inside TLS"


def names_sender(host: Address | None, *sender: Address) -> bool:
    """Does an announcement naming `host` (None: a 229 reply, which names no address) name its
    sender, known to this device by any of `sender`?"""
    return host is None or host in sender


@dataclass(frozen=True)
class Inspector:
    """The model of a device that reads the cleartext control channel.

    misses_first_line_after_ccc: it re-synchronises only on a line start it saw (nf_conntrack_ftp),
    so after CCC it misses the first cleartext line; that matters when the client's first command
    after CCC is the data command itself (first_after_ccc == "data").
    """

    name: str
    misses_first_line_after_ccc: bool = False
    rewrites: str | None = None        # None | "outside" | "translated" (see the module's docstring)
    related: bool = False

    def reads(self, security: str, first_after_ccc: str = "data") -> tuple[bool, str]:
        """Can this device read the data-connection setup? (yes/no, and why not)."""
        ok, why = readable(security)
        # Only after TLS: a Kerberos control channel is lines (MIC ... CRLF), so a helper that
        # tracks line starts never loses them, and sees the first clear line after CCC.
        if ok and security == "tls-ccc" and self.misses_first_line_after_ccc and first_after_ccc == "data":
            return False, (f"{self.name} misses the first cleartext line after CCC, and the client's "
                           "first command after CCC is the data command")
        return ok, why


@dataclass(frozen=True)
class Blind:
    """The model of a device that never reads the control channel (a NAT without ALG)."""

    name: str = "the NAT without ALG"
    rewrites: str | None = None
    related: bool = False

    def reads(self, security: str, first_after_ccc: str = "data") -> tuple[bool, str]:
        return False, "the device does not inspect the control channel"


# -- replaying a control connection to a device's runtime -------------------------------------------
#
# Where a device decides in Python (the scapy ALG, the dynamic filter), its model for prediction is
# its runtime itself: the walk builds the device's own object (with a fake clock and an in-memory
# kernel) and feeds it the control connection as real TCP segments, the bytes it would read.

def segment(src: str, sport: int, dst: str, dport: int, seq: int, ack: int, flags: int,
            payload: bytes = b"", window: int = 64240, ttl: int = 64):
    """A real IPv4 or IPv6 TCP segment (checksums right), parsed as the devices read one."""
    import socket
    import struct

    from lab.devkit import tcpseg

    six = ":" in src
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                                window, 0, 0) + payload)
    if six:
        ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, ttl) + socket.inet_pton(socket.AF_INET6, src) \
            + socket.inet_pton(socket.AF_INET6, dst)
    else:
        head = bytearray(struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0, ttl, 6, 0)
                         + socket.inet_aton(src) + socket.inet_aton(dst))
        struct.pack_into("!H", head, 10, tcpseg._checksum(bytes(head)))
        ip = bytes(head)
    struct.pack_into("!H", tcp, 16, tcpseg._checksum(tcpseg._pseudo(ip, 6 if six else 4, len(tcp)) + bytes(tcp)))
    seg = tcpseg.parse(ip + bytes(tcp))
    assert seg is not None
    return seg


class Replay:
    """One control connection, fed to a device's runtime as the segments that cross it.

    `feed(segment) -> segment | None` is the device: what it forwards (its rewrite, or the segment
    itself) or None when it drops it. `forward` is (src, sport, dst, dport) of the client's packets
    as they reach the device, `back` the server's (a NAT on the same router shows one side under
    another address). The handshake is fed at once; `line` sends one line either way and returns
    the bytes as the device forwards them. Each side acknowledges what it received, as forwarded."""

    ISN = {"c2s": 1000, "s2c": 5000}

    def __init__(self, feed, forward: tuple, back: tuple | None = None) -> None:
        from lab.devkit.tcpseg import ACK, SYN

        self.feed = feed
        src, sport, dst, dport = (str(forward[0]), forward[1], str(forward[2]), forward[3])
        self.ends = {"c2s": (src, sport, dst, dport),
                     "s2c": tuple(str(x) if i % 2 == 0 else x for i, x in enumerate(back))
                     if back is not None else (dst, dport, src, sport)}
        self.next = {d: isn + 1 for d, isn in self.ISN.items()}
        self.received = {"c2s": 0, "s2c": 0}          # bytes delivered in each direction, as forwarded
        self.open = all([
            self._send("c2s", self.ISN["c2s"], 0, SYN),
            self._send("s2c", self.ISN["s2c"], self.ISN["c2s"] + 1, SYN | ACK),
            self._send("c2s", self.next["c2s"], self.next["s2c"], ACK)])

    def _send(self, direction: str, seq: int, ack: int, flags: int, payload: bytes = b""):
        src, sport, dst, dport = self.ends[direction]
        return self.feed(segment(src, sport, dst, dport, seq, ack, flags, payload))

    def line(self, c2s: bool, data: bytes) -> bytes | None:
        """Send `data` client -> server (c2s) or back: the bytes as the device forwards them (None:
        dropped)."""
        from lab.devkit.tcpseg import ACK, PSH

        way, other = ("c2s", "s2c") if c2s else ("s2c", "c2s")
        got = self._send(way, self.next[way], self.ISN[other] + 1 + self.received[other], PSH | ACK, data)
        self.next[way] += len(data)
        if got is None:
            return None
        self.received[way] += len(got.payload)
        # the receiver acknowledges it (what lets the next line be read in order)
        self._send(other, self.next[other], self.ISN[way] + 1 + self.received[way], ACK)
        return got.payload


def announcement_line(kind: str, host, port: int) -> bytes:
    """The whole line an end sends to announce host:port (`kind` PORT, EPRT, 227 or 229)."""
    from lab.ftps.grammar import HostPort, format_227, format_229, format_eprt_args, format_port_args

    if kind == "PORT":
        return f"PORT {format_port_args(HostPort(str(host), port))}\r\n".encode()
    if kind == "EPRT":
        return f"EPRT {format_eprt_args(HostPort(str(host), port))}\r\n".encode()
    if kind == "227":
        return f"227 {format_227(HostPort(str(host), port))}\r\n".encode()
    return f"229 {format_229(port)}\r\n".encode()


def read_announcement(line: bytes):
    """(host or None, port) that a line announces, as a device would parse it; None: none."""
    from lab.ftps.grammar import command_announcement, reply_announcement

    ann = command_announcement(line) or reply_announcement(line)
    return None if ann is None else (ann.host, ann.port)


class Clock:
    """A device runtime's clock when a model drives it: time moves only when told."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def recorder(device: str, program: str | None = None):
    """An EventWriter that keeps its events in memory (`.log`) instead of writing a file."""
    from lab.devkit.events import EventWriter

    class Recorder(EventWriter):
        def __init__(self) -> None:
            super().__init__(None, device, program)
            self.log: list[dict] = []

        def emit(self, type: str, **fields: object) -> dict:
            event = super().emit(type, **fields)
            self.log.append(event)
            return event

    return Recorder()
