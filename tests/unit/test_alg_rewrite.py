"""The ALG engine on simulated TCP segments: rewrites, mappings, seq/ack, hostile input.

A real AlgEngine and Mappings; the only thing replaced is libnftables, which records the commands
and keeps the mappings' set instead of programming a kernel (tests/net/test_devices.py does that
for real).
"""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from lab.devkit.events import EventWriter
from lab.devkit.tcpseg import ACK, FIN, PSH, SYN, parse
from nat.alg import MAP_BURST, AlgEngine, IptablesMaps, Mapping, Mappings, NftMaps

CLIENT, SERVER, OUTSIDE, THIRD = "10.0.1.2", "198.51.100.2", "203.0.113.1", "10.0.1.99"
ISN_C, ISN_S = 0xFFFFFF00, 5000          # the client's sequence numbers wrap during the session


class Events(EventWriter):
    def __init__(self) -> None:
        super().__init__(None, "nat-c")
        self.log: list[dict] = []

    def emit(self, type: str, **fields: object) -> dict:
        event = super().emit(type, **fields)
        self.log.append(event)
        return event

    def of(self, type: str) -> list[dict]:
        return [e for e in self.log if e["type"] == type]


class Kernel:
    """The kernel side of the ALG's NftMaps: element changes as lab.devkit.nfsets sends them and the
    listing libnftables gives. Records the changes and keeps MAP_TABLE's waiting set and dest map;
    `hit(port)` is what the kernel's rule does when a data connection's first packet matches a
    waiting mapping: DNAT it and take the mapping out of the set."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.waiting: set[str] = set()
        self.dest: dict[str, str] = {}

    @staticmethod
    def text(packed: bytes) -> str:
        """`a . b . port` from an nftables concatenation of addresses and ports (4 bytes each)."""
        parts = [packed[i:i + 4] for i in range(0, len(packed), 4)]
        return " . ".join(str(int.from_bytes(p[:2], "big")) if p[2:] == b"\0\0" else ".".join(map(str, p))
                          for p in parts)

    def add(self, elements) -> None:
        for e in elements:
            key = self.text(e.key)
            self.commands.append(f"add {e.set} {key}" + (f" : {self.text(e.data)}" if e.data else ""))
            if e.set == "waiting":
                self.waiting.add(key)
            else:
                self.dest[key] = self.text(e.data)

    def delete(self, elements) -> None:
        for e in elements:
            key = self.text(e.key)
            table = self.waiting if e.set == "waiting" else self.dest
            if key not in table:
                raise OSError(2, "No such file or directory")
            self.commands.append(f"delete {e.set} {key}")
            table.discard(key) if e.set == "waiting" else table.pop(key)

    def run(self, commands: str) -> str:          # libnftables: only the poller's listing
        assert commands.startswith("list set"), commands
        return "elements = { " + ", ".join(f"{k} timeout 31s expires 30s" for k in self.waiting) + " }"

    def hit(self, port: int) -> None:
        self.waiting = {k for k in self.waiting if not k.endswith(f" . {port}")}

    def added(self) -> list[str]:
        """The mappings installed, as `peer . outside . port : host . port`."""
        return [c.removeprefix("add dest ") for c in self.commands if c.startswith("add dest ")]


def mappings(events: EventWriter, kernel: Kernel, **kw) -> Mappings:
    return Mappings(OUTSIDE, events, kernel=NftMaps(nft=kernel, sets=kernel), **kw)


def segment(src, sport, dst, dport, seq, ack, flags, payload=b"", sack=None):
    options = [("SAck", sack)] if sack else []
    return parse(bytes(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF,
                                                  ack=ack & 0xFFFFFFFF, flags=flags, options=options)
                       / payload))


class Session:
    """A client inside the NAT, a server outside; what each side receives is reassembled."""

    def __init__(self, server: str = SERVER, client: str = CLIENT, drop_first_rewrite: bool = False,
                 clock=time.monotonic, cport: int = 40000):
        self.events, self.kernel = Events(), Kernel()
        self.mappings = mappings(self.events, self.kernel, clock=clock)
        self.alg = AlgEngine("nat-c", OUTSIDE, [21, 990], self.events, self.mappings,
                             drop_first_rewrite=drop_first_rewrite, clock=clock)
        self.client, self.server, self.cport = client, server, cport
        self.inside = "s2c" if server == CLIENT else "c2s"    # whose packets come from the inside
        self.sent = {"c2s": 0, "s2c": 0}          # original stream offsets
        self.got = {"c2s": bytearray(), "s2c": bytearray()}
        self.last_ack = {"c2s": None, "s2c": None}
        self.out: list[bytes | None] = []
        self._pass("c2s", ISN_C, 0, SYN, b"")
        self._pass("s2c", ISN_S, ISN_C + 1, SYN | ACK, b"")

    def _pass(self, d, seq, ack, flags, payload, sack=None):
        src, dst = (self.client, self.server) if d == "c2s" else (self.server, self.client)
        sport, dport = (self.cport, 21) if d == "c2s" else (21, self.cport)
        seg = segment(src, sport, dst, dport, seq, ack, flags, payload, sack)
        verdict = self.alg.process(seg, from_outside=d != self.inside)
        if verdict.action == "drop":
            self.out.append(None)
            return None
        raw = verdict.packet or seg.raw
        raw = self.alg.translate_acks(parse(raw)) or raw     # the second pass, after conntrack
        self.out.append(raw)
        got = parse(raw)
        check = IP(raw)
        del check[TCP].chksum
        assert IP(bytes(check))[TCP].chksum == IP(raw)[TCP].chksum, "bad TCP checksum"
        isn = ISN_C if d == "c2s" else ISN_S
        if got.payload:
            off = (got.seq - isn - 1) & 0xFFFFFFFF
            buf = self.got[d]
            assert off <= len(buf), "a hole at the receiver"
            buf[off:off + len(got.payload)] = got.payload
        self.last_ack[d] = got.ack
        return got

    def send(self, d, *chunks, at=None):
        """Send chunks (as separate segments) from the sender of direction d."""
        isn, peer_isn = (ISN_C, ISN_S) if d == "c2s" else (ISN_S, ISN_C)
        pos = self.sent[d] if at is None else at
        other = "s2c" if d == "c2s" else "c2s"
        outs = []
        for chunk in chunks:
            outs.append(self._pass(d, isn + 1 + pos, peer_isn + 1 + self.sent[other], ACK | PSH, chunk))
            pos += len(chunk)
        if at is None:
            self.sent[d] = pos
        return outs

    def ack_all(self, d):
        """The receiver of direction d acknowledges everything it got; returns the ack the sender sees."""
        other = "s2c" if d == "c2s" else "c2s"
        isn, peer_isn = (ISN_C, ISN_S) if d == "c2s" else (ISN_S, ISN_C)
        got = self._pass(other, peer_isn + 1 + self.sent[other], isn + 1 + len(self.got[d]), ACK, b"")
        return (got.ack - isn - 1) & 0xFFFFFFFF


PORT = b"PORT 10,0,1,2,4,1\r\n"
PORT_OUT = b"PORT 203,0,113,1,4,1\r\n"


def test_port_rewritten_mapping_installed_and_acks_shifted_back():
    s = Session()
    s.send("c2s", b"USER a\r\n", PORT, b"LIST\r\n")
    assert bytes(s.got["c2s"]) == b"USER a\r\n" + PORT_OUT + b"LIST\r\n"
    assert s.ack_all("c2s") == s.sent["c2s"]          # the client sees its own positions acked
    assert s.kernel.added() == [f"{SERVER} . {OUTSIDE} . 1025 : {CLIENT} . 1025"]
    (rw,) = s.events.of("rewrite")
    assert rw["before"] == "PORT 10,0,1,2,4,1" and rw["after"] == "PORT 203,0,113,1,4,1"
    assert rw["from"] == f"{CLIENT}:1025" and rw["to"] == f"{OUTSIDE}:1025"
    assert s.events.of("mapping-open")[0]["public"] == f"{OUTSIDE}:1025"


def test_eprt_rewritten():
    s = Session()
    s.send("c2s", b"EPRT |1|10.0.1.2|1027|\r\n")
    assert bytes(s.got["c2s"]) == b"EPRT |1|203.0.113.1|1027|\r\n"


def test_227_and_229_from_an_inside_server():
    s = Session(server=CLIENT, client=SERVER)          # the server is the inside host now
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96).\r\n")
    s.send("s2c", b"229 Entering Extended Passive Mode (|||60001|)\r\n")
    assert bytes(s.got["s2c"]) == (b"227 Entering Passive Mode (203,0,113,1,234,96).\r\n"
                                   b"229 Entering Extended Passive Mode (|||60001|)\r\n")
    publics = [e["public"] for e in s.events.of("mapping-open")]
    assert publics == [f"{OUTSIDE}:60000", f"{OUTSIDE}:60001"]


def test_one_to_one_host_announces_its_own_public_address_without_a_mapping():
    s = Session(server=CLIENT, client=SERVER)          # the server is the inside host, with a 1:1 address
    s.alg.one_to_one = {CLIENT: "203.0.113.20"}
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96).\r\n",
           b"229 Entering Extended Passive Mode (|||60001|)\r\n")
    assert bytes(s.got["s2c"]) == (b"227 Entering Passive Mode (203,0,113,20,234,96).\r\n"
                                   b"229 Entering Extended Passive Mode (|||60001|)\r\n")
    assert s.ack_all("s2c") == s.sent["s2c"]
    assert not s.kernel.added() and not s.events.of("mapping-open")   # the 1:1 NAT maps every port
    (rw,) = s.events.of("rewrite")
    assert rw["to"] == "203.0.113.20:60000" and rw["one_to_one"] is True


def test_229_port_rewritten_only_when_mapped_port_differs():
    s = Session(server=CLIENT, client=SERVER)
    s.mappings.active[60001] = Mapping("192.0.2.7", 60001, "10.0.1.50", 60001, 1e12, owner="another")
    s.send("s2c", b"229 Entering Extended Passive Mode (|||60001|)\r\n")
    assert bytes(s.got["s2c"]) == b"229 Entering Extended Passive Mode (|||60002|)\r\n"


def test_split_at_every_byte_boundary_rewritten_once_and_consistent():
    for cut in range(1, len(PORT)):
        s = Session()
        s.send("c2s", b"NOOP\r\n" + PORT[:cut], PORT[cut:] + b"LIST\r\n")
        assert bytes(s.got["c2s"]) == b"NOOP\r\n" + PORT_OUT + b"LIST\r\n", cut
        assert s.ack_all("c2s") == s.sent["c2s"]
        assert len(s.kernel.added()) == 1


def test_retransmission_of_rewritten_segment_is_identical():
    s = Session()
    first = s.send("c2s", PORT)[0]
    again = s.send("c2s", PORT, at=0)[0]
    assert first.raw == again.raw and len(s.kernel.added()) == 1


def test_lost_rewritten_segment_is_rewritten_on_retransmission():
    s = Session(drop_first_rewrite=True)
    assert s.send("c2s", PORT) == [None]                 # lost once (the test hook)
    assert bytes(s.got["c2s"]) == b""
    s.send("c2s", PORT, at=0)                            # TCP resends it
    assert bytes(s.got["c2s"]) == PORT_OUT
    s.send("c2s", b"LIST\r\n")
    assert bytes(s.got["c2s"]) == PORT_OUT + b"LIST\r\n"


def test_fifty_rewrites_keep_seq_and_ack_consistent():
    ticks = itertools.count()
    s = Session(clock=lambda: next(ticks) * 0.1)         # a transfer every few tenths of a second
    expected = b""
    for i in range(50):
        port = 1024 + i * 7
        line = f"PORT 10,0,1,2,{port >> 8},{port & 255}\r\n".encode()
        s.send("c2s", line, b"RETR f\r\n")
        s.send("s2c", b"200 ok\r\n150 go\r\n226 done\r\n")
        expected += f"PORT 203,0,113,1,{port >> 8},{port & 255}\r\n".encode() + b"RETR f\r\n"
        assert s.ack_all("c2s") == s.sent["c2s"]
    assert bytes(s.got["c2s"]) == expected


def test_sack_blocks_shifted_back():
    s = Session()
    s.send("c2s", PORT, b"NOOP\r\n")
    isn = ISN_C
    left, right = isn + 1 + len(PORT_OUT), isn + 1 + len(PORT_OUT) + 6
    got = s._pass("s2c", ISN_S + 1, isn + 1, ACK, b"", sack=(left, right))
    assert got.sack_blocks() == [((isn + 1 + len(PORT)) & 0xFFFFFFFF, (isn + 1 + len(PORT) + 6) & 0xFFFFFFFF)]


# -- hostile control traffic opens nothing (issue 4, issue 6 "ALG abuse") -----------------------

HOSTILE_FROM_CLIENT = {
    "PORT naming another host": b"PORT 10,0,1,99,4,1\r\n",
    "EPRT naming another host": b"EPRT |1|10.0.1.99|1025|\r\n",
    "PORT inside a filename": b"RETR PORT 10,0,1,2,4,1\r\n",
    "PORT after leading space": b" PORT 10,0,1,2,4,1\r\n",
    "number above 255": b"PORT 10,0,1,2,256,1\r\n",
    "negative number": b"PORT 10,0,-1,2,4,1\r\n",
    "overlong number": b"PORT 10,0,1,0002,4,1\r\n",
    "port zero": b"PORT 10,0,1,2,0,0\r\n",
    "EPRT IPv6": b"EPRT |2|::1|1025|\r\n",
    "227 from the client": b"227 Entering Passive Mode (10,0,1,2,4,1)\r\n",
    "229 from the client": b"229 Entering Extended Passive Mode (|||1025|)\r\n",
}


@pytest.mark.parametrize("line", HOSTILE_FROM_CLIENT.values(), ids=HOSTILE_FROM_CLIENT.keys())
def test_hostile_client_line_opens_nothing(line):
    s = Session()
    s.send("c2s", line)
    assert bytes(s.got["c2s"]) == line and s.kernel.commands == [] and not s.events.of("rewrite")


HOSTILE_FROM_SERVER = {
    "227 naming a third host": b"227 Entering Passive Mode (10,0,1,99,4,1)\r\n",
    "227 inside a multi-line reply": b"211-x\r\n227 Entering Passive Mode (10,0,1,2,4,1)\r\n211 end\r\n",
    "227 as multi-line reply": b"227-Entering Passive Mode (10,0,1,2,4,1)\r\n227 x\r\n",
    "PORT from the server": b"PORT 10,0,1,2,4,1\r\n",
    "227 inside an error text": b"550 227 Entering Passive Mode (10,0,1,2,4,1)\r\n",
}


@pytest.mark.parametrize("line", HOSTILE_FROM_SERVER.values(), ids=HOSTILE_FROM_SERVER.keys())
def test_hostile_server_line_opens_nothing(line):
    s = Session(server=CLIENT, client=SERVER)
    s.send("s2c", line)
    assert bytes(s.got["s2c"]) == line and s.kernel.commands == []


def test_port_split_at_every_boundary_of_hostile_filename_opens_nothing():
    line = b"RETR PORT 10,0,1,2,4,1\r\n"
    for cut in range(1, len(line)):
        s = Session()
        s.send("c2s", line[:cut], line[cut:])
        assert bytes(s.got["c2s"]) == line and s.kernel.commands == []


def tls_record(kind: int, body: bytes) -> bytes:
    return bytes([kind, 3, 3]) + len(body).to_bytes(2, "big") + body


def test_tls_crosses_byte_identical_even_with_ftp_looking_data():
    s = Session()
    s.send("c2s", b"AUTH TLS\r\n")
    s.send("s2c", b"234 go\r\n")
    records = [tls_record(0x16, b"hello"), tls_record(0x17, b"\r\nPORT 10,0,1,2,4,1\r\n"),
               tls_record(0x17, b"PORT 10,0,1,2,4,1\r\n" * 3)]
    stream = b"".join(records)
    outs = s.send("c2s", stream[:7], stream[7:30], stream[30:])
    assert all(o.raw == segment(CLIENT, 40000, SERVER, 21, o.seq, o.ack, o.flags, o.payload).raw for o in outs)
    assert bytes(s.got["c2s"]) == b"AUTH TLS\r\n" + stream
    assert s.kernel.commands == [] and s.events.of("tls-detected")


@pytest.mark.parametrize("first", [PORT, b"EPRT |1|10.0.1.2|1025|\r\n"])
def test_ccc_first_plaintext_line_rewritten(first):
    s = Session()
    s.send("c2s", b"AUTH TLS\r\n")
    s.send("s2c", b"234 go\r\n")
    s.send("c2s", tls_record(0x16, b"hello"), tls_record(0x17, b"CCC"), tls_record(0x15, b"\x01\x00") + first)
    assert b"203" in bytes(s.got["c2s"])[-len(first) - 4:]
    assert len(s.events.of("rewrite")) == 1 and s.events.of("ccc")
    assert s.ack_all("c2s") == s.sent["c2s"]


def test_pasv_flood_holds_one_mapping_per_connection():
    s = Session(server=CLIENT, client=SERVER)
    reply = b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n"
    for _ in range(80):
        s.send("s2c", reply * 25)
    assert len(s.mappings.active) == 1 and len(s.kernel.added()) == 1    # the same one, refreshed
    assert len(s.events.of("rewrite")) == 2000


def test_pasv_flood_with_new_ports_is_rate_limited():
    s = Session(server=CLIENT, client=SERVER, clock=lambda: 1000.0)   # all within one instant
    lines = [f"227 Entering Passive Mode (10,0,1,2,{100 + i // 256},{i % 256})\r\n".encode() for i in range(3000)]
    s.send("s2c", *(b"".join(lines[i:i + 25]) for i in range(0, 3000, 25)))
    assert len(s.mappings.active) == 1
    assert len(s.kernel.added()) <= MAP_BURST + 5        # the burst, then MAP_RATE a second
    assert len([e for e in s.events.of("ignored") if "a second" in e["message"]]) >= 3000 - MAP_BURST - 5


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 300), max_size=5), st.booleans())
def test_random_bytes_never_crash_and_keep_the_stream(data, cuts, c2s):
    s = Session()
    cuts = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
    d = "c2s" if c2s else "s2c"
    s.send(d, *chunks)
    # the FIN acknowledges what the peer sent (a segment acknowledging nothing sent is discarded)
    s._pass(d, (ISN_C if c2s else ISN_S) + 1 + s.sent[d], (ISN_S if c2s else ISN_C) + 1, ACK | FIN, b"")
    if not s.events.of("rewrite"):
        assert bytes(s.got[d]) == data


def test_held_line_released_by_fin_is_delivered():
    s = Session()
    s.send("c2s", b"NOOP\r\nPORT 10,0")                   # held: may still become an announcement
    assert bytes(s.got["c2s"]) == b"NOOP\r\n"
    s._pass("c2s", ISN_C + 1 + s.sent["c2s"], ISN_S + 1, ACK | FIN, b"")
    assert bytes(s.got["c2s"]) == b"NOOP\r\nPORT 10,0"


def test_reply_direction_paired_through_source_nat():
    """Before conntrack, the server's replies are addressed to the NAT's outside address: the
    tracker pairs them with the client's commands by the ports."""
    events, kernel = Events(), Kernel()
    alg = AlgEngine("nat-c", OUTSIDE, [21], events, mappings(events, kernel))
    syn = segment(CLIENT, 40000, SERVER, 21, ISN_C, 0, SYN)
    synack = segment(SERVER, 21, OUTSIDE, 40000, ISN_S, ISN_C + 1, SYN | ACK)
    alg.process(syn, from_outside=False)
    alg.process(synack, from_outside=True)
    (conn,) = alg.tracker.conns.values()
    assert conn.halves["s2c"].base == ISN_S + 1
    alg.process(segment(CLIENT, 40000, SERVER, 21, ISN_C + 1, ISN_S + 1, ACK | PSH, PORT), from_outside=False)
    ack = alg.process(segment(SERVER, 21, OUTSIDE, 40000, ISN_S + 1, ISN_C + 1 + len(PORT_OUT), ACK),
                      from_outside=True)
    assert ack.packet is None          # the first pass leaves the ACK as the server sent it (conntrack sees it so)
    second = alg.translate_acks(segment(SERVER, 21, CLIENT, 40000, ISN_S + 1, ISN_C + 1 + len(PORT_OUT), ACK))
    assert parse(second).ack == ISN_C + 1 + len(PORT)   # after de-NAT, in the client's own numbering


