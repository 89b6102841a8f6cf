"""The model the path walk asks is the device's runtime: the same announcements, fed as segments.

For each case one control connection carries announcements (PORT, EPRT, 227, 229; naming their
sender or someone else; ports below 1024; a second announcement on the same connection; a second
control connection wanting the same port) and then new connections knock (a second connection
through one pinhole, one after the pinhole's lifetime). Two sides answer:

- the runtime as its process runs it: a DynamicFilter / AlgEngine fed segments built with scapy
  (window scaling, timestamps, the side of the router each came from, other sequence numbers),
  with the kernel side of the ALG's mappings as tests/unit/test_alg_rewrite.py fakes it;
- the model, exactly as the path walk (lab/matrix/pathwalk.py) reaches it: the device's model from
  the engine's registry (lab.topology.devices), its runtime(), watch() and admit() / mappings(),
  the announcement written by lab.devkit.inspection.announcement_line.

They must agree on every case, and on the outcome written here, so that a change on either side
only (the process's feeding, the model's replay, the walk's glue, or a re-stated model) fails.
The last tests walk whole cells: the prediction follows the port the ALG really allocates.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from test_alg_rewrite import Events, Kernel

from firewall.dynamic import NO_PINHOLE, USED, DynamicFilter
from firewall.section import Firewall
from lab import TOPOLOGY_DIR
from lab.devkit.ctrlstream import Receipt
from lab.devkit.device import MANGLE_PREROUTING, NAT_PREROUTING, At, Control
from lab.devkit.inspection import announcement_line
from lab.devkit.tcpseg import ACK, PSH, SYN, parse
from lab.devkit.types import Flow
from lab.matrix.pathwalk import Learned, Net, Packet, announce, cross
from lab.topology import devices, loader
from nat.alg import AlgEngine, Mappings, NftMaps
from nat.section import Nat, StaticNat

CLIENT, SERVER, THIRD = "198.51.100.10", "203.0.113.10", "192.0.2.99"
INSIDE, OUTSIDE, OUTSIDE6 = "10.0.1.2", "203.0.113.1", "2001:db8:1::1"
INSIDE6, SERVER6 = "fd00:1::2", "2001:db8:2::10"
LIFETIME = 30.0


def packet(src, sport, dst, dport, seq, ack, flags, payload=b"", options=()):
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return parse(bytes(ip / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=502,
                                options=list(options)) / payload))


class Process:
    """One control connection client:cport -> server:21 as the device's process receives it."""

    ISN_C, ISN_S = 0xFFFFFF00, 77000          # the client's numbers wrap during the session

    def __init__(self, feed, client, server, cport=40000, seen=None):
        self.feed, self.client, self.server, self.cport = feed, client, server, cport
        self.seen = seen or (server, client)        # the server's packets as they reach the device
        self.c, self.s, self.ts = (self.ISN_C + 1) & 0xFFFFFFFF, self.ISN_S + 1, 500
        self.fwd_c = self.fwd_s = 0                   # bytes forwarded each way (after a rewrite)
        assert self._send(True, self.ISN_C, 0, SYN, b"", [("MSS", 1460), ("WScale", 7), ("Timestamp", (1, 0))])
        assert self._send(False, self.ISN_S, self.c, SYN | ACK, b"", [("MSS", 1460), ("WScale", 7),
                                                                      ("Timestamp", (2, 1))])
        assert self._send(True, self.c, self.s, ACK, b"")

    def _send(self, c2s, seq, ack, flags, data, options=None):
        self.ts += 1
        opts = options if options is not None else [("NOP", None), ("NOP", None), ("Timestamp", (self.ts, self.ts))]
        if c2s:
            seg = packet(self.client, self.cport, self.server, 21, seq, ack, flags, data, opts)
        else:
            seg = packet(self.seen[0], 21, self.seen[1], self.cport, seq, ack, flags, data, opts)
        return self.feed(seg, c2s)

    def says(self, c2s: bool, line: bytes) -> bytes | None:
        """The line sent by the client (c2s) or the server; the bytes as the device forwards them.
        Each side sends in its own numbering and acknowledges what it received, as forwarded."""
        mask = 0xFFFFFFFF
        if c2s:
            out = self._send(True, self.c, (self.ISN_S + 1 + self.fwd_s) & mask, ACK | PSH, line)
            self.c = (self.c + len(line)) & mask
            self.fwd_c += len(out.payload) if out else 0
            self._send(False, self.s, (self.ISN_C + 1 + self.fwd_c) & mask, ACK, b"")
        else:
            out = self._send(False, self.s, (self.ISN_C + 1 + self.fwd_c) & mask, ACK | PSH, line)
            self.s += len(line)
            self.fwd_s += len(out.payload) if out else 0
            self._send(True, self.c, (self.ISN_S + 1 + self.fwd_s) & mask, ACK, b"")
        return None if out is None else out.payload


