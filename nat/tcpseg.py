"""IPv4/TCP segments as the devices need them: read the few fields, write back seq/ack/SACK/payload.

Most control packets need no change, or only new seq/ack numbers: those are patched in place with
struct (a few microseconds). A packet whose payload changes is rebuilt with scapy, which recomputes
lengths and checksums.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
FLAG_NAMES = "FSRPAUEC"


@dataclass
class Segment:
    raw: bytes
    ihl: int              # IP header length in bytes
    thl: int              # TCP header length in bytes
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes

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


def parse(raw: bytes) -> Segment | None:
    """The TCP segment in an IPv4 packet, or None (not IPv4/TCP, fragment, truncated)."""
    if len(raw) < 40 or raw[0] >> 4 != 4 or raw[9] != 6:
        return None
    ihl = (raw[0] & 0x0F) * 4
    total = struct.unpack_from("!H", raw, 2)[0]
    if struct.unpack_from("!H", raw, 6)[0] & 0x3FFF:       # fragment: not ours to read
        return None
    if len(raw) < ihl + 20:
        return None
    sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", raw, ihl)
    thl = (off_flags >> 12) * 4
    if thl < 20 or ihl + thl > min(total, len(raw)):
        return None
    return Segment(raw, ihl, thl, socket.inet_ntoa(raw[12:16]), socket.inet_ntoa(raw[16:20]),
                   sport, dport, seq, ack, off_flags & 0x1FF, raw[ihl + thl:total])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


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
    pseudo = seg.raw[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    struct.pack_into("!H", buf, seg.ihl + 16, _checksum(pseudo + tcp))
    return bytes(buf)


def rebuild(seg: Segment, seq: int, ack: int, sack: list[tuple[int, int]] | None, payload: bytes,
            flags: int | None = None) -> bytes:
    """The packet with a new payload (and seq/ack/SACK): scapy recomputes lengths and checksums."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw

    pkt = IP(seg.raw)
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
    del pkt.len, pkt.chksum, tcp.chksum
    return bytes(pkt)