def test_rewrite_never_grows_a_segment_past_the_mtu():
    s = Session(server=CLIENT, client=SERVER)
    reply = b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n"           # grows by 3 bytes
    filler = b"211-" + b"x" * (1460 - len(reply) - 4 - 2) + b"\r\n"
    full = reply + filler                                                # 1460 bytes: IP packet 1500
    (out,) = s.send("s2c", full)
    assert len(out.raw) <= 1500 and out.payload.startswith(b"227 Entering Passive Mode (203,0,113,1,")
    s.send("s2c", full[len(out.payload) - 3:], at=len(out.payload) - 3)   # TCP resends the rest
    assert bytes(s.got["s2c"]) == reply.replace(b"10,0,1,2", b"203,0,113,1") + filler


# -- direction from the SYN (issue 10, item 1) --------------------------------------------------

@pytest.mark.parametrize("cport", [990, 21])
def test_slipstream_from_a_control_port_opens_nothing(cport):
    """The server (inside) echoes the client's argument with a CR turned into a line of its own:
    `PORT <server>,0,22` at the start of a line, in the server's reply. A client connecting FROM
    port 990 or 21 made the ALG read that reply as a client command and map public:1024 to the
    server's port 22. The client is who sent the SYN: the line is the server's text."""
    s = Session(server=CLIENT, client=SERVER, cport=cport)        # the server is the inside host
    s.send("s2c", b"220 hi\r\n")
    s.send("c2s", b"SIZE a\rPORT 10,0,1,2,0,22\rb\r\n")
    echo = b"550-a\r\nPORT 10,0,1,2,0,22\r\n550 b: no such file.\r\n"
    s.send("s2c", echo)
    assert s.kernel.commands == [] and not s.events.of("rewrite")
    assert bytes(s.got["s2c"]) == b"220 hi\r\n" + echo
    assert [e["message"] for e in s.events.of("ignored")] == [
        "PORT sent by the server: not its announcement; not rewritten, nothing opened"]
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")    # the real thing still works
    assert [e["public"] for e in s.events.of("mapping-open")] == [f"{OUTSIDE}:60000"]


