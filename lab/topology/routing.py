"""Walk a topology's routing tables the way the kernel will, before any namespace exists.

A topology whose routes cannot carry the control connection fails later as an obscure timeout;
walking the tables at load time turns that into "at nat-c: no route to 203.0.113.1". The walk
uses longest-prefix match over connected subnets and routes, applies NAT port forwards on the
way in (DNAT), a 1:1 NAT's public addresses both ways, masquerade on the way out (SNAT), and
traces the reply back through the same translations, as conntrack would.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lab.topology.model import Interface, Node, Topology
from nat.rules import forward_target

IPv4Address = ipaddress.IPv4Address


@dataclass(frozen=True)
class Step:
    """The packet as a router on the way forwards it: what its filter's FORWARD chain sees (after
    the router's own DNAT, before its masquerade)."""
    node: str
    in_interface: str | None
    out_interface: str
    src: IPv4Address
    dst: IPv4Address
    dport: int | None
    dnat: bool = False                    # this router translated the destination (a port forward)


@dataclass
class Trace:
    hops: list[str]                       # nodes visited, first and last included
    source: IPv4Address | None            # the source address as the last node sees it
    problem: str | None = None            # why the packet does not arrive, or None
    #: (NAT node, translated source) -> original source, for the reply's way back
    snat: dict[tuple[str, IPv4Address], IPv4Address] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)   # each router that forwarded it, in order


def next_hop(node: Node, dst: IPv4Address) -> tuple[Interface, IPv4Address] | None:
    """(egress interface, the address to hand the packet to), by longest prefix among the routes
    of dst's IP version; None: no route."""
    best: tuple[int, Interface, IPv4Address] | None = None
    for intf in node.interfaces:
        own = intf.of(dst.version)
        if own is not None and dst in own.network and (best is None or own.network.prefixlen > best[0]):
            best = (own.network.prefixlen, intf, dst)
    for route in node.routes:
        if dst in route.destination and (best is None or route.destination.prefixlen > best[0]):
            egress = next((i for i in node.interfaces if any(route.via in a.network for a in i.addresses)), None)
            if egress is not None:
                best = (route.destination.prefixlen, egress, route.via)
    return (best[1], best[2]) if best else None


def source_on(intf: Interface, dst) -> IPv4Address:
    """The address a packet to `dst` leaves `intf` with: the interface's address of dst's version."""
    own = intf.of(dst.version)
    return (own or intf.address).ip


def trace(topology: Topology, start: str, dst: IPv4Address, port: int | None = None,
          reply_to: dict[tuple[str, IPv4Address], IPv4Address] | None = None,
          max_hops: int = 64) -> Trace:
    """Send a TCP packet from node `start` to dst:port; follow it until it arrives or is lost.

    For a reply, pass the forward trace's `snat` map as reply_to: a NAT router that masqueraded
    the request hands the reply on to the original source (conntrack's reverse translation).
    """
    node = topology.nodes[start]
    result = Trace(hops=[node.name], source=None)
    ingress: str | None = None
    for _ in range(max_hops):
        dnat = False
        if _owns(node, dst):
            translated = _translate(node, dst, port, reply_to) or file_dnat(node, dst, port, ingress)
            if translated is None:
                return result
            dst, port = translated
            dnat = True
            if _owns(node, dst):
                return result
        hop = next_hop(node, dst)
        if hop is None:
            result.problem = f"at {node.name}: no route to {dst}"
            return result
        egress, via = hop
        if result.source is None:
            result.source = source_on(egress, dst)
        if len(result.hops) > 1:
            result.steps.append(Step(node.name, ingress, egress.name, result.source, dst, port, dnat))
        if node.nat and egress.name == node.nat.outside and len(result.hops) > 1:
            leaves_as = node.nat.public_of(result.source) or (source_on(egress, dst) if node.nat.masquerade else None)
            if leaves_as is not None and leaves_as != result.source:
                result.snat[(node.name, leaves_as)] = result.source
                result.source = leaves_as
        peer = topology.nodes[egress.peer]
        if not _owns(peer, via):
            result.problem = f"at {node.name}: next hop {via} does not exist on {egress.name}'s link"
            return result
        if peer.kind == "host" and not _owns(peer, dst):
            result.problem = f"at {node.name}: {dst} is routed to host {peer.name}, which does not forward"
            result.hops.append(peer.name)
            return result
        ingress = next((i.name for i in peer.interfaces if i.peer == node.name), None)
        node = peer
        result.hops.append(node.name)
    result.problem = f"routing loop: {' → '.join(result.hops[-6:])}"
    return result


def _owns(node: Node, ip: IPv4Address) -> bool:
    """The address is one of the node's interfaces', or a public one its NAT holds (1:1, forwards)."""
    return any(a.ip == ip for i in node.interfaces for a in i.addresses) or \
        bool(node.nat and ip in node.nat.public_addresses())


def _translate(node: Node, dst: IPv4Address, port: int | None,
               reply_to: dict[tuple[str, IPv4Address], IPv4Address] | None):
    """(new dst, new port) if this node's NAT sends the packet on, None if it is for this node."""
    if reply_to and (node.name, dst) in reply_to:
        return reply_to[(node.name, dst)], port
    if node.nat and port is not None:
        return forward_target(node.nat, "tcp", port, dst)
    return None


def file_dnat(node: Node, dst, port: int | None, ingress: str | None = None):
    """(new dst, new port) when the node's own iptables-save file DNATs the packet (its nat
    table: a Docker host's published ports), else None."""
    from firewall import static
    from lab.devkit.types import Flow, Unreadable
    fw = node.firewall
    if port is None or fw is None or getattr(fw, "iptables_save", None) is None:
        return None
    local = frozenset(a.ip for i in node.interfaces for a in i.addresses)
    try:
        got = static.nat(fw, Flow("tcp", dst, dst, port, None, ingress), "PREROUTING", local)
    except (Unreadable, OSError):
        return None
    if got is None or got.action != "dnat" or got.to[0] is None:
        return None
    return got.to[0], got.to[1] or port


def control_connection(topology: Topology) -> list[str]:
    """Problems carrying the FTP control connection there and back, over each IP version the
    client dials (empty: it works)."""
    ftp = topology.ftp
    for version in topology.families:
        dial = topology.server_address_of(version)
        there = trace(topology, ftp.client, dial, ftp.control_port)
        if there.problem:
            return [f"client → {dial}:{ftp.control_port}: {there.problem}"]
        if there.hops[-1] != ftp.server:
            return [f"client → {dial}:{ftp.control_port} arrives at {there.hops[-1]}, "
                    f"not at the server {ftp.server}"]
        back = trace(topology, ftp.server, there.source, reply_to=there.snat)
        if back.problem:
            return [f"reply server → {there.source}: {back.problem}"]
        if back.hops[-1] != ftp.client:
            return [f"reply server → {there.source} arrives at {back.hops[-1]}, not at the client"]
    return []
