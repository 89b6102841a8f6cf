"""A topology as a PNG: hosts, routers, which routers are NAT or firewall devices, and what each
device holds (forwards, 1:1 addresses, idle timeouts), with every interface's addresses (IPv4 and
IPv6 when the picture has them).

Layout: the client->server path left to right, wrapped after PER_ROW nodes into a serpentine
(the next row runs right to left under the last node, so every link stays short and no label
is shrunk); a node off the path hangs below the node it is linked to. Everything is placed in
inches (the axes span the figure, one data unit per inch), so sizes and gaps are what they say
whatever the length of the chain, and text never scales down with it.

Drawn with matplotlib on a Figure with the Agg canvas directly, so it never touches a display
or the process-wide matplotlib backend.
"""

from __future__ import annotations

from dataclasses import dataclass
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

PER_ROW = 4            # path nodes per row before the chain turns
DX = 3.4               # inches between neighbours in a row
NODE = 0.5             # a node's marker, inches
HANG = 1.9             # inches from a node down to one that hangs off it
LINE = 0.15            # inches per line of 8 pt text
ADDR_LINE = 0.125      # inches per line of 6.5 pt text
MARGIN = 0.5
FONT, SMALL = 8, 6.5


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
    """The node's name and, for a device, what it does: NAT forwards, 1:1 addresses, ALG, filter
    rules, idle timeouts, pinhole lifetime."""
    lines = [node.name]
    if node.nat:
        nat = node.nat
        lines.append(f"NAT, ALG {nat.alg}" + ("" if nat.masquerade else ", no masquerade"))
        if nat.forwards:
            lines.append("fwd " + ",".join((f"{f.public}:" if f.public else "") +
                                           (str(f.ports) if f.ports == f.to_ports else f"{f.ports}>{f.to_ports}")
                                           for f in nat.forwards))
        for one in nat.one_to_one:
            lines.append(f"1:1 {one.public} = {one.to}")
        if nat.idle_timeout is not None:
            lines.append(f"idle timeout {nat.idle_timeout} s")
    if node.firewall:
        fw = node.firewall
        if fw.mode == "nftables":
            lines.append(f"nftables filter: {fw.nftables.name if fw.nftables else '?'}")
        elif fw.mode == "static":
            rules = "iptables-save" if fw.iptables_save else f"{len(fw.rules)} rules"
            lines.append(f"static filter: {rules}, default {fw.default}")
        else:
            lines.append("dynamic filter: open " + ",".join(map(str, fw.control_ports)))
        if fw.idle_timeout is not None and (node.nat is None or node.nat.idle_timeout != fw.idle_timeout):
            lines.append(f"idle timeout {fw.idle_timeout} s")
        if fw.pinhole_lifetime is not None:
            lines.append(f"pinhole lifetime {fw.pinhole_lifetime:g} s")
    return "\n".join(lines)


@dataclass
class Place:
    x: float
    y: float
    below: bool = True           # its label below it (else below and to its right: a link goes down)


def layout(topology: Topology) -> dict[str, tuple[float, float]]:
    """Each node's centre in inches (y grows upwards; the first row is at 0)."""
    return {name: (p.x, p.y) for name, p in _places(topology).items()}