def test_connection_opened_before_the_alg_is_passed_untouched():
    """No SYN seen, no direction known: nothing is read, rewritten or opened."""
    events, kernel = Events(), Kernel()
    alg = AlgEngine("nat-c", OUTSIDE, [21, 990], events, mappings(events, kernel))
    for seg in (segment(CLIENT, 40000, SERVER, 21, 100, 7, ACK | PSH, PORT),
                segment(SERVER, 21, CLIENT, 40000, 7, 100 + len(PORT), ACK | PSH, b"200 ok\r\n")):
        assert alg.process(seg, from_outside=seg.src == SERVER).packet is None
    assert kernel.commands == [] and events.log == [] and alg.tracker.conns == {}


# -- mapping lifetime and single use --------------------------------------------------------------

def test_mapping_removed_after_first_use():
    s = Session(server=CLIENT, client=SERVER)
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")
    s.mappings.poll()
    assert list(s.mappings.active) == [60000] and s.kernel.waiting and len(s.kernel.dest) == 1     # unused: stays
    s.kernel.hit(60000)                       # the data connection's SYN was DNATed by it
    s.mappings.poll()
    assert s.mappings.active == {} and not s.kernel.waiting and s.kernel.dest == {}
    assert [e["public"] for e in s.events.of("mapping-used")] == [f"{OUTSIDE}:60000"]