# -- the dynamic filter ---------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def dynamic_runtime(lines, knocks, client=CLIENT, server=SERVER):
    """The filter's process: its opened pinholes and its verdict on each knock."""
    clock = Clock()
    fw = DynamicFilter("fw", [21, 990], Events(), lifetime=LIFETIME, clock=clock)
    side = {True: Receipt(side=(2, b"\x02\0\0\0\0\x01")), False: Receipt(side=(3, b"\x02\0\0\0\0\x02"))}
    conn = Process(lambda seg, c2s: seg if fw.control(seg, side[c2s]) else None, client, server)
    for c2s, line in lines:
        conn.says(c2s, line)
    verdicts = []
    for at, src, sport, dst, dport in knocks:
        clock.now = at
        verdicts.append(fw.admit(packet(src, sport, dst, dport, 123456, 0, SYN, options=[("MSS", 1460)])))
    return sorted(fw.pinholes), verdicts


def dynamic_model(lines, knocks, client=CLIENT, server=SERVER):
    """What the path walk asks: the registry's model, its runtime, the replayed connection."""
    model = devices.model("dynamic")
    fw = model.runtime((21, 990), lifetime=LIFETIME)
    conn = model.watch(fw, (client, 40000, server, 21))
    for c2s, line in lines:
        conn.line(c2s, line)
    verdicts = []
    for at, src, sport, dst, dport in knocks:
        fw.clock.now = at
        verdicts.append(model.admit(fw, src, sport, dst, dport))
    return sorted(fw.pinholes), verdicts


def ann(kind, host, port):
    return announcement_line(kind, host, port)


DYNAMIC_CASES = {
    # name: (lines (c2s, line), knocks (time, src, sport, dst, dport), pinholes, verdicts)
    "227 naming the server; a second connection through the pinhole": (
        [(False, ann("227", SERVER, 60000))],
        [(0, CLIENT, 41000, SERVER, 60000), (0, CLIENT, 41000, SERVER, 60000), (1, CLIENT, 41001, SERVER, 60000)],
        [(CLIENT, SERVER, 60000)], [None, None, USED]),
    "229 (no address)": (
        [(False, ann("229", None, 60010))], [(0, CLIENT, 41000, SERVER, 60010), (0, THIRD, 41000, SERVER, 60010)],
        [(CLIENT, SERVER, 60010)], [None, NO_PINHOLE]),
    "227 naming a third host": (
        [(False, ann("227", THIRD, 60000))], [(0, CLIENT, 41000, THIRD, 60000)], [], [NO_PINHOLE]),
    "PORT naming the client, a port below 1024": (
        [(True, ann("PORT", CLIENT, 1000))], [(0, SERVER, 20, CLIENT, 1000)], [(SERVER, CLIENT, 1000)], [None]),
    "EPRT naming the client": (
        [(True, ann("EPRT", CLIENT, 50000))], [(0, SERVER, 20, CLIENT, 50000)], [(SERVER, CLIENT, 50000)], [None]),
    "PORT naming a third host": (
        [(True, ann("PORT", THIRD, 50000))], [(0, SERVER, 20, THIRD, 50000)], [], [NO_PINHOLE]),
    "a second announcement retires the first pinhole": (
        [(False, ann("227", SERVER, 60000)), (False, ann("227", SERVER, 60001))],
        [(0, CLIENT, 41000, SERVER, 60000), (0, CLIENT, 41000, SERVER, 60001)],
        [(CLIENT, SERVER, 60001)], [NO_PINHOLE, None]),
    "the pinhole expires after its lifetime": (
        [(False, ann("229", None, 60000))], [(LIFETIME + 1, CLIENT, 41000, SERVER, 60000)],
        [(CLIENT, SERVER, 60000)], [NO_PINHOLE]),
    "within its lifetime": (
        [(False, ann("229", None, 60000))], [(LIFETIME, CLIENT, 41000, SERVER, 60000)],
        [(CLIENT, SERVER, 60000)], [None]),
    "a 227 from the client's side is no reply": (
        [(True, ann("227", CLIENT, 60000))], [(0, SERVER, 20, CLIENT, 60000)], [], [NO_PINHOLE]),
}


