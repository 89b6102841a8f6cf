"""TCP segments over IPv4 and IPv6 as the devices need them: read the few fields, write back
seq/ack/SACK/payload, and name any packet for a drop event.

Most control packets need no change, or only new seq/ack numbers: those are patched in place with
struct (a few microseconds). A packet whose payload changes is rebuilt with scapy, which recomputes
lengths and checksums. IPv6 extension headers (hop-by-hop, routing, destination options) are
skipped; a fragment is never read (not ours to reassemble: conntrack's defragmentation, which
runs before the devices' queues, hands them whole packets).

What a receiving stack looks at before it accepts a segment (the hop limit, the TCP checksum, the
window and window scale, timestamps) is read here too: lab.devkit.ctrlstream decides with it
whether the bytes a device reads are bytes the receiver will accept.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
FLAG_NAMES = "FSRPAUEC"


PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_V6_SKIPPED = {0, 43, 60}        # hop-by-hop, routing, destination options: walk past them
_V6_FRAGMENT = 44


@dataclass
class Segment:
    raw: bytes
    ihl: int              # IP header length in bytes (IPv6: with its extension headers)
    thl: int              # TCP header length in bytes
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    version: int = 4
    ttl: int = 64         # IPv4 TTL / IPv6 hop limit, as the packet arrived
    window: int = 65535   # the TCP window field, unscaled

    @property
    def wscale(self) -> int | None:
        """The window-scale shift this segment offers (SYN and SYN-ACK only carry it)."""
        for kind, off, length in _options(self.raw, self.ihl, self.thl):
            if kind == 3 and length == 3:
                return min(self.raw[off + 2], 14)
        return None

    @property
    def tsval(self) -> int | None:
        """The sender's timestamp (RFC 7323 TSval), when the segment carries one."""
        for kind, off, length in _options(self.raw, self.ihl, self.thl):
            if kind == 8 and length == 10:
                return struct.unpack_from("!I", self.raw, off + 2)[0]
        return None

    def checksum_ok(self) -> bool:
        """Does the TCP checksum verify? A receiver silently discards a segment whose does not."""
        tcp = self.raw[self.ihl:self.ihl + self.thl + len(self.payload)]
        return _checksum(_pseudo(self.raw, self.version, len(tcp)) + tcp) == 0

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)

    def flag_text(self) -> str:
        return "".join(c for i, c in enumerate(FLAG_NAMES) if self.flags & (1 << i))

    def sack_blocks(self) -> list[tuple[int, int]]:
        blocks = []
        for kind, off, length in _options(self.raw, self.ihl, self.thl):
            if kind == 5:
                for j in range(off + 2, off + length - 7, 8):
                    blocks.append(struct.unpack_from("!II", self.raw, j))
        return blocks


def _options(raw: bytes, ihl: int, thl: int):
    i, end = ihl + 20, ihl + thl
    while i < end:
        kind = raw[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            return
        length = raw[i + 1]
        if length < 2 or i + length > end:
            return
        yield kind, i, length
        i += length


def _transport(raw: bytes) -> tuple[int, int, int, str, str] | None:
    """(version, protocol, offset of the transport header, src, dst) of an IP packet; None for
    something that is not IPv4/IPv6, is truncated, or is a fragment."""
    if len(raw) >= 20 and raw[0] >> 4 == 4:
        if struct.unpack_from("!H", raw, 6)[0] & 0x3FFF:          # fragment: not ours to read
            return None
        return 4, raw[9], (raw[0] & 0x0F) * 4, socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20])
    if len(raw) >= 40 and raw[0] >> 4 == 6:
        proto, off = raw[6], 40
        while proto in _V6_SKIPPED:
            if off + 8 > len(raw):
                return None
            proto, off = raw[off], off + (raw[off + 1] + 1) * 8
        if proto == _V6_FRAGMENT:
            return None
        return (6, proto, off, socket.inet_ntop(socket.AF_INET6, raw[8:24]),
                socket.inet_ntop(socket.AF_INET6, raw[24:40]))
    return None


