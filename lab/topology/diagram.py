"""A topology as a PNG: hosts, routers, and which routers are NAT or firewall devices.

Drawn with networkx on a matplotlib Figure with the Agg canvas directly, so it never touches
a display or the process-wide matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lab.topology.model import Node, Topology

COLOURS = {
    "host": "#9ecae1",
    "router": "#d9d9d9",
    "nat": "#fdae6b",
    "static-filter": "#fb6a4a",
    "dynamic-filter": "#9e9ac8",
    "nftables-filter": "#fb6a4a",
    "nat+filter": "#e6550d",
}


def role(node: Node) -> str:
    """The colour key of a node."""
    if node.nat and node.firewall:
        return "nat+filter"
    if node.firewall:
        return f"{node.firewall.mode}-filter"
    if node.nat:
        return "nat"
    return node.kind


def device_label(node: Node) -> str:
    """The node's name and, for a device, what it does (NAT forwards and ALG, filter rules)."""
    lines = [node.name]
    if node.nat:
        what = ["NAT"]
        if node.nat.forwards:
            what.append("fwd " + ",".join(str(f.ports) for f in node.nat.forwards))
        what.append(f"ALG {node.nat.alg}")
        lines.append(" ".join(what))
    if node.firewall:
        fw = node.firewall
        if fw.mode == "nftables":
            lines.append(f"nftables filter: {fw.nftables.name if fw.nftables else '?'}")
        elif fw.mode == "static":
            rules = "iptables-save" if fw.iptables_save else f"{len(fw.rules)} rules"
            lines.append(f"static filter: {rules}, default {fw.default}")
        else:
            lines.append("dynamic filter: open " + ",".join(map(str, fw.control_ports)))
    return "\n".join(lines)


def layout(topology: Topology) -> dict[str, tuple[float, float]]:
    """Left to right by hop distance from the client; the client->server path on one line."""
    g = topology.graph()
    on_path = topology.hops()
    distance = nx.single_source_shortest_path_length(g, topology.ftp.client)
    pos: dict[str, tuple[float, float]] = {name: (float(i), 0.0) for i, name in enumerate(on_path)}
    rows: dict[int, int] = {}
    for name in sorted(g.nodes, key=lambda n: (distance.get(n, len(g)), n)):
        if name in pos:
            continue
        x = distance.get(name, len(on_path))
        rows[x] = rows.get(x, 0) + 1
        pos[name] = (float(x), -1.2 * rows[x])
    return pos


def draw(topology: Topology, out: Path | str) -> Path:
    """Write the diagram to `out` (PNG) and return its path."""
    out = Path(out)
    g = topology.graph()
    pos = layout(topology)
    width = max(6.0, 2.6 * (max(x for x, _ in pos.values()) + 1))
    height = 3.6 + 1.6 * -min(y for _, y in pos.values())
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(f"{topology.name}: {topology.description}", fontsize=10, wrap=True)

    for shape, kind in (("o", "host"), ("s", "router")):
        names = [n for n, node in topology.nodes.items() if node.kind == kind]
        nx.draw_networkx_nodes(g, pos, nodelist=names, node_shape=shape, node_size=1500, ax=ax,
                               node_color=[COLOURS[role(topology.nodes[n])] for n in names],
                               edgecolors="black")
    hops = topology.hops()
    path_edges = {frozenset(pair) for pair in zip(hops, hops[1:], strict=False)}
    nx.draw_networkx_edges(g, pos, ax=ax, node_size=1500,
                           width=[3.0 if frozenset(e) in path_edges else 1.0 for e in g.edges])
    labels = {n: device_label(node) for n, node in topology.nodes.items()}
    label_pos = {n: (x, y - 0.32) for n, (x, y) in pos.items()}
    nx.draw_networkx_labels(g, label_pos, labels=labels, font_size=8, ax=ax, verticalalignment="top")

    # each interface's address near its own end of the link
    for link in topology.links:
        for end, other, ifname in ((link.a, link.b, link.a_interface), (link.b, link.a, link.b_interface)):
            intf = next(i for i in topology.nodes[end].interfaces if i.name == ifname)
            (x0, y0), (x1, y1) = pos[end], pos[other]
            ax.text(x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0) + 0.12, f"{ifname}\n{intf.address}",
                    fontsize=6.5, ha="center", va="bottom")

    dial = f"client dials {topology.ftp.server_address}:{topology.ftp.control_port}"
    ax.text(0.0, 0.02, dial, transform=ax.transAxes, fontsize=8)
    used = {role(n) for n in topology.nodes.values()}
    handles = [Line2D([], [], marker="s" if key != "host" else "o", linestyle="", markersize=10,
                      markerfacecolor=COLOURS[key], markeredgecolor="black", label=key)
               for key in COLOURS if key in used]
    ax.legend(handles=handles, loc="upper right", fontsize=7, frameon=False)
    ys = [y for _, y in pos.values()]
    xs = [x for x, _ in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