@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_the_dynamic_filters_model_is_its_runtime(name):
    lines, knocks, holes, verdicts = DYNAMIC_CASES[name]
    runtime = dynamic_runtime(lines, knocks)
    model = dynamic_model(lines, knocks)
    assert model == runtime
    assert [(h[0], h[1], h[2]) for h in runtime[0]] == holes and runtime[1] == verdicts


@pytest.mark.parametrize("name", DYNAMIC_CASES)
def test_the_walks_hook_interface_gives_the_runtimes_verdicts(name):
    """The same cases through at_announcement / at_hook, as pathwalk calls them per router."""
    lines, knocks, holes, verdicts = DYNAMIC_CASES[name]
    model = devices.model("dynamic")
    at = At("fw", Firewall(mode="dynamic", pinhole_lifetime=LIFETIME), (21, 990))
    state: dict = {}
    control = Control((CLIENT, 40000, SERVER, 21), (SERVER, 21, CLIENT, 40000))
    for c2s, line in lines:
        assert model.at_announcement(state, at, control, c2s, line, "plain", "data").line == line
    got = []
    for when, src, sport, dst, dport in knocks:
        state["dynamic"].clock.now = when
        decision = model.at_hook(MANGLE_PREROUTING, Flow("tcp", src, dst, dport, sport), state, at)
        got.append(None if decision.verdict == "accept" else decision.why.format(node="fw", pkt="P"))
    assert got == [None if v is None else
                   f"fw (dynamic filter) drops it: {'no pinhole' if v == NO_PINHOLE else v} for P" for v in verdicts]
    assert model.at_hook(MANGLE_PREROUTING, Flow("tcp", CLIENT, SERVER, 21, 40001), state, at).verdict == "continue"


def test_a_forgotten_control_connection_is_named_as_the_runtime_names_it():
    """The kernel forgot the control connection (idle timeout): the server's 226 reaches queue 21."""
    fw = DynamicFilter("fw", [21, 990], Events(), idle_timeout=2, clock=Clock())
    Process(lambda seg, c2s: seg if fw.control(seg) else None, CLIENT, SERVER)
    runtime = fw.admit(packet(SERVER, 21, CLIENT, 40000, 123, 456, ACK | PSH, b"226 Closing data connection\r\n"))
    model = devices.model("dynamic")
    at = At("fw", Firewall(mode="dynamic", idle_timeout=2), (21, 990))
    said = model.forgotten({}, at, Control((CLIENT, 40000, SERVER, 21), (SERVER, 21, CLIENT, 40000)))
    assert said == runtime and said.startswith(f"control connection {CLIENT}:40000 -> {SERVER}:21 expired: idle "
                                               "longer than the idle timeout (2 s)")


def test_the_dynamic_filters_model_is_its_runtime_over_ipv6():
    client6 = "2001:db8:3::10"
    case = [(True, ann("EPRT", client6, 50000))], [(0, SERVER6, 20, client6, 50000), (0, SERVER6, 21, client6, 50000)]
    runtime = dynamic_runtime(*case, client=client6, server=SERVER6)
    assert dynamic_model(*case, client=client6, server=SERVER6) == runtime
    assert runtime == ([(SERVER6, client6, 50000)], [None, USED])


# -- the scapy ALG ------------------------------------------------------------------------------------

ONE_TO_ONE = {"10.0.1.7": "203.0.113.7"}