def test_mapping_expires_after_its_lifetime():
    now = [1000.0]
    s = Session(server=CLIENT, client=SERVER, clock=lambda: now[0])
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")
    now[0] += s.mappings.lifetime - 1
    s.mappings.poll()
    assert list(s.mappings.active) == [60000]
    now[0] += 2
    s.mappings.poll()
    assert s.mappings.active == {} and not s.kernel.waiting and s.kernel.dest == {}
    assert [e["public"] for e in s.events.of("mapping-expired")] == [f"{OUTSIDE}:60000"]
    assert not s.events.of("mapping-used")


def test_replaced_mapping_rule_is_deleted():
    """One outstanding mapping per control connection: a second 227 retires the first's rule."""
    s = Session(server=CLIENT, client=SERVER)
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,97)\r\n")
    s.mappings.poll()
    assert list(s.mappings.active) == [60001] and list(s.kernel.dest) == [f"{SERVER} . {OUTSIDE} . 60001"]
    assert s.kernel.waiting == {f"{SERVER} . {OUTSIDE} . 60001"}


def test_replacing_a_mapping_under_the_same_key_installs_the_new_target():
    """A second 227 of one connection with the same public port but another inside port: the map
    points at the new target (an `add element` on an existing key would keep the old one)."""
    s = Session(server=CLIENT, client=SERVER)
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")
    s.mappings.kernel.install(Mapping(SERVER, 60000, CLIENT, 60009, 0.0, owner="x"), OUTSIDE, 30.0)
    assert s.kernel.dest == {f"{SERVER} . {OUTSIDE} . 60000": f"{CLIENT} . 60009"}
    assert s.kernel.waiting == {f"{SERVER} . {OUTSIDE} . 60000"}