def _ip_end(raw: bytes, version: int) -> int:
    """Where the IP packet ends (its length field; the buffer may carry padding)."""
    if version == 4:
        return min(struct.unpack_from("!H", raw, 2)[0], len(raw))
    return min(40 + struct.unpack_from("!H", raw, 4)[0], len(raw))


def parse(raw: bytes) -> Segment | None:
    """The TCP segment in an IPv4 or IPv6 packet, or None (not TCP, fragment, truncated)."""
    found = _transport(raw)
    if found is None:
        return None
    version, proto, ihl, src, dst = found
    if proto != 6 or len(raw) < ihl + 20:
        return None
    total = _ip_end(raw, version)
    sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", raw, ihl)
    thl = (off_flags >> 12) * 4
    if thl < 20 or ihl + thl > total:
        return None
    return Segment(raw, ihl, thl, src, dst, sport, dport, seq, ack, off_flags & 0x1FF,
                   raw[ihl + thl:total], version, raw[8] if version == 4 else raw[7], window)


def describe(raw: bytes) -> dict:
    """The 5-tuple (and TCP flags) of an IPv4 or IPv6 packet, for a drop event."""
    found = _transport(raw)
    if found is None:
        return {"proto": "not IPv4/IPv6, or a fragment"}
    _, proto, off, src, dst = found
    fields: dict = {"proto": PROTOS.get(proto, str(proto)), "src": src, "dst": dst}
    seg = parse(raw)
    if seg is not None:
        fields.update(sport=seg.sport, dport=seg.dport, flags=seg.flag_text())
    elif proto == 17 and len(raw) >= off + 4:
        fields["sport"], fields["dport"] = struct.unpack_from("!HH", raw, off)
    return fields


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo(raw: bytes, version: int, length: int) -> bytes:
    """The TCP pseudo-header of an IPv4 or IPv6 packet carrying `length` bytes of TCP."""
    if version == 4:
        return raw[12:20] + struct.pack("!BBH", 0, 6, length)
    return raw[8:40] + struct.pack("!IxxxB", length, 6)


def patch(seg: Segment, seq: int, ack: int, sack: list[tuple[int, int]] | None) -> bytes:
    """The same packet with new seq/ack (and SACK edges), TCP checksum recomputed."""
    buf = bytearray(seg.raw[:seg.ihl + seg.thl + len(seg.payload)])
    struct.pack_into("!II", buf, seg.ihl + 4, seq, ack)
    if sack is not None:
        blocks = iter(sack)
        for kind, off, length in _options(seg.raw, seg.ihl, seg.thl):
            if kind == 5:
                for j in range(off + 2, off + length - 7, 8):
                    struct.pack_into("!II", buf, j, *next(blocks))
    struct.pack_into("!H", buf, seg.ihl + 16, 0)
    tcp = bytes(buf[seg.ihl:])
    struct.pack_into("!H", buf, seg.ihl + 16, _checksum(_pseudo(seg.raw, seg.version, len(tcp)) + tcp))
    return bytes(buf)


def rebuild(seg: Segment, seq: int, ack: int, sack: list[tuple[int, int]] | None, payload: bytes,
            flags: int | None = None) -> bytes:
    """The packet with a new payload (and seq/ack/SACK): scapy recomputes lengths and checksums."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    pkt = IP(seg.raw) if seg.version == 4 else IPv6(seg.raw)
    tcp = pkt[TCP]
    tcp.seq, tcp.ack = seq, ack
    if flags is not None:
        tcp.flags = flags
    if sack is not None:
        blocks = iter(sack)
        options = []
        for name, value in tcp.options:
            if name == "SAck":
                value = tuple(v for _ in range(len(value) // 2) for v in next(blocks))
            options.append((name, value))
        tcp.options = options
    tcp.remove_payload()
    if payload:
        tcp.add_payload(Raw(payload))
    if seg.version == 4:
        del pkt.len, pkt.chksum
    else:
        del pkt.plen
    del tcp.chksum
    return bytes(pkt)