def alg_runtime(connections):
    """The ALG's process (its kernel faked as in test_alg_rewrite): each line as it leaves, and the
    mappings waiting for their connection."""
    events, kernel, kernel6 = Events(), Kernel(), Kernel()
    maps = Mappings(OUTSIDE, events, kernel=NftMaps(nft=kernel, sets=kernel))
    maps6 = Mappings(OUTSIDE6, events, kernel=NftMaps(nft=kernel6, sets=kernel6, family="ip6"))
    engine = AlgEngine("nat", OUTSIDE, [21, 990], events, maps, one_to_one=ONE_TO_ONE, v6=(OUTSIDE6, maps6))
    out = []
    for (client, server, cport, inside_client), lines in connections:
        def feed(seg, c2s, inside_client=inside_client):
            outside = not c2s if inside_client else c2s
            side = Receipt(side=(2 if outside else 3, None))
            verdict = engine.process(seg, from_outside=outside, receipt=side)
            return None if verdict.action == "drop" else (seg if verdict.packet is None else parse(verdict.packet))
        seen = (server, OUTSIDE if ":" not in client else OUTSIDE6) if inside_client else None
        conn = Process(feed, client, server, cport, seen)
        out += [conn.says(c2s, line) for c2s, line in lines]
    mapped = sorted((m.peer, mp.outside, m.public_port, m.host, m.port) for mp in (maps, maps6)
                    for m in mp.active.values())
    return out, mapped


def alg_model(connections):
    """What the path walk asks: the registry's ALG inspector, its runtime, the replayed connections."""
    model = devices.nat_inspector("scapy")
    engine = model.runtime(OUTSIDE, (21, 990), one_to_one=ONE_TO_ONE, outside6=OUTSIDE6)
    out = []
    for (client, server, cport, inside_client), lines in connections:
        back = (server, 21, OUTSIDE if ":" not in client else OUTSIDE6, cport) if inside_client else None
        conn = model.watch(engine, (client, cport, server, 21), back,
                           (False, True) if inside_client else (True, False))
        out += [conn.line(c2s, line) for c2s, line in lines]
    return out, sorted(model.mappings(engine))


INSIDE_CLIENT = (INSIDE, SERVER, 40000, True)          # the client behind the NAT
INSIDE_SERVER = (CLIENT, INSIDE, 40000, False)          # the server behind it (a forward)

ALG_CASES = {
    # name: (connections [(conn, [(c2s, line)])], lines out, mappings)
    "PORT naming the client": (
        [(INSIDE_CLIENT, [(True, ann("PORT", INSIDE, 50000))])],
        [ann("PORT", OUTSIDE, 50000)], [(SERVER, OUTSIDE, 50000, INSIDE, 50000)]),
    "PORT with a port below 1024 moves to the next free one": (
        [(INSIDE_CLIENT, [(True, ann("PORT", INSIDE, 1000))])],
        [ann("PORT", OUTSIDE, 1024)], [(SERVER, OUTSIDE, 1024, INSIDE, 1000)]),
    "EPRT naming the client": (
        [(INSIDE_CLIENT, [(True, ann("EPRT", INSIDE, 50000))])],
        [ann("EPRT", OUTSIDE, 50000)], [(SERVER, OUTSIDE, 50000, INSIDE, 50000)]),
    "EPRT over IPv6 (NAT66)": (
        [((INSIDE6, SERVER6, 40000, True), [(True, ann("EPRT", INSIDE6, 50000))])],
        [ann("EPRT", OUTSIDE6, 50000)], [(SERVER6, OUTSIDE6, 50000, INSIDE6, 50000)]),
    "PORT naming a third host": (
        [(INSIDE_CLIENT, [(True, ann("PORT", "10.0.1.99", 50000))])], [ann("PORT", "10.0.1.99", 50000)], []),
    "227 from the server inside": (
        [(INSIDE_SERVER, [(False, ann("227", INSIDE, 60000))])],
        [ann("227", OUTSIDE, 60000)], [(CLIENT, OUTSIDE, 60000, INSIDE, 60000)]),
    "229 keeps its port": (
        [(INSIDE_SERVER, [(False, ann("229", None, 60000))])],
        [ann("229", None, 60000)], [(CLIENT, OUTSIDE, 60000, INSIDE, 60000)]),
    "229 with a port below 1024 is rewritten": (
        [(INSIDE_SERVER, [(False, ann("229", None, 990))])],
        [ann("229", None, 1024)], [(CLIENT, OUTSIDE, 1024, INSIDE, 990)]),
    "an announcement from outside is left alone": (
        [(INSIDE_CLIENT, [(False, ann("227", SERVER, 60000))])], [ann("227", SERVER, 60000)], []),
    "a 1:1 host needs no mapping": (
        [(("10.0.1.7", SERVER, 40000, True), [(True, ann("PORT", "10.0.1.7", 50000))])],
        [ann("PORT", "203.0.113.7", 50000)], []),
    "a second announcement on the connection retires the first mapping": (
        [(INSIDE_CLIENT, [(True, ann("PORT", INSIDE, 50000)), (True, ann("PORT", INSIDE, 50001))])],
        [ann("PORT", OUTSIDE, 50000), ann("PORT", OUTSIDE, 50001)], [(SERVER, OUTSIDE, 50001, INSIDE, 50001)]),
    "a port another connection holds moves to the next free one": (
        [(INSIDE_CLIENT, [(True, ann("PORT", INSIDE, 50000))]),
         (("10.0.1.3", SERVER, 40001, True), [(True, ann("PORT", "10.0.1.3", 50000))])],
        [ann("PORT", OUTSIDE, 50000), ann("PORT", OUTSIDE, 50001)],
        [(SERVER, OUTSIDE, 50000, INSIDE, 50000), (SERVER, OUTSIDE, 50001, "10.0.1.3", 50000)]),
}


