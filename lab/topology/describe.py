"""A topology in words: its path, nodes, addresses and devices (what `ftlab topo show` prints and
what a report says of each device). Pure."""

from __future__ import annotations

import dataclasses

from lab.topology.model import Firewall, Nat, Node, Topology


def format_path(topology: Topology) -> str:
    """client → nat-c (nat) → internet → server"""
    hops = topology.hops()
    parts = []
    for name in hops:
        kinds = topology.nodes[name].device_kinds()
        parts.append(f"{name} ({', '.join(kinds)})" if kinds else name)
    return " → ".join(parts)


def format_nat(nat: Nat) -> list[str]:
    lines = [f"nat: outside {nat.outside}, masquerade {'on' if nat.masquerade else 'off'}, "
             f"ALG {nat.alg} on ports {','.join(map(str, nat.control_ports))}"]
    for one in nat.one_to_one:
        lines.append(f"  1:1 {one.public} <-> {one.to} (every port, both ways)")
    for f in nat.forwards:
        to = f"{f.to}:{f.to_ports}" + (f" (IPv6: [{f.to6}]:{f.to_ports})" if f.to6 is not None else "")
        lines.append(f"  forward {f.proto} {f.public or ''}{':' if f.public else ''}{f.ports} -> {to}")
    if nat.idle_timeout is not None:
        lines.append(f"  {idle_text(nat.idle_timeout)}")
    return lines


def idle_text(seconds: int) -> str:
    """`idle timeout 300 s (an idle established connection is forgotten after it)`."""
    return f"idle timeout {seconds} s (an established connection idle longer is forgotten)"


def format_firewall(fw: Firewall) -> list[str]:
    lines = _firewall_lines(fw)
    if fw.idle_timeout is not None:
        lines.append(f"  {idle_text(fw.idle_timeout)}")
    if fw.pinhole_lifetime is not None:
        lines.append(f"  a pinhole waits {fw.pinhole_lifetime:g} s for its connection")
    return lines


def _firewall_lines(fw: Firewall) -> list[str]:
    if fw.mode == "dynamic":
        return [f"firewall: dynamic, open ports {','.join(map(str, fw.control_ports))}; "
                "data only through pinholes learned from the control channel"]
    if fw.iptables_save:
        return [f"firewall: static, rules from iptables-save file {fw.iptables_save}"]
    if fw.mode == "nftables":
        return [f"firewall: nftables ruleset {fw.nftables} (loaded with nft -f; drops named by its lines)"]
    lines = ["firewall: static, new connections (established/related pass), first match wins:"]
    for n, r in enumerate(fw.rules, 1):
        match = [r.proto]
        for key in ("src", "sport", "dst", "dport", "in_interface", "out_interface"):
            value = getattr(r, key)
            if value is not None:
                match.append(f"{key.replace('_interface', '')} {value}")
        comment = f"   # {r.comment}" if r.comment else ""
        lines.append(f"  {n}. {r.action} {' '.join(match)}{comment}")
    lines.append(f"  default: {fw.default}")
    return lines


def format_node(node: Node) -> list[str]:
    head = f"{node.name}  ({node.kind}{': ' + ', '.join(node.device_kinds()) if node.is_device else ''})"
    if node.description:
        head += f"  {node.description}"
    lines = [head]
    for i in node.interfaces:
        addresses = ", ".join(str(a) for a in i.addresses)
        lines.append(f"  {i.name:<14} {addresses:<18} -> {i.peer}")
    for r in node.routes:
        dest = "default" if r.destination.prefixlen == 0 else str(r.destination)
        lines.append(f"  route {dest} via {r.via}")
    if node.nat:
        lines += ["  " + x for x in format_nat(node.nat)]
    if node.firewall:
        lines += ["  " + x for x in format_firewall(node.firewall)]
    return lines


def format_topology(topology: Topology) -> str:
    ftp = topology.ftp
    lines = [f"{topology.name}: {topology.description}"]
    if topology.source:
        lines.append(f"file: {topology.source}")
    lines.append("")
    for node in topology.nodes.values():
        lines += format_node(node)
    lines.append("")
    if topology.internet:
        lines.append(f"internet: {topology.internet} (routes only public prefixes)")
    devices = topology.devices_on_path()
    lines.append("devices on the path: " + (", ".join(f"{d.name} ({', '.join(d.device_kinds())})"
                                                      for d in devices) or "none"))
    lines.append(f"path: {format_path(topology)}")
    lines.append(f"the client dials: {dials(topology)}")
    for label, statements in (("server", ftp.server_statements), ("client", ftp.client_statements)):
        if statements:
            lines.append(f"{label} statements: " + "; ".join(f"{k} {v}" for k, v in statements.items()))
    return "\n".join(lines)


def reaches(topology: Topology, port: int) -> bool:
    """Whether the client's control connection to `port` of the address it dials gets to the
    server and back (routing and NAT forwards; filters aside)."""
    from lab.topology.routing import control_connection

    return not control_connection(dataclasses.replace(topology, ftp=dataclasses.replace(topology.ftp,
                                                                                          control_port=port)))


def dials(topology: Topology) -> str:
    """`203.0.113.1 port 21 (implicit TLS: 990); over IPv6 2001:db8:5::1`, saying which port
    nothing forwards (an implicit-only design)."""
    ftp = topology.ftp
    six = f"; over IPv6 {ftp.server_address6}" if ftp.server_address6 is not None else ""
    explicit, implicit = reaches(topology, ftp.control_port), reaches(topology, ftp.implicit_port)
    if explicit == implicit:          # both (or neither: the loader reports that)
        return f"{ftp.server_address} port {ftp.control_port} (implicit TLS: {ftp.implicit_port}){six}"
    if implicit:
        return (f"{ftp.server_address} port {ftp.implicit_port} (implicit TLS only: port {ftp.control_port} "
                f"does not reach the server, so plain, tls and tls-ccc fail at connect){six}")
    return (f"{ftp.server_address} port {ftp.control_port} (port {ftp.implicit_port} does not reach the "
            f"server: the implicit modes fail at connect){six}")
