"""A topology in words: its path, nodes, addresses and devices (what `ftlab topo show` prints and
what a report says of each device). Pure."""

from __future__ import annotations

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
        to = f"{f.to}:{f.to_ports}"
        lines.append(f"  forward {f.proto} {f.public or ''}{':' if f.public else ''}{f.ports} -> {to}")
    return lines


def format_firewall(fw: Firewall) -> list[str]:
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
        lines.append(f"  {i.name:<14} {str(i.address):<18} -> {i.peer}")
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
    lines.append(f"the client dials: {ftp.server_address} port {ftp.control_port} "
                 f"(implicit TLS: {ftp.implicit_port})")
    for label, statements in (("server", ftp.server_statements), ("client", ftp.client_statements)):
        if statements:
            lines.append(f"{label} statements: " + "; ".join(f"{k} {v}" for k, v in statements.items()))
    return "\n".join(lines)
