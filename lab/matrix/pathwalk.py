"""Prediction by walking the path: every device on the way judges each connection by its own model.

For one cell (security mode, data method) on one topology the walk follows, hop by hop through
the routing tables (lab.topology.routing.next_hop), what the kernels would do:

1. the control connection, client → server_address:21 (or the implicit port): at each router the
   internet's private-destination drop, the dynamic filter (control ports always open), DNAT (the
   NAT's port forwards), the router's own address (INPUT: the NAT's unsolicited-inbound drop), the
   FORWARD chain (a kernel helper's RELATED accept, a user's ruleset, the NAT's drop, the static
   filter or nftables ruleset), masquerade. A drop here fails the cell at `connect`;
2. the ends' FTP-level refusals (lab.matrix.ends: both ends' FTP.DATA statements and profiles);
3. the data connection's announcement (227/229 from the server, PORT/EPRT from the client) along
   the control path, in the direction it travels: at each router the scapy ALG (raw PREROUTING:
   rewrites a line naming its inside sender and installs a DNAT mapping), the dynamic filter
   (mangle: opens a pinhole), the kernel helper (conntrack: rewrites, and expects the connection
   as RELATED) - each only if its model can read the line (cleartext; the kernel helper's blind
   spot after CCC) and the line names its sender. Addresses are tracked hop by hop, so two NATs
   in series with different ALG modes each see what the other left;
4. the data connection itself from whoever connects, through the same steps as 1, now with the
   mappings, pinholes and expectations learned in 3; it must arrive at the listener.

A device whose model answers at the hooks itself (lab.devkit.device.HookModel: `at_hook`,
`at_announcement`; so far the dynamic filter) is asked through that interface and nothing of it is
written here; the others are still judged inline below (issue 19 item 1).

The first obstacle decides: outcome, stage and the node that decides (the one whose drop the
lab observes; None when nothing is observed: a reset, no route, an end's own refusal).

Ports: the server's passive port (its PASSIVEDATAPORTS, else an ephemeral one) and the client's
ephemeral ports are not known in advance; the walk runs once per stretch of ports on which no
device's rules change (the stretches' edges are every port range the devices name) and weighs
each outcome by its share of the ports. When one outcome holds for at least CERTAIN of them it
is the prediction (the reason says how many); otherwise the cell is "unknown". A device whose
model cannot read what decides (a ruleset line outside the documented subset) makes the cell
"unknown" too, naming the file and line: "cannot predict: fw.rules:12 uses -m limit".
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.devkit.conntrack import forgets
from lab.devkit.device import MANGLE_PREROUTING, NAT_PREROUTING, At, Control
from lab.devkit.inspection import announcement_line, names_sender, read_announcement
from lab.devkit.types import Flow, PortRange, Unreadable
from lab.matrix import ends as ends_mod
from lab.matrix.ends import Ends, Refusal
from lab.topology import devices
from lab.topology.loader import is_private
from lab.topology.model import Node, Topology
from lab.topology.routing import next_hop, source_on

#: Linux's default ip_local_port_range: a client's source and listening ports, an unbound listener's
EPHEMERAL = PortRange(32768, 60999)
#: the share of the ports above which one outcome is the prediction
CERTAIN = 0.99
ANNOUNCEMENT = {"pasv": "227 reply", "epsv": "229 reply", "port": "PORT command", "eprt": "EPRT command"}


@dataclass(frozen=True)
class Prediction:
    outcome: str                # pass | fail | unknown
    stage: str | None           # the stage expected to fail (connect, login, data-connect, ...); None on pass
    reason: str                 # one line: why
    device: str | None = None   # the node that decides (its drop, or the server's refusal); None: nothing observed

    @property
    def key(self) -> tuple:
        return self.outcome, self.stage, self.device


# -- packets and what the routers learn --------------------------------------------------------------

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Packet:
    src: Address | None
    dst: Address
    sport: int | None
    dport: int
    proto: str = "tcp"
    #: how the ports read in a reason: the stretch of ports the walk's sample stands for
    shown: tuple[str, str] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        sport, dport = self.shown or (self.sport, self.dport)
        return f"{self.src}:{sport if sport is not None else '*'} -> {self.dst}:{dport}"

    @property
    def target(self) -> str:
        """dst:dport as a reason writes it."""
        return f"{self.dst}:{self.shown[1] if self.shown else self.dport}"

    def to(self, dst, dport: int) -> Packet:
        """Translated to dst:dport (the ports as shown stay only while the port is the same)."""
        return replace(self, dst=dst, dport=dport, shown=self.shown if dport == self.dport else None)


@dataclass(frozen=True)
class Hop:
    """A router the control connection crosses: where it came in and left, as it arrived and left."""
    node: str
    in_if: str | None
    out_if: str
    arrive: Packet
    leave: Packet


@dataclass
class Learned:
    """What a router learned from the control channel for this cell's data connection."""
    expects: set[tuple] = field(default_factory=set)    # kernel helper: (src, dst, port) -> (host, port)
    #: the runtimes of the devices that decide in Python (the dynamic filter, the scapy ALG), by
    #: device name: their own objects, fed the control connection (their models' runtime())
    runtimes: dict[object, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """A connection that does not arrive: the node that decides (None: nothing observed) and why."""
    device: str | None
    reason: str


@dataclass
class Crossing:
    hops: list[Hop]
    first: Packet                               # as it left its first node
    last: Packet                                # as it arrived
    at: str                                     # the node it arrived at
    notes: list[str] = field(default_factory=list)


class Net:
    """The topology with one cell's ALG override, as the walk asks about it."""

    def __init__(self, topology: Topology, alg: str | None = None):
        self.topology = topology
        self.alg = alg

    def sections(self, node: Node) -> tuple:
        found = devices.sections(node, self.alg)
        return found["nat"], found["firewall"]

    def outside(self, node: Node, version: int = 4):
        """The NAT's outside address of IP `version` (NAT66: its IPv6 one)."""
        nat = self.sections(node)[0]
        intf = next(i for i in node.interfaces if i.name == nat.outside)
        return source_on(intf, ipaddress.ip_address("::" if version == 6 else "0.0.0.0"))

    def control_ports(self, node: Node) -> tuple[int, ...]:
        return devices.control_ports(node, self.topology)

    def owns(self, node: Node, address) -> bool:
        """One of the node's interface addresses, or a public address its NAT holds (1:1, forwards)."""
        nat = self.sections(node)[0]
        return any(a.ip == address for i in node.interfaces for a in i.addresses) or \
            bool(nat is not None and address in nat.public_addresses())


# -- one connection across the routers ---------------------------------------------------------------

def cross(net: Net, start: str, pkt: Packet, learned: dict[str, Learned], max_hops: int = 64) -> Crossing | Stop:
    """A new connection from node `start` to pkt.dst:pkt.dport, router by router, until it arrives
    at a host that owns the destination or something stops it. Raises Unreadable (with the node)."""
    topo = net.topology
    node = topo.nodes[start]
    hop = next_hop(node, pkt.dst)
    if hop is None:
        return Stop(None, f"{start} has no route to {pkt.dst}")
    if pkt.src is None:
        pkt = replace(pkt, src=source_on(hop[0], pkt.dst))
    result = Crossing([], pkt, pkt, start)
    for _ in range(max_hops):
        egress, _via = hop
        peer = topo.nodes[egress.peer]
        in_if = next((i.name for i in peer.interfaces if i.peer == node.name), None)
        node = peer
        got = _arrive(net, node, in_if, pkt, learned, result)
        if isinstance(got, Stop):
            return got
        if got is None:
            result.last, result.at = pkt, node.name
            return result
        pkt, hop = got
    return Stop(None, f"routing loop after {max_hops} hops")


def _arrive(net: Net, node: Node, in_if: str | None, pkt: Packet, learned: dict[str, Learned],
            result: Crossing) -> Stop | None | tuple[Packet, tuple]:
    """One node's handling of the connection's first packet: None (it is for this host), a Stop,
    or (the packet as it leaves, the next hop)."""
    topo = net.topology
    if node.kind == "host":
        if net.owns(node, pkt.dst):
            return None
        return Stop(None, f"{pkt.dst} is routed to host {node.name}, which does not forward")
    nat, fw = net.sections(node)
    st = learned.setdefault(node.name, Learned())
    arrive = pkt
    # mangle PREROUTING: the internet's private-destination drop, then the dynamic filter
    if node.name == topo.internet and is_private(pkt.dst):
        return Stop(node.name, f"{node.name} drops it: {pkt.dst} is a private address, not routed on the internet")
    stop = _at_hook(net, node, MANGLE_PREROUTING, pkt, in_if, st, result)
    if isinstance(stop, Stop):
        return stop
    # nat PREROUTING: the ALG's mappings (first in the chain), the helper's expectations, the forwards
    translated = related = False
    moved = _at_hook(net, node, NAT_PREROUTING, pkt, in_if, st, result)
    if isinstance(moved, Packet):
        pkt, translated = moved, True
    for src, dst, port, host, host_port in sorted(st.expects, key=str):
        if not translated and (src, dst, port) == (pkt.src, pkt.dst, pkt.dport):
            related = True
            if (host, host_port) != (pkt.dst, pkt.dport):
                pkt, translated = pkt.to(host, host_port), True
            result.notes.append(f"{node.name}'s kernel helper expected it (RELATED)"
                                + (f" and sends it on to {pkt.target}" if translated else ""))
            break
    if not translated and _ruleset_file(fw):
        # the file's own nat table (a Docker host's DNAT), in nat PREROUTING before the lab's rules
        got = _file_nat(node, fw, Flow(pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, in_if), "PREROUTING",
                        net)
        if got is not None and got.action in ("dnat", "redirect"):
            address, port = got.to
            if got.action == "redirect" or address is None:
                address = next((a.ip for i in node.interfaces if i.name == in_if for a in i.addresses
                                if a.ip.version == pkt.dst.version), pkt.dst)
            pkt, translated = pkt.to(address, port or pkt.dport), True
            result.notes.append(f"{node.name}'s nat table ({_ruleset_name(fw)}:{got.line}) sends it on to {pkt.target}")
    kernel_nat = devices.model("nat")
    if nat is not None and not translated:
        to = kernel_nat.forward(nat, net.outside(node, pkt.dst.version), in_if, pkt.proto, pkt.dst, pkt.dport)
        if to is not None:
            pkt, translated = pkt.to(to[0], to[1]), True
            result.notes.append(f"{node.name} forwards it to {pkt.target}")
    state = "RELATED" if related else "NEW"
    if net.owns(node, pkt.dst):
        return _local(net, node, nat, fw, in_if, pkt, state, translated)
    hop = next_hop(node, pkt.dst)
    if hop is None:
        return Stop(None, f"{node.name} has no route to {pkt.dst}")
    egress = hop[0]
    flow = Flow(pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, in_if, egress.name, state, translated)
    stop = _forward_chain(net, node, nat, fw, flow, result)
    if stop is not None:
        return stop
    leaves_as = kernel_nat.source(nat, egress.name, pkt.src, source_on(egress, pkt.dst)) if nat is not None else None
    if nat is not None and leaves_as is None and egress.of(pkt.src.version) is not None:
        leaves_as = kernel_nat.hairpin_source(nat, in_if, egress.name, translated, pkt.src,
                                              egress.of(pkt.src.version))
    if leaves_as is None and _ruleset_file(fw):
        got = _file_nat(node, fw, replace(flow, dst=pkt.dst, dport=pkt.dport), "POSTROUTING", net)
        if got is not None and got.action in ("snat", "masquerade"):
            leaves_as = (got.to[0] if got.action == "snat" and got.to and got.to[0] is not None
                         else source_on(egress, pkt.dst))
    if leaves_as is not None and leaves_as != pkt.src:
        pkt = replace(pkt, src=leaves_as)
        result.notes.append(f"{node.name} translates its source to {leaves_as}")
    result.hops.append(Hop(node.name, in_if, egress.name, arrive, pkt))
    return pkt, hop


def _local(net: Net, node: Node, nat, fw, in_if, pkt: Packet, state: str, translated: bool) -> Stop:
    """A connection to the router's own address (nothing of the lab listens on a router)."""
    flow = Flow(pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, in_if, None, state, translated)
    if fw is not None and fw.mode == "static" and fw.iptables_save is not None:
        action, where = _decide(node, fw, flow, "INPUT", net)
        if action in ("drop", "reject"):
            return _filter_stop(node, fw, action, where)
    if nat is not None and devices.model("nat").drops(nat, in_if, state, translated):
        return Stop(node.name, f"{node.name} drops it: an unsolicited inbound connection to its outside address "
                               f"{pkt.target} (no forward, no mapping)")
    if nat is not None and state == "NEW" and devices.model("nat").refuses_hairpin(
            nat, in_if, pkt.dst, net.outside(node, pkt.dst.version)):
        return Stop(node.name, f"{node.name} drops it: a connection from the inside to its public address "
                               f"{pkt.target}, and NAT loopback is off (`hairpin: true` turns it on)")
    return Stop(None, f"it reaches {node.name}'s own address {pkt.target}, where nothing listens")


def _forward_chain(net: Net, node: Node, nat, fw, flow: Flow, result: Crossing) -> Stop | None:
    """The router's filter FORWARD chain, in the order the lab programs it."""
    inspector = devices.nat_inspector(nat.alg) if nat is not None else None
    if inspector is not None and inspector.related and flow.state == "RELATED":
        return None                     # the kernel helper's `-I FORWARD 1 RELATED ACCEPT`
    decided = False
    if fw is not None and fw.mode == "static" and fw.iptables_save is not None:
        action, where = _decide(node, fw, flow, "FORWARD", net)       # the user's ruleset comes first
        limits = _static().notes(fw, flow, "FORWARD", _local_addresses(net, node))
        if action in ("drop", "reject"):
            return _filter_stop(node, fw, action, where, limits)
        if action == "accept":
            decided = True
            result.notes.append(f"{node.name}'s ruleset admits it ({_static().explain(fw, where)})")
        result.notes += [_limit_note(node, note) for note in limits]
    if not decided and nat is not None and devices.model("nat").drops(nat, flow.in_interface, flow.state, flow.dnat):
        return Stop(node.name, f"{node.name} drops it: an unsolicited inbound connection (NEW on its outside "
                               f"interface {flow.in_interface}, nothing forwarded or mapped it)")
    if decided or fw is None or fw.iptables_save is not None or \
            any(at.section is fw for _, at in _hook_models(net, node)):
        return None                 # a firewall whose model answers at the hooks itself (HookModel)
    if fw.mode == "static":
        action, where = _decide(node, fw, flow)
        if action in ("drop", "reject"):
            return _filter_stop(node, fw, action, where)
        if where is not None or flow.state == "NEW":
            result.notes.append(f"{node.name}'s static filter admits it ({_static().explain(fw, where)})")
        return None
    # another ruleset device (nftables): its model says accept | drop and the deciding line
    model = devices.model(fw.mode)
    local = _local_addresses(net, node)
    try:
        action, line = model(fw, flow, local)
        limits = model.notes(fw, flow, local) if hasattr(model, "notes") else []
    except Unreadable as exc:
        raise _Unpredictable(node.name, fw, exc) from None
    result.notes += [_limit_note(node, note) for note in limits]
    if action != "accept":
        verb = "rejects" if action == "reject" else "drops"
        return Stop(node.name, f"{node.name}'s ruleset {verb} it ({_ruleset_name(fw)}:{line}: "
                               f"{_line_text(fw, line)})" if line else
                    f"{node.name}'s ruleset {verb} it ({_ruleset_name(fw)}: the chain's policy)")
    return None


def _static():
    """The static filter's model (lab.topology.devices: the engine reaches devices only there)."""
    return devices.model("static")


def _decide(node: Node, fw, flow: Flow, hook: str = "FORWARD", net: Net | None = None) -> tuple[str, int | None]:
    try:
        return _static().decide(fw, flow, hook, _local_addresses(net, node) if net else None)
    except Unreadable as exc:
        raise _Unpredictable(node.name, fw, exc) from None


def _local_addresses(net: Net | None, node: Node) -> frozenset:
    """The router's own addresses (what -m addrtype --dst-type LOCAL matches)."""
    nat = net.sections(node)[0] if net is not None else node.nat
    own = {a.ip for i in node.interfaces for a in i.addresses}
    return frozenset(own | set(nat.public_addresses() if nat is not None else ()))


def _ruleset_file(fw) -> bool:
    """A firewall given as a ruleset file whose other tables (nat, raw) the model reads."""
    return fw is not None and fw.mode == "static" and fw.iptables_save is not None


def _file_nat(node: Node, fw, flow: Flow, hook: str, net: Net):
    try:
        return _static().nat(fw, flow, hook, _local_addresses(net, node))
    except Unreadable as exc:
        raise _Unpredictable(node.name, fw, exc) from None


LIMIT_NOTE = "judged for the first connections"


def _limit_note(node: Node, note: str) -> str:
    """A stateful match the decision met: when it trips, and what the matrix does to it."""
    return (f"{node.name}'s {note} ({LIMIT_NOTE}: the matrix opens one control connection per cell, "
            f"so the cells of one network run after the trip count meet it tripped)")


def _filter_stop(node: Node, fw, action: str, where: int | None, limits: list[str] | None = None) -> Stop:
    rule = _static().explain(fw, where)
    # a REJECT is a decision the lab observes (the file's REJECTs are logged to the drop observer)
    verb = "rejects" if action == "reject" else "drops"
    who = "ruleset" if fw.iptables_save is not None else "filter"
    extra = "".join(f"; {_limit_note(node, note)}" for note in limits or [])
    return Stop(node.name, f"{node.name}'s {who} {verb} it ({rule}){extra}")


def _line_text(fw, line: int) -> str:
    path = getattr(fw, "nftables", None)
    text = getattr(fw, "nftables_text", None)
    if not path or not text:
        return ""
    lines = text.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _ruleset_name(fw) -> str:
    path = fw.iptables_save or getattr(fw, "nftables", None)
    return Path(path).name if path else "ruleset"


def _named(model) -> str:
    """A device model's name without its article: "nat-c's scapy ALG"."""
    return model.name.removeprefix("the ")


class _Unpredictable(Exception):
    """A device's model met something it does not read on the way to its verdict."""

    def __init__(self, node: str, fw, exc: Unreadable):
        super().__init__(f"cannot predict: {_ruleset_name(fw)}:{exc.line} uses {exc.what} (on {node})")
        self.node = node


# -- the announcement ----------------------------------------------------------------------------------

#: the line each data method announces with (announce()'s `kind`)
KINDS = {"pasv": "227", "epsv": "229", "port": "PORT", "eprt": "EPRT"}


def announce(net: Net, hops: list[Hop], c2s: bool, host, port: int, learned: dict[str, Learned],
             security: str, first_after_ccc: str, shown: str, kind: str | None = None
             ) -> tuple[object, int, str, list[str]]:
    """The announcement (host None: a 229, no address; `kind` the line's verb or code: PORT, EPRT,
    227, 229) along the control path in the direction it travels; each router's inspectors act on
    it as their models say (`shown`: the port as a reason writes it). Where a device decides in
    Python (the scapy ALG, the dynamic filter) the line goes through its runtime, as real segments.
    Returns the host and port as they arrive, the port as a reason writes it, and what happened
    on the way."""
    notes: list[str] = []
    if kind is None:
        kind = ("EPRT" if host is not None and host.version == 6 else "PORT") if c2s else \
            ("229" if host is None or host.version == 6 else "227")
    line = announcement_line(kind, host, port)
    for hop in (hops if c2s else list(reversed(hops))):
        node = net.topology.nodes[hop.node]
        nat, fw = net.sections(node)
        st = learned.setdefault(node.name, Learned())
        if c2s:      # PORT/EPRT: client -> server
            sender = hop.arrive.src
            sender_known_as, peer_real = hop.leave.src, hop.leave.dst
        else:        # 227/229: the server's reply, server -> client
            sender = hop.leave.dst
            sender_known_as, peer_real = hop.arrive.dst, hop.arrive.src
        # the control connection as it reaches this router: the client's packets, and the server's
        forward = (hop.arrive.src, hop.arrive.sport, hop.arrive.dst, hop.arrive.dport)
        back = (hop.leave.dst, hop.leave.dport, hop.leave.src, hop.leave.sport)
        inspector = devices.nat_inspector(nat.alg) if nat is not None else None
        control = Control(forward, back, hop.in_if, hop.out_if)
        for model, at in _hook_models(net, node):          # in hook order: the scapy ALG, the dynamic filter
            got = model.at_announcement(st.runtimes, at, control, c2s, line, security, first_after_ccc)
            line, was = got.line, shown
            now = read_announcement(line)
            if now is not None and now[1] != port:
                port, shown = now[1], str(now[1])        # the port the device really allocated
            if got.said:
                notes.append(got.said.replace("{node}", node.name).replace("{port}", was))
            if now is not None and kind != "229":
                host = _host(now[0])
        attached = _ruleset_helper(net, node, fw, hop)
        if inspector is not None and inspector.related:
            host = _helper_reads(node, inspector, _named(inspector), host, sender, sender_known_as, peer_real, port,
                                 st, security, first_after_ccc, shown, notes)
        elif attached is not None:
            # the ruleset attaches the kernel FTP helper itself: the kernel helper device's own model
            helper = devices.nat_inspector("kernel")
            host = _helper_reads(node, helper, f"{_named(helper)} (attached by {attached})", host, sender,
                                 sender_known_as, peer_real, port, st, security, first_after_ccc, shown, notes)
        if kind != "229":
            line = announcement_line(kind, host, port)     # as a kernel helper left it
    return host, port, shown, notes


def _host(text):
    return None if text is None else ipaddress.ip_address(text)


def _hook_models(net: Net, node: Node) -> list[tuple[object, At]]:
    """The models on this router that answer at the hooks themselves (lab.devkit.device.HookModel),
    in hook order, each with where it is asked."""
    nat, fw = net.sections(node)
    late = nat is not None and nat.alg in ("kernel", "kernel-nft")      # as devices.setups() tells the device
    found = []
    for model, section in ((devices.nat_inspector(nat.alg) if nat is not None else None, nat),
                           (devices.model(fw.mode) if fw is not None else None, fw)):
        if model is None or not hasattr(model, "at_hook"):
            continue
        outside = (None, None)
        if section is nat:
            six = None
            try:
                six = net.outside(node, 6)
            except (StopIteration, ValueError):
                pass
            outside = (str(net.outside(node, 4)), str(six) if six is not None and six.version == 6 else None)
        found.append((model, At(node.name, section, net.control_ports(node), late_rewrite=late, outside=outside)))
    return found


def _at_hook(net: Net, node: Node, hook: str, pkt: Packet, in_if: str | None, st: Learned,
             result: Crossing) -> Stop | Packet | None:
    """The hook models' decisions on a connection's first packet at `hook`: a Stop, the packet as a
    model translated it, or None (nothing decided)."""
    for model, at in _hook_models(net, node):
        if hook not in model.hooks:
            continue
        got = model.at_hook(hook, Flow(pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, in_if), st.runtimes, at)
        if got.verdict in ("drop", "reject"):
            return Stop(node.name, got.why.format(node=node.name, pkt=pkt))
        if got.verdict == "translate":
            moved = pkt.to(ipaddress.ip_address(got.to[0]), got.to[1])
            result.notes.append(got.why.format(node=node.name, pkt=pkt, target=moved.target))
            return moved
        if got.verdict == "accept" and got.why:
            result.notes.append(got.why.format(node=node.name, pkt=pkt))
    return None


def _ruleset_helper(net: Net, node: Node, fw, hop: Hop) -> str | None:
    """"FILE:LINE" where the node's own ruleset attaches the kernel FTP helper to the control
    connection (iptables' raw `-j CT --helper ftp`, nft's `ct helper set`), or None."""
    if fw is None or fw.mode not in ("static", "nftables"):
        return None
    pkt = hop.arrive
    flow = Flow(pkt.proto, pkt.src, pkt.dst, pkt.dport, pkt.sport, hop.in_if, hop.out_if)
    model = _static() if fw.mode == "static" else devices.model("nftables")
    find = getattr(model, "helper", None)
    return find(fw, flow, _local_addresses(net, node)) if find is not None else None


def _helper_reads(node: Node, inspector, name: str, host, sender, sender_known_as, peer_real, port: int,
                  st: Learned, security: str, first_after_ccc: str, shown: str, notes: list[str]):
    """The kernel helper on the announcement: it expects the data connection (RELATED) and, when
    conntrack translated the sender, rewrites the address to the one the peer knows."""
    ok, why = inspector.reads(security, first_after_ccc)
    if not ok:
        notes.append(f"{node.name}'s {name} cannot read it ({why})")
    elif names_sender(host, sender):
        st.expects.add((peer_real, sender_known_as, port, sender, port))
        if host is not None and host != sender_known_as:
            notes.append(f"{node.name}'s {name} rewrites it to {sender_known_as}:{shown} and expects the connection")
        else:
            notes.append(f"{node.name}'s {name} reads it and expects the connection")
        host = sender_known_as if host is not None else None
    else:
        notes.append(f"{node.name}'s {name} leaves it alone: it names {host}, not its sender {sender}")
    return host


# -- one cell ------------------------------------------------------------------------------------------

def walk(topology: Topology, security: str, data: str, ends: Ends, alg: str | None = None,
         silent: float = 0.0, version: int | None = None) -> Prediction:
    """The prediction for one cell. Pure. `silent`: how long the control connection stays silent
    while the data flows (a variation's transfer_seconds; 0: not long enough to matter). `version`:
    the IP version the client dials the server with (None: server_address's)."""
    net = Net(topology, alg)
    edges = port_edges(net)
    passive = data in ("pasv", "epsv")
    prange = (ends.passive_range or EPHEMERAL) if passive else EPHEMERAL
    results: list[tuple[Prediction, int]] = []
    for csport, w0 in stretches(EPHEMERAL, edges):
        for p, w1 in stretches(prange, edges):
            # the client's source port (passive), or an active server's when it is an ephemeral one
            ephemeral = passive or ends.server.data_source_port(security) is None
            for q, w2 in (stretches(EPHEMERAL, edges) if ephemeral else [(0, 1)]):
                try:
                    pred = _cell(net, security, data, ends, csport, (p, _label(p, w1)), (q, _label(q, w2)),
                                 version)
                except _Unpredictable as exc:
                    pred = Prediction("unknown", None, str(exc), exc.node)
                results.append((pred, w0 * w1 * w2))
    chooser = "the server" if passive and ends.passive_range else "the kernel"
    settled = settle(results, f"{chooser} picks")
    broken = ends.client.broken_for(security, data)
    if broken and settled.outcome == "pass":
        # a known defect of the client matters only where the network would let the cell through
        return Prediction("fail", "data-connect", f"{ends.client.name}: {broken}", None)
    if settled.outcome == "pass" and silent:
        try:
            return _forgotten(net, ends, silent, security, version) or settled
        except _Unpredictable as exc:
            return Prediction("unknown", None, str(exc), exc.node)
    return settled


def _forgotten(net: Net, ends: Ends, silent: float, security: str = "plain", version: int | None = None
               ) -> Prediction | None:
    """A router on the path whose idle timeout runs out while the control connection is silent
    during the transfer (and no end's keepalive refreshes it): it forgets the connection, and the
    server's 226 arrives as a packet of no connection, which conntrack takes up as NEW. Each
    device then judges it by its own model: a dynamic filter drops it; a static filter or a
    ruleset as a new connection from the server's control port (its rules and default); a NAT
    whose outside faces the server as an unsolicited inbound packet. The first that drops it decides."""
    keepalives = [cfg.FTPKEEPALIVE for cfg in (ends.client_cfg, ends.server_cfg) if cfg and cfg.FTPKEEPALIVE > 0]
    keepalive = min(keepalives) if keepalives else None
    why = f"FTPKEEPALIVE {keepalive} s is not shorter" if keepalive else "no end sends keepalives (FTPKEEPALIVE)"
    topology = net.topology
    ftp = topology.ftp
    dport = ftp.implicit_port if security.startswith("implicit") else ftp.control_port
    dial = topology.server_address_of(version or ftp.server_address.version)
    ctrl = cross(net, ftp.client, Packet(None, dial, EPHEMERAL.low, dport), {})
    if isinstance(ctrl, Stop):
        return None
    for hop in ctrl.hops:
        node = topology.nodes[hop.node]
        nat, fw = net.sections(node)
        idle = (fw.idle_timeout if fw is not None else None) or (nat.idle_timeout if nat is not None else None)
        if not forgets(idle, silent, keepalive):
            continue
        lost = (f"the control connection stays silent for about {silent:g} s while the data flows, longer than "
                f"{node.name}'s idle timeout ({idle} s), and {why}: {node.name} forgets it")
        back = Flow("tcp", hop.leave.dst, hop.leave.src, hop.leave.sport or EPHEMERAL.low, hop.leave.dport,
                    hop.out_if, hop.in_if)
        stop = _judges_226(net, node, nat, fw, back, hop)
        if stop is not None:
            return Prediction("fail", "transfer", f"{lost} and {stop}", node.name)
    return None


def _judges_226(net: Net, node: Node, nat, fw, flow: Flow, hop: Hop) -> str | None:
    """What a router that forgot the control connection does with the server's 226 (None: it
    lets it through), as its devices' models say."""
    control = Control((hop.arrive.src, hop.arrive.sport, hop.arrive.dst, hop.arrive.dport),
                      (hop.leave.dst, hop.leave.dport, hop.leave.src, hop.leave.sport), hop.in_if, hop.out_if)
    for model, at in _hook_models(net, node):
        why = model.forgotten({}, at, control) if hasattr(model, "forgotten") else None
        if why is not None:       # the walk's sample of the client's port is no port it knows
            return f"drops the server's 226: {why}".replace(f":{hop.arrive.sport} ->", ":* ->")
    if nat is not None and devices.model("nat").drops(nat, flow.in_interface, "NEW", False) and \
            (net.owns(node, flow.dst) or nat.masquerade):
        return f"drops the server's 226 as an unsolicited inbound packet on its outside interface {flow.in_interface}"
    if fw is not None and fw.mode == "static":
        try:
            action, where = _static().decide(fw, flow, "FORWARD", _local_addresses(net, node), first=False)
        except Unreadable as exc:
            raise _Unpredictable(node.name, fw, exc) from None
        if action in ("drop", "reject"):
            return f"its filter {action}s the server's 226 as a new connection ({_static().explain(fw, where)})"
    elif fw is not None:
        try:
            action, line = devices.model(fw.mode)(fw, flow, _local_addresses(net, node), first=False)
        except Unreadable as exc:
            raise _Unpredictable(node.name, fw, exc) from None
        if action != "accept":
            where = f"{_ruleset_name(fw)}:{line}" if line else f"{_ruleset_name(fw)}: the chain's policy"
            return f"its ruleset {action}s the server's 226 as a new connection ({where})"
    return None


def _label(port: int, count: int) -> str:
    return str(port) if count == 1 else f"{port}-{port + count - 1}"


def _cell(net: Net, security: str, data: str, ends: Ends, csport: int, data_port: tuple[int, str],
          client_port: tuple[int, str], version: int | None = None) -> Prediction:
    """One sample of the ports: the control connection from `csport`, the data connection to
    data_port (the server's passive port, or the client's listening one) from client_port
    (passive) or the server's data port (active); each port with the text a reason shows."""
    topology = net.topology
    ftp = topology.ftp
    p, shown = data_port
    dport = topology.ftp.implicit_port if security.startswith("implicit") else topology.ftp.control_port
    dial = topology.server_address_of(version or ftp.server_address.version)
    # 1. the control connection
    ctrl = cross(net, ftp.client, Packet(None, dial, csport, dport, shown=("*", str(dport))), {})
    if isinstance(ctrl, Stop):
        return Prediction("fail", "connect", f"the control connection {ftp.client} -> {dial}:{dport}: "
                                             f"{ctrl.reason}", ctrl.device)
    if ctrl.at != ftp.server:
        return Prediction("fail", "connect", f"the control connection to {dial}:{dport} arrives at "
                                             f"{ctrl.at}, not at the server", None)
    # 2. the ends
    refusal = ends_mod.session_refusal(security, ends) or ends_mod.family_refusal(data, dial.version, ends)
    if refusal is not None:
        return _refused(refusal, ends)
    # 3. the announcement, along the control path
    passive = data in ("pasv", "epsv")
    client_ip, client_seen, server_ip = ctrl.first.src, ctrl.last.src, ctrl.last.dst
    what = ANNOUNCEMENT[data]
    learned: dict[str, Learned] = {}
    first_after_ccc = ends.first_after_ccc
    if passive:
        host = server_ip if data == "pasv" else None
        got, port, told, notes = announce(net, ctrl.hops, False, host, p, learned, security, first_after_ccc,
                                          shown, KINDS[data])
        notes.insert(0, f"the {what} announces " + (f"{host}:{shown}" if host else f"port {shown}"))
        target = got
        if data == "epsv" or ends.ignores_pasv_address:
            target = dial
            if data == "pasv":
                notes.append(f"the client ignores the 227 address and connects to the control address {target}")
        start, listener = ftp.client, ftp.server
        pkt = Packet(None, target, client_port[0], port, shown=("*", told))
    else:
        got, port, told, notes = announce(net, ctrl.hops, True, client_ip, p, learned, security, first_after_ccc,
                                          shown, KINDS[data])
        notes.insert(0, f"the {what} announces {client_ip}:{shown}")
        for refusal in (ends_mod.port_refusal(ends, got, client_seen), ends_mod.protection_refusal(security, ends)):
            if refusal is not None:
                return _refused(refusal, ends, notes)
        if ends.foreign_port == "control-address" and got != client_seen:
            notes.append(f"{ends.server.name} takes no foreign address: it connects to the control connection's "
                         f"{client_seen} instead of {got}")
            got = client_seen
        sport = ends.server.data_source_port(security, ctrl.last.dport)
        notes.append(f"the server connects from port {sport or 'an ephemeral port'} to {got}:{told}")
        start, listener = ftp.server, ftp.client
        pkt = Packet(server_ip, got, sport or client_port[0], port,
                     shown=(str(sport) if sport else client_port[1], told))
    # 4. the data connection
    conn = cross(net, start, pkt, learned)
    if isinstance(conn, Stop):
        return Prediction("fail", "data-connect", "; ".join([*notes, conn.reason]), conn.device)
    notes += conn.notes
    if conn.at != listener or conn.last.dport != p:
        return Prediction("fail", "data-connect", "; ".join(
            [*notes, f"the connection reaches {conn.at} at {conn.last.target}, where nothing listens for it"]), None)
    # what trips a stateful rule the control connection met (-m recent, -m limit): said, always
    notes += [n for n in ctrl.notes if LIMIT_NOTE in n]
    if passive:
        if (refusal := ends_mod.protection_refusal(security, ends)) is not None:
            return _refused(refusal, ends, notes)
        if ends.noredirect_passive and conn.last.src != client_seen:
            return Prediction("fail", "transfer", "; ".join(
                [*notes, f"the data connection arrives from {conn.last.src}, not from the control "
                         f"connection's {client_seen}, and the server closes it (no foreign address)"]), None)
    return Prediction("pass", None, "; ".join(notes))


def _refused(refusal: Refusal, ends: Ends, notes: list[str] | None = None) -> Prediction:
    if not refusal.certain:
        return Prediction("unknown", None, refusal.why, None)
    return Prediction("fail", refusal.stage, "; ".join([*(notes or []), refusal.why]),
                      ends.server_node if refusal.by_server else None)


# -- ports -------------------------------------------------------------------------------------------

def port_edges(net: Net) -> set[int]:
    """Every port where some device's decision may change: each named range's start and end+1."""
    edges: set[int] = {1024}
    for node in net.topology.nodes.values():
        nat, fw = net.sections(node)
        for p in net.control_ports(node):
            edges |= {p, p + 1}
        if nat is not None:
            for fwd in nat.forwards:
                edges |= {fwd.ports.low, fwd.ports.high + 1}
        if fw is not None and fw.mode == "static":
            edges |= _static().port_edges(fw)
    return edges


def stretches(rng: PortRange, edges: set[int]) -> list[tuple[int, int]]:
    """[(a port, how many ports behave like it)]: rng cut at the edges inside it."""
    cuts = sorted({rng.low, *(e for e in edges if rng.low < e <= rng.high)})
    return [(lo, (cuts[i + 1] if i + 1 < len(cuts) else rng.high + 1) - lo) for i, lo in enumerate(cuts)]


def settle(results: list[tuple[Prediction, int]], chooser: str) -> Prediction:
    """One prediction from the outcomes over the ports, weighed by how many ports give each."""
    weight: dict[tuple, int] = defaultdict(int)
    first: dict[tuple, Prediction] = {}
    for pred, w in results:
        weight[pred.key] += w
        first.setdefault(pred.key, pred)
    total = sum(weight.values())
    best = max(weight, key=lambda k: weight[k])
    share = weight[best] / total
    pred = first[best]
    if share == 1:
        return pred
    others = "; ".join(f"{first[k].outcome}" + (f" at {first[k].stage}" if first[k].stage else "")
                       + (f" by {first[k].device}" if first[k].device else "") + f" for {weight[k] / total:.1%}"
                       for k in sorted(weight, key=lambda k: -weight[k]) if k != best)
    if share >= CERTAIN and pred.outcome != "unknown":
        return replace(pred, reason=f"{pred.reason} (on {share:.1%} of the ports {chooser}; otherwise {others})")
    return Prediction("unknown", None, f"cannot predict: it depends on the port {chooser}: "
                                       f"{pred.outcome} for {share:.1%} ({pred.reason}); {others}", None)
