"""TCP segments over IPv4 and IPv6 (lab.devkit.tcpseg): read, patch, rebuild, describe."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

from lab.devkit.tcpseg import describe, parse, patch, rebuild

V4 = {"src": "10.0.1.2", "dst": "198.51.100.2"}
V6 = {"src": "2001:db8:1::2", "dst": "2001:db8:2::2"}
PAYLOAD = b"PORT 10,0,1,2,4,1\r\n"


def tcp(**kw):
    return TCP(sport=40000, dport=21, seq=1000, ack=2000, flags="PA", options=[("SAck", (5, 9))], **kw)


PACKETS = {
    "ipv4": IP(**V4) / tcp() / PAYLOAD,
    "ipv6": IPv6(**V6) / tcp() / PAYLOAD,
    "ipv6 with extension headers": IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / tcp() / PAYLOAD,
}


def checksum_ok(raw: bytes, cls) -> bool:
    pkt = cls(raw)
    got = pkt[TCP].chksum
    del pkt[TCP].chksum
    return cls(bytes(pkt))[TCP].chksum == got


@pytest.mark.parametrize("name", PACKETS)
def test_parse_patch_rebuild(name):
    pkt = PACKETS[name]
    cls = type(pkt)
    seg = parse(bytes(pkt))
    assert (seg.version, seg.sport, seg.dport, seg.seq, seg.ack, seg.payload) == \
        (4 if cls is IP else 6, 40000, 21, 1000, 2000, PAYLOAD)
    assert (seg.src, seg.dst) == ((V4 if cls is IP else V6)["src"], (V4 if cls is IP else V6)["dst"])
    assert seg.sack_blocks() == [(5, 9)] and seg.flag_text() == "PA"
    patched = parse(patch(seg, 7, 8, [(11, 12)]))
    assert (patched.seq, patched.ack, patched.sack_blocks(), patched.payload) == (7, 8, [(11, 12)], PAYLOAD)
    assert checksum_ok(patched.raw, cls)
    rebuilt = parse(rebuild(seg, 7, 8, None, b"PORT 203,0,113,1,4,1\r\n"))
    assert (rebuilt.seq, rebuilt.ack, rebuilt.payload) == (7, 8, b"PORT 203,0,113,1,4,1\r\n")
    assert checksum_ok(rebuilt.raw, cls)


def test_fragments_and_other_protocols_are_not_read():
    assert parse(bytes(IP(flags="MF", **V4) / tcp())) is None
    assert parse(bytes(IPv6(**V6) / IPv6ExtHdrFragment() / tcp())) is None
    assert parse(bytes(IPv6(**V6) / UDP(sport=5, dport=53))) is None
    assert parse(b"\x00" * 60) is None


def test_describe_names_the_packet_for_a_drop_event():
    assert describe(bytes(IPv6(**V6) / TCP(sport=5, dport=60000, flags="S"))) == {
        "proto": "tcp", "src": V6["src"], "dst": V6["dst"], "sport": 5, "dport": 60000, "flags": "S"}
    assert describe(bytes(IP(**V4) / UDP(sport=5, dport=53))) == {
        "proto": "udp", "src": V4["src"], "dst": V4["dst"], "sport": 5, "dport": 53}
    assert describe(b"junk")["proto"].startswith("not IPv4/IPv6")
