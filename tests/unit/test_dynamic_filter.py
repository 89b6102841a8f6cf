"""The dynamic filter's verdicts (pure): pinholes from plaintext announcements only, single use,
expiring, and a drop reason that says why."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP

from firewall.dropwatch import reason_for
from firewall.dynamic import NO_PINHOLE, NOT_START, TLS_BLIND, USED, DynamicFilter
from lab.devkit.events import EventWriter
from lab.devkit.tcpseg import ACK, PSH, SYN, describe, parse

CLIENT, SERVER = "198.51.100.10", "203.0.113.10"


class Events(EventWriter):
    def __init__(self) -> None:
        super().__init__(None, "fw")
        self.log: list[dict] = []

    def emit(self, type: str, **fields: object) -> dict:
        self.log.append(super().emit(type, **fields))
        return self.log[-1]


def seg(src, sport, dst, dport, seq=1, ack=1, flags=ACK | PSH, payload=b""):
    return parse(bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags)
                       / payload))


class Fw:
    """A control connection client:cport -> dialed:21 through the filter; the server answers
    from `server` (its own address: not the dialed one when a NAT on this router forwards)."""

    def __init__(self, cport: int = 40000, dialed: str = SERVER, server: str = SERVER, client: str = CLIENT):
        self.now = 0.0
        self.events = Events()
        self.fw = DynamicFilter("fw", [21, 990], self.events, lifetime=30, clock=lambda: self.now)
        self.client, self.cport, self.dialed, self.server = client, cport, dialed, server
        self.c = self.s = 1
        self.fw.control(seg(client, cport, dialed, 21, 0, 0, SYN))
        self.fw.control(seg(server, 21, client, cport, 0, 1, SYN | ACK))

    def client_says(self, data: bytes):
        self.fw.control(seg(self.client, self.cport, self.dialed, 21, self.c, self.s, payload=data))
        self.c += len(data)

    def server_says(self, data: bytes):
        self.fw.control(seg(self.server, 21, self.client, self.cport, self.s, self.c, payload=data))
        self.s += len(data)

    def syn(self, src, dst, dport, sport=50000):
        return self.fw.admit(seg(src, sport, dst, dport, 7, 0, SYN))

    def ignored(self) -> list[str]:
        return [e["message"] for e in self.events.log if e["type"] == "ignored"]


def test_pasv_opens_single_use_pinhole_for_the_client():
    f = Fw()
    f.server_says(b"227 Entering Passive Mode (203,0,113,10,234,96)\r\n")
    assert f.syn(CLIENT, SERVER, 60001) == NO_PINHOLE
    assert f.syn("198.51.100.99", SERVER, 60000) == NO_PINHOLE      # another host
    assert f.syn(CLIENT, SERVER, 60000) is None
    assert f.syn(CLIENT, SERVER, 60000) is None                      # its SYN again
    assert f.syn(CLIENT, SERVER, 60000, sport=50001) == USED
    assert [e["type"] for e in f.events.log].count("pinhole-used") == 1


def test_port_eprt_epsv_open_the_right_direction():
    f = Fw()
    f.client_says(b"PORT 198,51,100,10,4,1\r\n")
    assert f.syn(SERVER, CLIENT, 1025, sport=20) is None
    f.client_says(b"EPRT |1|198.51.100.10|1026|\r\n")
    assert f.syn(SERVER, CLIENT, 1026, sport=20) is None
    f.server_says(b"229 Entering Extended Passive Mode (|||60002|)\r\n")
    assert f.syn(CLIENT, SERVER, 60002) is None


def test_pinhole_expires():
    f = Fw()
    f.server_says(b"227 Entering Passive Mode (203,0,113,10,234,96)\r\n")
    f.now = 31
    f.fw.expire()
    assert f.syn(CLIENT, SERVER, 60000) == NO_PINHOLE
    assert [e for e in f.events.log if e["type"] == "pinhole-expired"]


def test_hostile_announcements_open_nothing():
    f = Fw()
    f.client_says(b"PORT 10,9,9,9,4,1\r\n")                           # another host: FTP bounce
    f.client_says(b"RETR PORT 198,51,100,10,4,2\r\n")                 # inside a filename
    f.client_says(b"227 Entering Passive Mode (203,0,113,10,4,3)\r\n")  # a reply from the client
    f.server_says(b"227 Entering Passive Mode (192,0,2,66,4,4)\r\n")    # a third host
    f.server_says(b"211-x\r\n227 Entering Passive Mode (203,0,113,10,4,5)\r\n211 end\r\n")
    assert f.fw.pinholes == {}


def test_tls_blinds_the_filter_and_says_so():
    f = Fw()
    f.client_says(b"AUTH TLS\r\n")
    f.server_says(b"234 go\r\n")
    hidden = b"\r\nPORT 198,51,100,10,4,1\r\n227 Entering Passive Mode (203,0,113,10,234,96)\r\n"
    f.client_says(bytes([0x16, 3, 1, 0, 5]) + b"hello" + bytes([0x17, 3, 3, 0, len(hidden)]) + hidden)
    f.server_says(bytes([0x16, 3, 3, 0, len(hidden)]) + hidden)
    assert f.fw.pinholes == {}
    assert f.syn(CLIENT, SERVER, 60000) == TLS_BLIND
    assert f.fw.admit(seg(CLIENT, 50000, SERVER, 60000, flags=ACK)) == NOT_START


def test_pasv_flood_holds_one_pinhole():
    f = Fw()
    for i in range(3000):
        f.server_says(f"227 Entering Passive Mode (203,0,113,10,{200 + i % 50},{i % 256})\r\n".encode())
    assert len({id(h) for h in f.fw.pinholes.values()}) == 1


def test_dropwatch_describes_packet_and_reason():
    raw = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=5, dport=60000, flags="S"))
    assert describe(raw) == {"proto": "tcp", "src": CLIENT, "dst": SERVER, "sport": 5, "dport": 60000,
                             "flags": "S"}
    assert reason_for(3, {"3": "static filter: default drop"}) == ("static filter: default drop", "mark 3")
    assert reason_for(9, {})[0].startswith("dropped (mark 9")


def test_pinhole_follows_a_kernel_nat_on_the_same_router():
    """NAT and filter on one router, the server behind it: the client dialed the router's outside
    address, the server answers from its own. nf_nat_ftp rewrites the 227 after the filter read
    it, so the client dials the address it knows the server by: that one is admitted too (same
    single use), no other address of the router."""
    f = Fw(dialed="203.0.113.1", server="10.1.1.10")
    f.server_says(b"227 Entering Passive Mode (10,1,1,10,234,96)\r\n")
    assert f.syn(CLIENT, "203.0.113.1", 60000) is None
    assert f.syn(CLIENT, "10.1.1.10", 60000, sport=50001) == USED
    assert f.syn(CLIENT, "198.51.100.1", 60000) == NO_PINHOLE       # another address of the router


def test_announcement_rewritten_by_an_alg_on_the_same_router():
    """The scapy ALG rewrites in raw PREROUTING, before the filter reads: the 227 then names the
    address the client dialed (the server's address toward its peer)."""
    f = Fw(dialed="203.0.113.1", server="10.1.1.10")
    f.server_says(b"227 Entering Passive Mode (203,0,113,1,234,96)\r\n")
    assert set(f.fw.pinholes) == {(CLIENT, "203.0.113.1", 60000)}


FW_ADDRESSES = ["198.51.100.1", "203.0.113.1"]


@pytest.mark.parametrize("fw", FW_ADDRESSES)
def test_port_naming_the_firewall_opens_nothing(fw):
    """Issue 10, item 2: a PORT naming the firewall's own address opened a pinhole to fw:22."""
    f = Fw()
    f.server_says(b"220 hi\r\n")
    f.client_says(f"PORT {fw.replace('.', ',')},0,22\r\n".encode())
    assert f.fw.pinholes == {}
    assert f.syn(SERVER, fw, 22, sport=20) == NO_PINHOLE
    assert f.ignored() == [f"PORT names {fw}, not its sender {CLIENT}: no pinhole"]


def test_port_opens_the_client_address_only():
    """Issue 10, item 2: every PORT also admitted the server to any of the firewall's addresses."""
    f = Fw()
    f.server_says(b"220 hi\r\n")
    f.client_says(b"PORT 198,51,100,10,4,1\r\n")
    assert set(f.fw.pinholes) == {(SERVER, CLIENT, 1025)}
    for fw in FW_ADDRESSES:
        assert f.syn(SERVER, fw, 1025, sport=20) == NO_PINHOLE


@pytest.mark.parametrize("cport", [990, 21])
def test_slipstream_from_a_control_port_opens_nothing(cport):
    """Issue 10, item 1: a client connecting FROM port 990 or 21 makes the server echo a PORT
    line; the direction is the SYN's, so it is the server's text, not a client command."""
    f = Fw(cport=cport)
    f.server_says(b"220 hi\r\n")
    f.client_says(b"SIZE a\rPORT 203,0,113,10,0,22\rb\r\n")
    f.server_says(b"550-a\r\nPORT 203,0,113,10,0,22\r\n550 b: no such file.\r\n")
    assert f.fw.pinholes == {}
    assert f.syn(CLIENT, SERVER, 22) == NO_PINHOLE
    assert f.ignored() == ["PORT sent by the server: not its announcement; no pinhole"]
    f.server_says(b"227 Entering Passive Mode (203,0,113,10,234,96)\r\n")   # the real thing still works
    assert f.syn(CLIENT, SERVER, 60000) is None


def test_connection_opened_before_the_filter_opens_nothing():
    """No SYN seen: the control connection is let through but never read."""
    f = Fw()
    f.fw = DynamicFilter("fw", [21, 990], f.events, lifetime=30, clock=lambda: f.now)   # restarted
    f.server_says(b"227 Entering Passive Mode (203,0,113,10,234,96)\r\n")
    f.client_says(b"PORT 198,51,100,10,4,1\r\n")
    assert f.fw.pinholes == {} and f.fw.tracker.conns == {}


def test_a_packet_of_a_forgotten_control_connection_names_it():
    """The kernel forgot an idle control connection (its idle timeout): the server's next reply
    comes in as a new packet, and the drop names the control connection that expired."""
    f = Fw(dialed="203.0.113.1", server="10.1.1.10")
    f.fw.idle_timeout = 2
    f.server_says(b"220 ready\r\n")
    late = seg("10.1.1.10", 21, CLIENT, f.cport, f.s, f.c, payload=b"226 Transfer complete.\r\n")
    assert f.fw.admit(late) == (f"control connection {CLIENT}:40000 -> 203.0.113.1:21 expired: idle longer than the "
                                "idle timeout (2 s), its state is gone and this packet no longer belongs to an "
                                "admitted connection")
    other = seg("10.1.1.10", 21, CLIENT, 40001, 1, 1, payload=b"226 x\r\n")       # not a connection it read
    assert f.fw.admit(other) == NOT_START
