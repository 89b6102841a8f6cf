"""The dynamic filter's verdicts (pure): pinholes from plaintext announcements only, single use,
expiring, and a drop reason that says why."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from firewall.dropwatch import describe, reason_for
from firewall.dynamic import NO_PINHOLE, NOT_START, TLS_BLIND, USED, DynamicFilter
from nat.events import EventWriter
from nat.tcpseg import ACK, PSH, SYN, parse

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
    def __init__(self):
        self.now = 0.0
        self.events = Events()
        self.fw = DynamicFilter("fw", [21, 990], self.events, lifetime=30, clock=lambda: self.now)
        self.c = self.s = 1
        self.fw.control(seg(CLIENT, 40000, SERVER, 21, 0, 0, SYN))
        self.fw.control(seg(SERVER, 21, CLIENT, 40000, 0, 1, SYN | ACK))

    def client_says(self, data: bytes):
        self.fw.control(seg(CLIENT, 40000, SERVER, 21, self.c, self.s, payload=data))
        self.c += len(data)

    def server_says(self, data: bytes):
        self.fw.control(seg(SERVER, 21, CLIENT, 40000, self.s, self.c, payload=data))
        self.s += len(data)

    def syn(self, src, dst, dport, sport=50000):
        return self.fw.admit(seg(src, sport, dst, dport, 7, 0, SYN))


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
    """nf_nat_ftp rewrites after the filter read the line: the peer then dials the router's own
    address, which the pinhole admits too (same single use)."""
    f = Fw()
    f.fw.own = {"203.0.113.1"}
    f.server_says(b"227 Entering Passive Mode (203,0,113,10,234,96)\r\n")
    assert f.syn(CLIENT, "203.0.113.1", 60000) is None
    assert f.syn(CLIENT, SERVER, 60000, sport=50001) == USED
    assert f.syn(CLIENT, "203.0.113.99", 60000) == NO_PINHOLE