@pytest.mark.parametrize("name", ALG_CASES)
def test_the_algs_model_is_its_runtime(name):
    connections, lines, mapped = ALG_CASES[name]
    runtime = alg_runtime(connections)
    assert alg_model(connections) == runtime
    assert runtime == (lines, mapped)


@pytest.mark.parametrize("name", ALG_CASES)
def test_the_walks_hook_interface_gives_the_algs_rewrites_and_mappings(name):
    """The same cases through at_announcement / at_hook, as pathwalk calls them per router; each
    mapping then DNATs its peer's connection once (single use, as the kernel's rule)."""
    connections, lines, mapped = ALG_CASES[name]
    model = devices.nat_inspector("scapy")
    section = Nat(outside="eth0", masquerade=True, one_to_one=[StaticNat(public=ip_address(v), to=ip_address(k))
                                               for k, v in ONE_TO_ONE.items()])
    at = At("nat", section, (21, 990), outside=(OUTSIDE, OUTSIDE6))
    state: dict = {}
    out = []
    for (client, server, cport, inside_client), said in connections:
        back = (server, 21, OUTSIDE if ":" not in client else OUTSIDE6, cport) if inside_client else \
            (server, 21, client, cport)
        control = Control((client, cport, server, 21), back, *(("eth1", "eth0") if inside_client else ("eth0", "eth1")))
        out += [model.at_announcement(state, at, control, c2s, line, "plain", "data").line for c2s, line in said]
    assert (out, sorted(model.mappings(state["alg"]))) == (lines, mapped)
    for peer, public, public_port, host, port in mapped:
        flow = Flow("tcp", ip_address(peer), ip_address(public), public_port, 20)
        decision = model.at_hook(NAT_PREROUTING, flow, state, at)
        assert (decision.verdict, decision.to) == ("translate", (host, port))
        assert model.at_hook(NAT_PREROUTING, flow, state, at).verdict == "continue"     # used: gone
    assert model.mappings(state["alg"]) == []


# -- whole cells: the walk follows the port the ALG allocates -------------------------------------------

def test_the_walk_maps_the_port_the_alg_allocates_not_the_announced_one():
    topo = loader.load(TOPOLOGY_DIR / "server-nat.yaml")
    net = Net(topo)
    ftp = topo.ftp
    ctrl = cross(net, ftp.client, Packet(None, ftp.server_address, 40000, 21), {})
    learned: dict[str, Learned] = {}
    host, port, shown, notes = announce(net, ctrl.hops, False, ctrl.last.dst, 1000, learned, "plain", "data",
                                        "1000", "227")
    assert (port, shown) == (1024, "1024") and any("rewrites it to 203.0.113.1:1024" in n for n in notes)
    conn = cross(net, ftp.client, Packet(None, host, 41000, port), learned)
    assert conn.at == ftp.server and conn.last.dport == 1000
