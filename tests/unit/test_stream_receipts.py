"""Whose bytes a device reads: only a segment from its sender's side of the router that its
receiver will accept (lab.devkit.ctrlstream.Receipt). Each forged or undeliverable segment is fed
to the real dynamic filter and the real ALG engine; it must open no pinhole and no mapping, while
the same announcement sent properly does (so a test cannot pass by a device that opens nothing)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from test_alg_rewrite import Events, Kernel

from firewall.dynamic import DynamicFilter
from lab.devkit.ctrlstream import Receipt
from lab.devkit.tcpseg import ACK, PSH, SYN, parse
from nat.alg import AlgEngine, Mappings, NftMaps

OUTSIDE_IF, INSIDE_IF = 2, 3
CLIENT_MAC, SERVER_MAC, NEIGHBOUR_MAC = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x99"
CLIENT_SIDE, SERVER_SIDE = (OUTSIDE_IF, CLIENT_MAC), (INSIDE_IF, SERVER_MAC)
ISN_C, ISN_S = 1000, 5000


def packet(src, sport, dst, dport, seq, ack, flags, payload=b"", ttl=64, window=64240, options=(),
           bad_checksum=False):
    ip = IPv6(src=src, dst=dst, hlim=ttl) if ":" in src else IP(src=src, dst=dst, ttl=ttl)
    tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window, options=list(options))
    raw = bytearray(bytes(ip / tcp / payload))
    if bad_checksum:
        at = (40 if ":" in src else 20) + 16
        raw[at] ^= 0xFF
    return parse(bytes(raw))


class Session:
    """One control connection client -> server:21 through a device, with the device's view of
    which side each packet came from. `device` is "dynamic" or "alg" (the client inside a NAT)."""

    def __init__(self, device: str, client: str = "198.51.100.10", server: str = "203.0.113.10",
                 ts: bool = False):
        self.events = Events()
        self.kind = device
        self.client, self.server, self.ts = client, server, ts
        if device == "dynamic":
            self.dev = DynamicFilter("fw", [21, 990], self.events, lifetime=30, clock=lambda: 0.0)
        else:
            self.kernel = Kernel()
            maps = Mappings("203.0.113.1", self.events, kernel=NftMaps(nft=self.kernel, sets=self.kernel))
            self.dev = AlgEngine("nat", "203.0.113.1", [21, 990], self.events, maps)
        self.c, self.s = ISN_C + 1, ISN_S + 1
        self.tsval = {"c": 100, "s": 900}
        opts = [("WScale", 7)] + ([("Timestamp", (100, 0))] if ts else [])
        assert self.feed(packet(client, 40000, server, 21, ISN_C, 0, SYN, options=opts), CLIENT_SIDE)
        opts = [("WScale", 7)] + ([("Timestamp", (900, 100))] if ts else [])
        assert self.feed(packet(server, 21, client, 40000, ISN_S, ISN_C + 1, SYN | ACK, options=opts), SERVER_SIDE)
        assert self.feed(packet(client, 40000, server, 21, self.c, self.s, ACK, options=self._ts("c")), CLIENT_SIDE)

    def _ts(self, who: str, back: int = 0):
        if not self.ts:
            return []
        self.tsval[who] += 1
        return [("Timestamp", (self.tsval[who] - back, self.tsval["s" if who == "c" else "c"]))]

    def feed(self, seg, side) -> bool:
        receipt = Receipt(side=side)
        if self.kind == "dynamic":
            return self.dev.control(seg, receipt)
        # the ALG's client is inside the NAT: the client's side is its inside, the server's its outside
        return self.dev.process(seg, from_outside=side[0] == SERVER_SIDE[0], receipt=receipt).action == "accept"

    def client_says(self, data: bytes, side=CLIENT_SIDE, **kw) -> bool:
        ok = self.feed(packet(self.client, 40000, self.server, 21, kw.pop("seq", self.c), kw.pop("ack", self.s),
                              kw.pop("flags", ACK | PSH), data, options=kw.pop("options", self._ts("c")), **kw), side)
        if ok:
            self.c += len(data)
        return ok

    def server_says(self, data: bytes, side=SERVER_SIDE, **kw) -> bool:
        ok = self.feed(packet(self.server, 21, self.client, 40000, kw.pop("seq", self.s), kw.pop("ack", self.c),
                              kw.pop("flags", ACK | PSH), data, options=kw.pop("options", self._ts("s")), **kw), side)
        if ok:
            self.s += len(data)
        return ok

    def opened(self) -> list[dict]:
        return self.events.of("pinhole-open") + self.events.of("mapping-open")

    def refused(self) -> list[str]:
        return [e["reason"] for e in self.events.of("drop")]


PASV = b"227 Entering Passive Mode (203,0,113,10,0,22)\r\n"
PORT = b"PORT 198,51,100,10,0,22\r\n"


def test_a_forged_227_from_the_clients_side_opens_nothing():
    s = Session("dynamic")
    assert not s.server_says(PASV, side=CLIENT_SIDE)
    assert not s.opened() and "another side of the router" in s.refused()[0]
    assert s.server_says(PASV)                                        # the server's own: opens
    assert [e["dport"] for e in s.opened()] == [22]


def test_a_neighbour_on_the_clients_link_cannot_speak_for_the_client():
    s = Session("dynamic")
    assert not s.client_says(PORT, side=(OUTSIDE_IF, NEIGHBOUR_MAC))
    assert not s.opened() and "neighbour 02:00:00:00:00:99" in s.refused()[0]
    assert s.client_says(PORT)
    assert len(s.opened()) == 1


def test_a_hostile_server_cannot_forge_the_clients_port():
    s = Session("dynamic")
    assert not s.client_says(PORT, side=SERVER_SIDE)
    assert not s.opened()


def test_a_segment_that_expires_here_is_not_read_and_left_to_the_kernel():
    s = Session("dynamic")
    assert s.client_says(PORT, ttl=1) is True                         # forwarded: the kernel drops it
    s.c -= len(PORT)                                                  # ... and the server never got it
    assert not s.opened() and "expires at this router" in s.refused()[0]
    assert s.client_says(b"NOOP\r\n")                                 # the bytes the server really got
    assert not s.opened()


def test_a_bad_checksum_is_not_read():
    s = Session("dynamic")
    assert not s.client_says(PORT, bad_checksum=True)
    assert not s.opened() and "checksum" in s.refused()[0]
    assert s.client_says(PORT)
    assert len(s.opened()) == 1


def test_data_beyond_the_receivers_window_is_not_read():
    s = Session("dynamic")
    # the server advertised 64240 << 7 bytes; the forged segment starts far beyond them
    assert not s.client_says(PORT, seq=s.c + (64240 << 7) + 10)
    assert not s.opened() and "window" in s.refused()[0]


def test_a_retransmission_with_other_bytes_is_not_read():
    s = Session("dynamic")
    noop = b"NOOP NOOP NOOP NOOP NOOP\r\n"
    assert len(noop) == len(PORT) + 1
    assert s.client_says(noop)
    assert not s.client_says(PORT + b"\n", seq=s.c - len(noop))        # the same bytes again, other text
    assert not s.opened() and "other bytes" in s.refused()[0]
    assert s.client_says(noop, seq=s.c - len(noop))                    # a true retransmission passes
    s.c -= len(noop)


def test_data_without_ack_and_acks_of_unsent_bytes_are_not_read():
    s = Session("dynamic")
    assert not s.client_says(PORT, flags=PSH)
    assert not s.client_says(PORT, ack=s.s + 5000)
    assert not s.opened()
    assert ["ACK flag" in s.refused()[0], "never sent" in s.refused()[1]] == [True, True]


def test_an_older_timestamp_is_not_read():
    s = Session("dynamic", ts=True)
    assert not s.client_says(PORT, options=s._ts("c", back=50))
    assert not s.opened() and "PAWS" in s.refused()[0]
    assert s.client_says(PORT)
    assert len(s.opened()) == 1


def test_the_servers_side_is_learnt_only_from_its_syn_ack():
    events = Events()
    fw = DynamicFilter("fw", [21, 990], events, lifetime=30, clock=lambda: 0.0)
    client, server = "198.51.100.10", "203.0.113.10"
    fw.control(packet(client, 40000, server, 21, ISN_C, 0, SYN), Receipt(CLIENT_SIDE))
    # before the server answers, the client "answers" for it, from its own side
    assert not fw.control(packet(server, 21, client, 40000, ISN_S + 1, ISN_C + 1, ACK | PSH, PASV),
                          Receipt(CLIENT_SIDE))
    assert fw.control(packet(server, 21, client, 40000, ISN_S, ISN_C + 1, SYN | ACK), Receipt(SERVER_SIDE))
    assert not fw.control(packet(server, 21, client, 40000, ISN_S + 1, ISN_C + 1, ACK | PSH, PASV),
                          Receipt(CLIENT_SIDE))
    assert not [e for e in events.log if e["type"] == "pinhole-open"]


def test_ipv6_forged_229_with_hop_limit_one_and_from_the_wrong_side():
    s = Session("dynamic", client="2001:db8:1::10", server="2001:db8:2::10")
    epsv = b"229 Entering Extended Passive Mode (|||22|)\r\n"
    assert not s.server_says(epsv, side=CLIENT_SIDE, ttl=1)
    assert not s.server_says(epsv, side=CLIENT_SIDE)
    assert s.server_says(epsv, ttl=1) is True and not s.opened()       # left to the kernel, not read
    s.s -= len(epsv)
    assert s.server_says(epsv)
    assert [e["dport"] for e in s.opened()] == [22]


@pytest.mark.parametrize("attack", ["wrong-side", "neighbour", "ttl", "checksum", "window", "no-ack"])
def test_the_alg_rewrites_and_maps_nothing_for_a_refused_segment(attack):
    # the client inside the NAT (its packets arrive on the inside: the ALG's "not from outside")
    s = Session("alg", client="10.0.1.2", server="198.51.100.2")
    port = b"PORT 10,0,1,2,0,22\r\n"
    kw = {"wrong-side": {"side": SERVER_SIDE}, "neighbour": {"side": (OUTSIDE_IF, NEIGHBOUR_MAC)},
          "ttl": {"ttl": 1}, "checksum": {"bad_checksum": True}, "window": {"seq": s.c + (64240 << 7) + 10},
          "no-ack": {"flags": PSH}}[attack]
    s.client_says(port, **kw)
    assert not s.opened() and not s.events.of("rewrite") and not s.kernel.added()
    assert len(s.refused()) == 1
    s.c = ISN_C + 1
    assert s.client_says(port)                                          # sent properly: rewritten, mapped
    assert len(s.events.of("rewrite")) == 1 and len(s.kernel.added()) == 1


def test_a_timestamp_one_tick_behind_is_taken_as_linux_takes_it():
    """Linux's PAWS lets a segment one tick behind the last one through (TCP_PAWS_WINDOW): a
    reordering of that size must not make a device drop what the receiver accepts."""
    s = Session("dynamic", ts=True)
    assert s.client_says(b"NOOP\r\n")
    assert s.client_says(PORT, options=s._ts("c", back=2))            # two ticks behind the last: 1 behind
    assert len(s.opened()) == 1