def _places(topology: Topology) -> dict[str, Place]:
    g = topology.graph()
    hops = topology.hops()
    labels = {n: device_label(node).count("\n") + 1 for n, node in topology.nodes.items()}
    # the off-path nodes, each under the path (or off-path) node it is reached from first
    parent: dict[str, str] = {}
    for name, pred in nx.bfs_predecessors(g, topology.ftp.client):
        if name not in hops:
            parent[name] = pred if pred in hops or pred in parent else hops[0]
    for name in g.nodes:            # not connected to the client at all: under the client
        if name not in hops and name not in parent:
            parent[name] = hops[0]
    children: dict[str, list[str]] = {}
    for name in sorted(parent):
        children.setdefault(parent[name], []).append(name)

    def depth(name: str) -> float:   # inches hanging below a node: its label, its children's
        own = NODE / 2 + 0.15 + LINE * labels[name]
        kids = children.get(name, [])
        return max([own, *(HANG + depth(k) for k in kids)]) if kids else own

    count = -(-len(hops) // PER_ROW) if len(hops) > PER_ROW + 1 else 1     # rows, as even as can be
    per = -(-len(hops) // count)
    rows = [hops[i:i + per] for i in range(0, len(hops), per)]
    places: dict[str, Place] = {}
    y = 0.0
    for r, row in enumerate(rows):
        for c, name in enumerate(row):
            col = c if r % 2 == 0 else per - 1 - c
            places[name] = Place(col * DX, y)
        below = max(depth(n) for n in row)
        y -= below + 0.55 + 3 * ADDR_LINE + NODE / 2       # room for the next row's address labels
    for row in rows[:-1]:
        places[row[-1]].below = False                       # the chain turns down from here
    for name, place in list(places.items()):
        _hang(name, place, children, places, labels)
    return places


def _hang(name: str, place: Place, children: dict[str, list[str]], places: dict[str, Place],
          labels: dict[str, int]) -> None:
    kids = children.get(name, [])
    if not kids:
        return
    place.below = False
    top = place.y - max(HANG, NODE / 2 + 0.35 + LINE * labels[name])
    for j, kid in enumerate(kids):
        places[kid] = Place(place.x + (j - (len(kids) - 1) / 2) * DX * 0.6, top)
        _hang(kid, places[kid], children, places, labels)


def _address_text(topology: Topology, node: str, ifname: str) -> str:
    intf = next(i for i in topology.nodes[node].interfaces if i.name == ifname)
    return "\n".join([ifname, *(str(a) for a in intf.addresses)])


def dial_text(topology: Topology) -> str:
    """What the client dials, both families, and a control port nothing forwards."""
    from lab.topology.describe import dials

    return f"the client dials {dials(topology)}"


def draw(topology: Topology, out: Path | str) -> Path:
    """Write the diagram to `out` (PNG) and return its path."""
    out = Path(out)
    figure(topology).savefig(out, format="png")
    return out


def figure(topology: Topology) -> Figure:
    """The diagram as a matplotlib Figure (Agg canvas), sized in inches by its layout."""
    places = _places(topology)
    xs = [p.x for p in places.values()]
    ys = [p.y for p in places.values()]
    lowest = min(p.y - NODE / 2 - 0.2 - LINE * (device_label(topology.nodes[n]).count("\n") + 1)
                 for n, p in places.items())
    left, right = min(xs) - DX / 2, max(xs) + DX / 2 + 0.8
    top, bottom = max(ys) + NODE / 2 + 0.5 + 3 * ADDR_LINE + 0.45, lowest - 0.55
    width, height = max(7.0, right - left), top - bottom
    right = left + width
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)

    hops = topology.hops()
    path_edges = {frozenset(pair) for pair in zip(hops, hops[1:], strict=False)}
    for link in topology.links:
        a, b = places[link.a], places[link.b]
        on_path = frozenset((link.a, link.b)) in path_edges
        ax.plot([a.x, b.x], [a.y, b.y], color="black", linewidth=3.0 if on_path else 1.2, zorder=1,
                solid_capstyle="butt")
        for end, other, ifname in ((a, b, link.a_interface), (b, a, link.b_interface)):
            node = link.a if end is a else link.b
            text = _address_text(topology, node, ifname)
            horizontal = abs(other.x - end.x) >= abs(other.y - end.y)
            if horizontal:
                step = 0.24 * (other.x - end.x)
                fx, fy = end.x + step + (other.x - end.x) * 0.04, end.y + 0.12
                ha, va = "center", "bottom"
            elif other.y < end.y:   # a link going down: the upper end's addresses on its left,
                fx, fy = end.x + 0.18 * (other.x - end.x) - 0.12, end.y - NODE / 2 - 0.3
                ha, va = "right", "top"
            else:                   # the lower end's on its right (the other row's labels are above it)
                fx, fy = end.x + 0.18 * (other.x - end.x) + 0.12, end.y + NODE / 2 + 0.1
                ha, va = "left", "bottom"
            ax.text(fx, fy, text, fontsize=SMALL, ha=ha, va=va, zorder=3, linespacing=1.15,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})

    for name, p in places.items():
        node = topology.nodes[name]
        shape = "o" if node.kind == "host" else "s"
        ax.plot([p.x], [p.y], marker=shape, markersize=NODE * 72 * (1.0 if shape == "o" else 0.88),
                markerfacecolor=COLOURS[role(node)], markeredgecolor="black", linestyle="", zorder=2)
        label = device_label(node)
        first, *rest = label.split("\n")
        if p.below:
            lx, ly, ha = p.x, p.y - NODE / 2 - 0.1, "center"
        else:
            lx, ly, ha = p.x + NODE / 2 + 0.1, p.y - NODE / 2 + 0.05, "left"
        ax.text(lx, ly, first, fontsize=FONT, fontweight="bold", ha=ha, va="top", zorder=4)
        if rest:
            ax.text(lx, ly - LINE, "\n".join(rest), fontsize=FONT - 0.5, ha=ha, va="top", zorder=4,
                    linespacing=1.2,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})

    ax.text(left + 0.2, top - 0.2, f"{topology.name}: {topology.description}", fontsize=10, ha="left",
            va="top", wrap=True)
    ax.text(left + 0.2, bottom + 0.15, dial_text(topology), fontsize=FONT, ha="left", va="bottom")
    used = {role(n) for n in topology.nodes.values()}
    handles = [Line2D([], [], marker="s" if key != "host" else "o", linestyle="", markersize=9,
                      markerfacecolor=COLOURS[key], markeredgecolor="black", label=key)
               for key in COLOURS if key in used]
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    return fig


def data_uri(topology: Topology) -> str | None:
    """The diagram as a `data:image/png;base64,...` URI for a page; None when it cannot be drawn
    (a diagram must never cost the user the report or the live page)."""
    import base64
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            png = draw(topology, Path(tmp) / "diagram.png").read_bytes()
    except Exception:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode()