def test_mapping_open_says_how_long_the_installation_took():
    s = Session(server=CLIENT, client=SERVER)
    s.send("s2c", b"227 Entering Passive Mode (10,0,1,2,234,96)\r\n")
    (opened,) = s.events.of("mapping-open")
    assert 0 <= opened["install_ms"] < 1000


def test_iptables_reference_way_inserts_a_dnat_rule_and_reads_its_counter():
    ran: list[list[str]] = []

    def run(argv: list[str], input: str | None = None) -> str:
        ran.append(argv)
        return ("-A ALG-MAP -s 198.51.100.2/32 -d 203.0.113.1/32 -p tcp -m tcp --dport 60000 -c 0 0 -j DNAT\n"
                "-A ALG-MAP -s 198.51.100.2/32 -d 203.0.113.1/32 -p tcp -m tcp --dport 60001 -c 3 180 -j DNAT\n")
    maps = IptablesMaps(run=run)
    maps.install(Mapping(SERVER, 60000, CLIENT, 60000, 0.0), OUTSIDE)
    assert ran[-1] == ["iptables", "-t", "nat", "-I", "ALG-MAP", "-s", SERVER, "-d", OUTSIDE, "-p", "tcp", "-m",
                       "tcp", "--dport", "60000", "-j", "DNAT", "--to-destination", f"{CLIENT}:60000"]
    assert maps.waiting(OUTSIDE) == {60000}          # 60001 counted a packet: used
