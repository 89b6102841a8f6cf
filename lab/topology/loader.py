"""Load topology files (YAML, format in topologies/README.md) into the lab.topology.model dataclasses.

Loading is also validation: every problem in a file is collected with its line and field
(lab.errors.Problem) and reported together in one InputError, so an engineer fixes a file in
one pass instead of one error per run. Nothing here touches the network.

    load("client-nat")            # a shipped picture, by name
    load("my/net.yaml")           # any file
    names()                       # the shipped pictures
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from firewall import nftables, savefile
from lab import TOPOLOGY_DIR
from lab.devkit.types import ALG_MODES
from lab.errors import InputError, Problem, read_input
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.grammar import is_decimal
from lab.topology.ipsave import interface_problems
from lab.topology.model import (
    FilterRule,
    Firewall,
    FtpSettings,
    Interface,
    Link,
    Nat,
    Node,
    PortForward,
    PortRange,
    Route,
    StaticNat,
    Topology,
)
from lab.topology.routing import control_connection, file_dnat
from lab.topology.yamlfile import MAX_BYTES, Mapping, Sequence, not_ours, read_yaml, show

#: Private address space (RFC 1918). The internet router must not route it. (Python's
#: ipaddress calls the documentation ranges "private" too, so it cannot decide this for us.)
RFC1918 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
#: IPv6's: unique local addresses (RFC 4193; link-local ones never leave their link: no link end
#: may use one). The documentation prefix 2001:db8::/32 plays the public internet in the lab, as
#: the IPv4 documentation ranges do.
PRIVATE6 = [ipaddress.IPv6Network("fc00::/7")]
DEFAULT = ipaddress.IPv4Network("0.0.0.0/0")
DEFAULT6 = ipaddress.IPv6Network("::/0")
DEFAULTS = {4: DEFAULT, 6: DEFAULT6}

NODE_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
STATEMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
IFNAMSIZ = 15   # longest Linux interface name; "<node>-eth<N>" must fit

TOP_KEYS = {"name", "description", "ftp", "nodes", "links", "internet"}
TOP_REQUIRED = {"name", "description", "ftp", "nodes", "links"}
NODE_KEYS = {"kind", "description", "gateway", "routes", "nat", "firewall"}
ROUTE_KEYS = {"to", "via"}
NAT_KEYS = {"outside", "masquerade", "alg", "forwards", "control_ports", "one_to_one", "idle_timeout", "hairpin"}
FORWARD_KEYS = {"proto", "ports", "to", "to_ports", "public"}
ONE_TO_ONE_KEYS = {"public", "to"}
FIREWALL_KEYS = {"mode", "default", "rules", "iptables_save", "control_ports", "nftables", "idle_timeout",
                 "pinhole_lifetime"}
#: the kernel's own idle timeout of an established TCP connection (5 days): the longest one may ask
MAX_IDLE_TIMEOUT = 432000
FIREWALL_MODES = {"static", "dynamic", "nftables"}
RULE_KEYS = {"action", "proto", "src", "dst", "sport", "dport", "in_interface", "out_interface", "comment"}
FTP_KEYS = {"client", "server", "server_address", "server_address6", "control_port", "implicit_port",
            "server_statements", "client_statements"}
#: KEYRING value meaning "every CA certificate of the lab" (lab.ftps.tls.keyring_files)
KEYRING_LAB_CA = "*AUTH*/*"
ACTIONS = {"accept": "accept", "permit": "accept", "drop": "drop", "deny": "drop"}


def is_private(net) -> bool:
    """An address or prefix the internet does not route: RFC 1918, or IPv6 unique-local."""
    net = ipaddress.ip_network(net)
    return any(net.version == p.version and net.overlaps(p) for p in (*RFC1918, *PRIVATE6))


THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
LIMITED_BROADCAST = ipaddress.ip_address("255.255.255.255")


def special_address(ip) -> str | None:
    """Why `ip` cannot be an interface's address in the lab (what it is), or None. A loopback
    address on a link passed the model and failed in the run; these are refused at load."""
    v4 = ip.version == 4
    if not v4 and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address (::ffff:0:0/96)"
    if ip.is_unspecified:
        return "the unspecified address"
    if v4 and ip in THIS_NETWORK:
        return "in 0.0.0.0/8 (\"this network\")"
    if ip.is_loopback:
        return f"a loopback address ({'127.0.0.0/8' if v4 else '::1'})"
    if ip.is_multicast:
        return f"a multicast address ({'224.0.0.0/4' if v4 else 'ff00::/8'})"
    if ip.is_link_local:
        return f"a link-local address ({'169.254.0.0/16' if v4 else 'fe80::/10'})"
    if ip == LIMITED_BROADCAST:
        return "the limited broadcast address"
    if not v4 and ip.is_site_local:
        return "a site-local address (fec0::/10, deprecated)"
    if ip.is_reserved:
        return "a reserved address (240.0.0.0/4)" if v4 else "a reserved address (outside 2000::/3 and fc00::/7)"
    return None


# -- finding files ---------------------------------------------------------------------------

def names() -> list[str]:
    """The shipped topologies, sorted."""
    return sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))


def is_shipped(topology: Topology) -> bool:
    """A picture of the slides, as shipped in topologies/ (not a user's file, whatever its name)."""
    source = topology.source
    return source is not None and source.resolve() == (TOPOLOGY_DIR / f"{topology.name}.yaml").resolve()


def resolve(name_or_path: str | Path) -> Path:
    """A shipped name ("client-nat") or a path to a file (whatever it is: reading it decides)."""
    text = str(name_or_path)
    path = Path(text)
    if os.path.lexists(path):
        return path
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        shipped = TOPOLOGY_DIR / f"{text}.yaml"
        if shipped.is_file():
            return shipped
        raise InputError(f"no topology named {text!r}; shipped: {', '.join(names())}")
    raise InputError([Problem(text, 0, "", "no such topology file")])


def load(name_or_path: str | Path) -> Topology:
    """Load and validate a topology; InputError lists every problem with file:line and field."""
    path = resolve(name_or_path)
    return loads(read_input(path, "topology file", MAX_BYTES), str(path), source=path)


def loads(text: str, file: str = "<string>", source: Path | None = None) -> Topology:
    data, problems = read_yaml(text, file)
    if data is None and problems:
        raise InputError(problems)
    if data is not None and (foreign := not_ours(file, data, TOP_KEYS, "topology file")):
        raise foreign
    builder = _Builder(file, source)
    builder.problems.extend(problems)
    topology = builder.build(data)
    if builder.problems:
        raise InputError(sorted(builder.problems, key=lambda p: p.line))
    if topology is None:      # every refusal above names a problem; this one is a loader bug, said plainly
        raise InputError([Problem(file, 1, "", "the lab cannot build a network from this file, and found no "
                                               "single line to blame (a loader bug: please report it)")])
    return topology


def statement_problems(values: dict, written: Mapping, side: str, file: str, field: str) -> list[Problem]:
    """The FTPS endpoints' own validation of FTP.DATA statements given as a mapping (unknown names,
    bad values), each problem at the line of its statement in `written`."""
    config = ServerConfig if side == "server" else ClientConfig
    try:
        config.from_dict(values, file)
    except InputError as exc:
        lines = {str(k).upper(): written.line_of(k) for k in written}
        return [Problem(file, lines.get(p.field.upper(), written.line), f"{field}.{p.field}", p.message)
                for p in exc.problems]
    return []


# -- the builder: raw YAML -> model, collecting problems ------------------------------------

class _Builder:
    def __init__(self, file: str, source: Path | None):
        self.file = file
        self.source = source
        self.problems: list[Problem] = []
        self.nodes: dict[str, Node] = {}
        self.links_seen: list[Link] = []
        self.linked: set[str] = set()     # nodes named in a link, even one with problems
        #: every (node, address) written in links, also in links dropped for a problem: checks
        #: that depend on addresses stay quiet about those instead of repeating the link's problem
        self.claimed: list[tuple[str, ipaddress.IPv4Interface]] = []
        #: the NATs' own public addresses: address -> (node, line, a port forward's: shared)
        self.publics: dict[ipaddress.IPv4Address, tuple[str, int, bool]] = {}

    # small helpers ------------------------------------------------------------------------
    def problem(self, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))

    def mapping(self, value: Any, line: int, field: str) -> Mapping | None:
        if isinstance(value, Mapping):
            return value
        self.problem(line, field, f"expected a mapping (key: value lines), got {show(value)}")
        return None

    def sequence(self, value: Any, line: int, field: str, what: str) -> Sequence | None:
        """value when it is a list; else a problem saying a list of `what` was expected."""
        if isinstance(value, Sequence):
            return value
        self.problem(line, field, f"expected a list of {what}, got {show(value)}")
        return None

    def mappings(self, value: Any, line: int, field: str, what: str) -> Iterator[tuple[str, Mapping]]:
        """(field, item) for each item of a list of mappings; a problem for anything else."""
        items = self.sequence(value, line, field, what)
        for i, item in enumerate(items or []):
            where = f"{field}[{i}]"
            m = self.mapping(item, items.line_of(i), where)
            if m is not None:
                yield where, m

    def keys(self, m: Mapping, field: str, allowed: set[str], required: set[str] = frozenset()) -> None:
        for key in m:
            if key not in allowed:
                self.problem(m.line_of(key), f"{field}.{key}",
                             f"unknown key{_did_you_mean(str(key), allowed)}; allowed: {', '.join(sorted(allowed))}")
        for key in sorted(required - set(m)):
            self.problem(m.line, field, f"missing required key {key!r}")

    def string(self, m: Mapping, key: str, field: str, choices: set[str] | None = None,
               empty_ok: bool = False) -> str | None:
        """The text at key (None when absent). `key:` with nothing after it is a problem, not a
        default: an empty `kind:` silently becoming a host hides a typo."""
        value = m.get(key)
        if value is None:
            if key in m and not empty_ok:
                self.problem(m.line_of(key), f"{field}.{key}".lstrip("."), "has no value")
            return None
        if not isinstance(value, str):
            self.problem(m.line_of(key), f"{field}.{key}", f"expected text, got {show(value)}")
            return None
        if choices is not None and value not in choices:
            self.problem(m.line_of(key), f"{field}.{key}",
                         f"{value!r} is not one of: {', '.join(sorted(choices))}")
            return None
        return value

    def address(self, value: Any, line: int, field: str, version: int | None = None):
        """An IPv4 or IPv6 address (of `version` when given); None and a problem otherwise."""
        try:
            if isinstance(value, str | int) and not isinstance(value, bool):
                found = ipaddress.ip_address(value if isinstance(value, str) else str(value))
                if version is None or found.version == version:
                    return found
                self.problem(line, field, f"{found} is an IPv{found.version} address; expected IPv{version}")
                return None
        except ValueError:
            pass
        self.problem(line, field, f"bad {'IP' if version is None else f'IPv{version}'} address {show(value)}")
        return None

    def network(self, value: Any, line: int, field: str, version: int = 4):
        """A prefix (an address alone is a host route); `default` is the default route of `version`."""
        if isinstance(value, str) and value == "default":
            return DEFAULTS[version]
        try:
            if isinstance(value, str):
                return ipaddress.ip_network(value)
        except ValueError as exc:
            self.problem(line, field, f"bad IP prefix {value!r}: {exc}")
            return None
        self.problem(line, field, f"bad IP prefix {show(value)}")
        return None

    def address_items(self, value: Any, line: int, field: str, needs: str) -> list:
        """One address or a list of them, as a list; an empty list is a problem (`needs` opens its
        message, e.g. "a link end needs its address (ADDRESS/PREFIXLEN")."""
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        if not items:
            self.problem(line, field, f"{needs}, or a list of an IPv4 and an IPv6 one), got an empty list")
        return list(items)

    def addresses_of(self, value: Any, line: int, field: str) -> list:
        """`ADDRESS` or `[ADDRESS, ADDRESS6]`: at most one address per IP version."""
        items = self.address_items(value, line, field, "a gateway needs its address (ADDRESS")
        found = [a for a in (self.address(v, line, field) for v in items) if a is not None]
        if len({a.version for a in found}) != len(found):
            self.problem(line, field, "at most one IPv4 and one IPv6 address")
            return []
        return found

    def port(self, value: Any, line: int, field: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
            return value
        self.problem(line, field, f"bad port {show(value)} (1-65535)")
        return None

    def port_range(self, value: Any, line: int, field: str) -> PortRange | None:
        """21, "60000-60100", or iptables' "60000:60100" (read from the raw text: YAML 1.1 would
        take 1024:65535 for a base-60 number)."""
        if isinstance(value, int) and not isinstance(value, bool):
            port = self.port(value, line, field)
            return PortRange(port, port) if port else None
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d+)\s*[-:]\s*(\d+)\s*", value, re.ASCII)
            if m:
                low, high = int(m.group(1)), int(m.group(2))
                if not (1 <= low <= 65535 and 1 <= high <= 65535):
                    self.problem(line, field, f"port range {value!r} outside 1-65535")
                    return None
                if low > high:
                    self.problem(line, field, f"reversed port range {value!r} (low-high)")
                    return None
                return PortRange(low, high)
            if is_decimal(value.strip()):
                return self.port_range(int(value), line, field)
        self.problem(line, field, f"bad port or port range {show(value)} (e.g. 21 or 60000-60100)")
        return None

    def port_range_at(self, m: Mapping, key: str, field: str) -> PortRange | None:
        """m[key] as a port range, read from the text as written (see port_range)."""
        return self.port_range(m.raw.get(key, m[key]), m.line_of(key), f"{field}.{key}")

    def port_list(self, m: Mapping, key: str, field: str) -> list[int] | None:
        if m.get(key) is None:
            return None
        value = self.sequence(m[key], m.line_of(key), f"{field}.{key}", "ports")
        if value is None:
            return None
        ports = [self.port(v, value.line_of(i), f"{field}.{key}[{i}]") for i, v in enumerate(value)]
        return [p for p in ports if p is not None]

    # the whole file -------------------------------------------------------------------------
    def build(self, data: Any) -> Topology | None:
        if data is None:
            self.problem(1, "", "the file is empty")
            return None
        top = self.mapping(data, 1, "(top level)")
        if top is None:
            return None
        self.keys(top, "(top level)", TOP_KEYS, TOP_REQUIRED)
        name = self.string(top, "name", "") or (self.source.stem if self.source else "unnamed")
        description = self.string(top, "description", "", empty_ok=True) or ""
        if "name" in top and not NODE_NAME.match(name):
            self.problem(top.line_of("name"), "name", f"{name!r}: use lower-case letters, digits and '-'")

        raw_nodes = self.mapping(top.get("nodes"), top.line_of("nodes"), "nodes") if "nodes" in top else None
        raw = {}   # node name -> its raw mapping
        for node_name, spec in (raw_nodes or {}).items():
            node = self.node_header(str(node_name), spec, raw_nodes.line_of(node_name))
            self.nodes[node.name] = node
            if isinstance(spec, Mapping):
                raw[node.name] = spec

        internet = self.internet(top)
        links = self.links(top.get("links"), top.line_of("links")) if "links" in top else []
        self.addresses(links)
        for node_name, spec in raw.items():
            self.node_body(self.nodes[node_name], spec)
        for node in self.nodes.values():
            if node.name not in self.linked:
                self.problem(node.line, f"nodes.{node.name}", "not connected: no link names this node")
        if internet in raw:
            self.public_only(self.nodes[internet], raw[internet])

        ftp = self.ftp(top.get("ftp"), top.line_of("ftp")) if "ftp" in top else None
        if ftp is None:
            return None
        topology = Topology(name=name, description=description, nodes=self.nodes, links=links,
                            ftp=ftp, source=self.source, internet=internet)
        self.reachability(topology, top.line_of("ftp"))
        return topology

    # nodes ----------------------------------------------------------------------------------
    def node_header(self, name: str, spec: Any, line: int) -> Node:
        """The node's name and kind. A node with problems is still returned (as a host, if its
        kind is unreadable), so links and ftp that name it do not report it a second time."""
        field = f"nodes.{name}"
        if not NODE_NAME.match(name):
            self.problem(line, field, "a node name uses lower-case letters, digits and '-' (e.g. nat-c)")
        elif len(name) + len("-eth9") > IFNAMSIZ:
            self.problem(line, field, f"name too long: interface names '{name}-ethN' must fit in "
                                      f"{IFNAMSIZ} characters")
        m = self.mapping(spec, line, field)
        if m is None:
            return Node(name=name, kind="host", line=line)
        self.keys(m, field, NODE_KEYS, {"kind"})
        kind = self.string(m, "kind", field, {"host", "router"})
        for key in ("nat", "firewall"):
            if key in m and kind == "host":
                self.problem(m.line_of(key), f"{field}.{key}", f"only a router can do {key}; this is a host")
        return Node(name=name, kind=kind or "host", description=self.string(m, "description", field, empty_ok=True) or "",
                    line=line)

    def node_body(self, node: Node, m: Mapping) -> None:
        """Routes, NAT and firewall: these need the interfaces, so they come after the links."""
        field = f"nodes.{node.name}"
        if "gateway" in m:      # one default route per IP version: an address, or a list of two
            for via in self.addresses_of(m["gateway"], m.line_of("gateway"), f"{field}.gateway"):
                if self.check_via(node, via, m.line_of("gateway"), f"{field}.gateway"):
                    node.routes.append(Route(DEFAULTS[via.version], via))
        if "routes" in m:
            self.routes(node, m["routes"], m.line_of("routes"), f"{field}.routes")
        if "nat" in m and node.kind == "router":
            node.nat = self.nat(node, m["nat"], m.line_of("nat"), f"{field}.nat")
        if "firewall" in m and node.kind == "router":
            node.firewall = self.firewall(node, m["firewall"], m.line_of("firewall"), f"{field}.firewall")
        idle = {s.idle_timeout for s in (node.nat, node.firewall) if s is not None and s.idle_timeout is not None}
        if len(idle) > 1:     # one kernel, one conntrack table per node
            self.problem(m["firewall"].line_of("idle_timeout"), f"{field}.firewall.idle_timeout",
                         f"{node.name}'s NAT and firewall share one connection table: give one idle_timeout, "
                         f"not {' and '.join(map(str, sorted(idle)))}")

    def routes(self, node: Node, value: Any, line: int, field: str) -> None:
        seen = {r.destination: line for r in node.routes}
        for where, m in self.mappings(value, line, field, "{to: PREFIX, via: ADDRESS}"):
            self.keys(m, where, ROUTE_KEYS, ROUTE_KEYS)
            if "to" not in m or "via" not in m:
                continue
            via = self.address(m["via"], m.line_of("via"), f"{where}.via")
            to = self.network(m["to"], m.line_of("to"), f"{where}.to", via.version if via else 4)
            if to is None or via is None:
                continue
            if to.version != via.version:
                self.problem(m.line_of("via"), f"{where}.via", f"an IPv{via.version} next hop for an "
                                                               f"IPv{to.version} prefix {to}")
                continue
            if to in seen:
                self.problem(m.line, f"{where}.to", f"second route to {to} (first at line {seen[to]})")
                continue
            if self.check_via(node, via, m.line_of("via"), f"{where}.via"):
                seen[to] = m.line
                node.routes.append(Route(to, via))

    def check_via(self, node: Node, via: ipaddress.IPv4Address, line: int, field: str) -> bool:
        """A next hop must be a neighbour's address on one of the node's own subnets."""
        subnets = [a.network for i in node.interfaces for a in i.addresses]
        if any(a.ip == via for i in node.interfaces for a in i.addresses):
            self.problem(line, field, f"{via} is {node.name}'s own address, not a next hop")
            return False
        if not any(via in net for net in subnets):
            if any(via in a.network for n, a in self.claimed if n == node.name) or node.name not in self.linked:
                return False   # its link has a problem of its own, or it has no link: reported already
            have = ", ".join(str(n) for n in subnets) or "none"
            self.problem(line, field, f"next hop {via} is not on a subnet connected to {node.name} "
                                      f"(its subnets: {have})")
            return False
        if self.owner(via) is None:
            if not any(a.ip == via for _, a in self.claimed):
                self.problem(line, field, f"next hop {via}: no node has this address")
            return False
        return True

    # links and addresses --------------------------------------------------------------------
    def links(self, value: Any, line: int) -> list[Link]:
        links: list[Link] = []
        pairs: dict[frozenset, int] = {}
        for field, m in self.mappings(value, line, "links", "links ({nodeA: ADDR/LEN, nodeB: ADDR/LEN})"):
            if len(m) != 2:
                self.problem(m.line, field, f"a link joins exactly two nodes ({{nodeA: ADDR/LEN, nodeB: "
                                            f"ADDR/LEN}}), this one names {len(m)}")
                continue
            ends = []
            for end, addr in m.items():
                end = str(end)
                addresses = self.interface_addresses(addr, m.line_of(end), f"{field}.{end}")
                self.claimed += [(end, a) for a in addresses]
                if end not in self.nodes:
                    self.problem(m.line_of(end), f"{field}.{end}",
                                 f"unknown node {end!r}{_did_you_mean(end, self.nodes)}")
                    continue
                self.linked.add(end)
                if addresses:
                    ends.append((end, addresses))
            if len(ends) != 2:
                continue
            (a, a_addr), (b, b_addr) = ends
            if [x.version for x in a_addr] != [x.version for x in b_addr]:
                self.problem(m.line, field, f"the two ends must carry the same IP versions "
                                            f"({', '.join(map(str, a_addr))} and {', '.join(map(str, b_addr))})")
                continue
            if any(x.network != y.network for x, y in zip(a_addr, b_addr, strict=True)):
                self.problem(m.line, field, f"the two ends are on different subnets ({', '.join(map(str, a_addr))} "
                                            f"and {', '.join(map(str, b_addr))})")
                continue
            pair = frozenset((a, b))
            if pair in pairs:
                self.problem(m.line, field, f"second link between {a} and {b} (first at line {pairs[pair]})")
                continue
            pairs[pair] = m.line
            a_if = self.add_interface(a, a_addr, b)
            b_if = self.add_interface(b, b_addr, a)
            links.append(Link(a, b, a_if, b_if, line=m.line))
        self.links_seen = links
        return links

    def interface_addresses(self, value: Any, line: int, field: str) -> list:
        """A link end's addresses: `ADDR/LEN`, or a list of two (an IPv4 and an IPv6 one: dual
        stack), IPv4 first; an IPv6 end alone is an IPv6-only link."""
        items = self.address_items(value, line, field, "a link end needs its address (ADDRESS/PREFIXLEN")
        found = [a for a in (self.interface_address(v, line, field) for v in items) if a is not None]
        if len(found) != len(items):
            return []
        if len(found) > 2 or len({a.version for a in found}) != len(found):
            self.problem(line, field, "a link end has one address, or two: one IPv4 and one IPv6")
            return []
        return sorted(found, key=lambda a: a.version)

    def interface_address(self, value: Any, line: int, field: str):
        if not isinstance(value, str) or "/" not in value:
            self.problem(line, field, f"expected ADDRESS/PREFIXLEN such as 192.0.2.1/24 or 2001:db8::1/64 "
                                      f"(or a list of one of each), got {show(value)}")
            return None
        try:
            address = ipaddress.ip_interface(value)
        except ValueError as exc:
            self.problem(line, field, f"bad address {value!r}: {exc}")
            return None
        why = special_address(address.ip)
        if why is not None:
            self.problem(line, field, f"{address.ip} is not a unicast interface address: it is {why} (a link "
                                      f"end needs RFC 1918, documentation or public ranges; 2000::/3 or fc00::/7)")
            return None
        net = address.network
        if address.version == 4 and net.prefixlen < 31 and address.ip in (net.network_address, net.broadcast_address):
            which = "network" if address.ip == net.network_address else "broadcast"
            self.problem(line, field, f"{address.ip} is the {which} address of {net}")
            return None
        if address.version == 6 and (net.prefixlen < 127 and address.ip == net.network_address
                                     or address.ip.is_link_local or address.ip.is_multicast):
            self.problem(line, field, f"{address.ip} is not a unicast interface address of {net} (the subnet's "
                                      f"anycast address, link-local or multicast)")
            return None
        return address

    def owner(self, ip) -> Node | None:
        """The node with this address on one of its interfaces (links with problems add none)."""
        return next((n for n in self.nodes.values() for i in n.interfaces for a in i.addresses if a.ip == ip), None)

    def add_interface(self, node: str, addresses: list, peer: str) -> str:
        n = self.nodes[node]
        name = f"{node}-eth{len(n.interfaces)}"   # Mininet's convention, in link order
        six = next((a for a in addresses if a.version == 6), None)
        n.interfaces.append(Interface(name, addresses[0], peer, six))
        return name

    def addresses(self, links: list[Link]) -> None:
        """No address twice; no two links on overlapping subnets (of the same IP version)."""
        owners: dict = {}
        nets: list = []
        for link in links:
            for end in (link.a, link.b):
                where = f"links[{links.index(link)}].{end}"
                for address in self.interface(end, link).addresses:
                    if address.ip in owners:
                        other, line = owners[address.ip]
                        self.problem(link.line, where, f"duplicate address {address.ip} "
                                                       f"(also {other}'s, line {line})")
                    else:
                        owners[address.ip] = (end, link.line)
            for net in (a.network for a in self.interface(link.a, link).addresses):
                for other_net, other in nets:
                    if net.version == other_net.version and net.overlaps(other_net):
                        self.problem(link.line, f"links[{links.index(link)}]",
                                     f"subnet {net} overlaps {other_net} of the link {other.a}-{other.b} "
                                     f"(line {other.line})")
                nets.append((net, link))

    def interface(self, node: str, link: Link) -> Interface:
        name = link.a_interface if node == link.a else link.b_interface
        return next(i for i in self.nodes[node].interfaces if i.name == name)

    def resolve_interface(self, node: Node, value: Any, line: int, field: str) -> str | None:
        """An interface by its name (nat-s-eth0) or by the neighbour it leads to (internet)."""
        for intf in node.interfaces:
            if value in (intf.name, intf.peer):
                return intf.name
        choices = ", ".join(f"{i.name} (to {i.peer})" for i in node.interfaces) or "none"
        self.problem(line, field, f"{show(value)} is not an interface of {node.name} nor a neighbour; "
                                  f"choose from: {choices}")
        return None

    # NAT ------------------------------------------------------------------------------------
    def nat(self, node: Node, value: Any, line: int, field: str) -> Nat | None:
        m = self.mapping(value, line, field)
        if m is None:
            return None
        self.keys(m, field, NAT_KEYS, {"outside"})
        outside = self.resolve_interface(node, m["outside"], m.line_of("outside"), f"{field}.outside") \
            if "outside" in m else None
        masquerade = m.get("masquerade", True)
        if not isinstance(masquerade, bool):
            self.problem(m.line_of("masquerade"), f"{field}.masquerade", f"expected true or false, got "
                                                                         f"{show(masquerade)}")
        # the text as written: YAML 1.1 would read a bare `off` as false
        alg = m.raw.get("alg", show(m["alg"])) if "alg" in m else "scapy"
        if m.get("alg") is False:      # `off`, `no`, `false` in YAML 1.1; a re-dump writes `false`
            alg = "off"
        if alg not in ALG_MODES:
            self.problem(m.line_of("alg"), f"{field}.alg", f"{alg!r} is not one of: {', '.join(ALG_MODES)}")
            alg = "off"
        forwards, one_to_one = [], []
        if "one_to_one" in m and outside is not None:
            one_to_one = self.one_to_one(node, outside, m["one_to_one"], m.line_of("one_to_one"),
                                         f"{field}.one_to_one")
        if "forwards" in m and outside is not None:
            forwards = self.forwards(node, outside, m["forwards"], m.line_of("forwards"), f"{field}.forwards")
        control = self.port_list(m, "control_ports", field)
        hairpin = m.get("hairpin", False)
        if not isinstance(hairpin, bool):
            self.problem(m.line_of("hairpin"), f"{field}.hairpin", f"expected true or false, got {show(hairpin)}")
        nat = Nat(outside=outside or "", masquerade=bool(masquerade), forwards=forwards, alg=alg,
                  one_to_one=one_to_one, idle_timeout=self.seconds(m, "idle_timeout", field, 1, MAX_IDLE_TIMEOUT),
                  hairpin=hairpin is True)
        if control is not None:
            nat.control_ports = control
        return nat if outside is not None else None

    def forwards(self, node: Node, outside: str, value: Any, line: int, field: str) -> list[PortForward]:
        inside = self.inside_nodes(node, outside)
        result: list[PortForward] = []
        for where, m in self.mappings(value, line, field, "{proto, ports, to}"):
            self.keys(m, where, FORWARD_KEYS, {"ports", "to"})
            proto = self.string(m, "proto", where, {"tcp", "udp"}) if "proto" in m else "tcp"
            ports = self.port_range_at(m, "ports", where) if "ports" in m else None
            to = self.address(m["to"], m.line_of("to"), f"{where}.to") if "to" in m else None
            public = self.public_address(node, outside, m, where, shared=True) if "public" in m else None
            to_ports = ports
            if "to_ports" in m:
                to_ports = self.port_range_at(m, "to_ports", where)
                if ports and to_ports and to_ports.high - to_ports.low != ports.high - ports.low:
                    self.problem(m.line_of("to_ports"), f"{where}.to_ports",
                                 f"{to_ports} is not the same size as ports {ports}")
                    to_ports = None
            to = self.inside_target(node, outside, inside, m, where, to, "a port forward")
            if not (proto and ports and to and to_ports) or ("public" in m and public is None):
                continue
            for other in result:
                if other.proto == proto and other.public == public and other.ports.low <= ports.high \
                        and ports.low <= other.ports.high:
                    self.problem(m.line, where, f"{proto} ports {ports} overlap the forward at line {other.line}")
                    break
            else:
                result.append(PortForward(proto, ports, to, to_ports, line=m.line, public=public,
                                          to6=self.twin(to)))
        return result

    def twin(self, address):
        """The IPv6 address of the interface that holds the IPv4 `address` (dual stack), or None."""
        return next((i.address6.ip for n in self.nodes.values() for i in n.interfaces
                     if i.address.ip == address and i.address6 is not None and i.address6 != i.address), None)

    def inside_target(self, node: Node, outside: str, inside: set[str], m: Mapping, where: str,
                      to: ipaddress.IPv4Address | None, what: str) -> ipaddress.IPv4Address | None:
        """`to` when it is the address of a host behind the NAT; else a problem and None."""
        if to is None:
            return None
        owner = self.owner(to)
        if owner is None:
            if not any(a.ip == to for _, a in self.claimed):   # else its link is reported
                self.problem(m.line_of("to"), f"{where}.to", f"{to}: no node has this address")
            return None
        if owner.name not in inside:
            self.problem(m.line_of("to"), f"{where}.to",
                         f"{to} ({owner.name}) is not inside {node.name}: {what} leads "
                         f"to a host behind the NAT, not through its outside interface {outside}")
            return None
        return to

    def one_to_one(self, node: Node, outside: str, value: Any, line: int, field: str) -> list[StaticNat]:
        """1:1 NATs: {public: ADDRESS, to: INSIDE-HOST}, one public address per inside host."""
        inside = self.inside_nodes(node, outside)
        result: list[StaticNat] = []
        for where, m in self.mappings(value, line, field, "{public, to}"):
            self.keys(m, where, ONE_TO_ONE_KEYS, ONE_TO_ONE_KEYS)
            if "public" not in m or "to" not in m:
                continue
            public = self.public_address(node, outside, m, where, shared=False)
            to = self.inside_target(node, outside, inside, m, where,
                                    self.address(m["to"], m.line_of("to"), f"{where}.to"), "a 1:1 NAT")
            twice = next((o for o in result if o.to == to), None)
            if twice is not None:
                self.problem(m.line_of("to"), f"{where}.to", f"{to} has a public address already "
                                                             f"({twice.public}, line {twice.line})")
            elif public is not None and to is not None:
                result.append(StaticNat(public, to, line=m.line))
        return result

    def public_address(self, node: Node, outside: str, m: Mapping, where: str,
                       shared: bool) -> ipaddress.IPv4Address | None:
        """A public address the NAT holds on its outside interface: on that link's subnet, no
        node's interface address, and not another NAT's or another entry's (`shared`: port
        forwards may share one address among themselves, a 1:1 address is the host's alone)."""
        line, field = m.line_of("public"), f"{where}.public"
        public = self.address(m["public"], line, field, 4)     # 1:1 and forwards' own addresses: IPv4 (NAT44)
        if public is None:
            return None
        intf = next(i for i in node.interfaces if i.name == outside)
        owner = self.owner(public)
        held = self.publics.get(public)
        subnet = (intf.of(public.version) or intf.address).network
        if public not in subnet:
            self.problem(line, field, f"{public} is not on {outside}'s subnet {subnet}: the "
                                      f"outside link's neighbour must reach it directly")
        elif owner is not None:
            self.problem(line, field, f"{public} is {owner.name}'s interface address; a public address of "
                                      f"the NAT's own must be a free one on that subnet")
        elif held is not None and not (shared and held[2] and held[0] == node.name):
            self.problem(line, field, f"{public} is already {held[0]}'s "
                                      f"{'port-forward' if held[2] else '1:1'} address (line {held[1]})")
        else:
            self.publics[public] = (node.name, m.line, shared)
            return public
        return None

    def inside_nodes(self, node: Node, outside: str) -> set[str]:
        """Nodes reachable from a NAT router without leaving through its outside interface."""
        g = nx.Graph()
        g.add_nodes_from(self.nodes)
        for n in self.nodes.values():
            for intf in n.interfaces:
                if not (n is node and intf.name == outside):
                    g.add_edge(n.name, intf.peer)
        # the outside link must be gone in both directions
        peer = next(i.peer for i in node.interfaces if i.name == outside)
        if g.has_edge(node.name, peer):
            g.remove_edge(node.name, peer)
        return nx.node_connected_component(g, node.name) - {node.name}

    # firewall -------------------------------------------------------------------------------
    def firewall(self, node: Node, value: Any, line: int, field: str) -> Firewall | None:
        m = self.mapping(value, line, field)
        if m is None:
            return None
        # `nftables: FILE` says the mode by itself
        self.keys(m, field, FIREWALL_KEYS, set() if "nftables" in m else {"mode"})
        mode = self.string(m, "mode", field, FIREWALL_MODES) if "mode" in m else \
            ("nftables" if "nftables" in m else None)
        if mode is None:
            return None
        fw = Firewall(mode=mode)
        if mode == "nftables" or "nftables" in m:
            self.nftables(fw, m, field, node)
        elif mode == "dynamic":
            for key in ("rules", "default", "iptables_save"):
                if key in m:
                    self.problem(m.line_of(key), f"{field}.{key}", "only a static firewall has this; a dynamic "
                                                                  "one opens control_ports and learned pinholes")
        else:
            if "default" in m:
                fw.default = ACTIONS.get(self.string(m, "default", field, set(ACTIONS)) or "drop", "drop")
            if "rules" in m and "iptables_save" in m:
                self.problem(m.line_of("iptables_save"), f"{field}.iptables_save",
                             "give either rules or an iptables_save file, not both")
            elif "iptables_save" in m:
                fw.iptables_save = self.iptables_save(node, m["iptables_save"], m.line_of("iptables_save"),
                                                      f"{field}.iptables_save")
            elif "rules" in m:
                fw.rules = self.rules(node, m["rules"], m.line_of("rules"), f"{field}.rules")
            else:
                self.problem(m.line, field, "a static firewall needs rules or an iptables_save file")
        control = self.port_list(m, "control_ports", field)
        if control is not None:
            fw.control_ports = control
        fw.idle_timeout = self.seconds(m, "idle_timeout", field, 1, MAX_IDLE_TIMEOUT)
        if "pinhole_lifetime" in m and mode != "dynamic":
            self.problem(m.line_of("pinhole_lifetime"), f"{field}.pinhole_lifetime",
                         "only a dynamic firewall opens pinholes")
        else:
            fw.pinhole_lifetime = self.seconds(m, "pinhole_lifetime", field, 0.1, 3600, whole=False)
        return fw

    def seconds(self, m: Mapping, key: str, field: str, low: float, high: float,
                whole: bool = True) -> float | None:
        """m[key] as a number of seconds in [low, high] (whole ones unless `whole` is False); None if absent."""
        if key not in m:
            return None
        value = m[key]
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            what = "whole seconds" if whole else "seconds"
            self.problem(m.line_of(key), f"{field}.{key}", f"expected {what} from {low:g} to {high:g}, got {show(value)}")
            return None
        return value

    def nftables(self, fw: Firewall, m: Mapping, field: str, node: Node | None = None) -> None:
        """`nftables: FILE` (relative to this YAML file): read, and what the lab refuses in it
        (`nft -c` of the file is one of the checks that load it: lab.topology.check)."""
        if fw.mode != "nftables":
            self.problem(m.line_of("nftables"), f"{field}.nftables",
                         f"an nft ruleset is a firewall of its own: leave out mode {fw.mode!r}")
            return
        for key in ("rules", "default", "iptables_save"):
            if key in m:
                self.problem(m.line_of(key), f"{field}.{key}", "an nftables firewall takes its rules from "
                                                              "its nft file only")
        if "nftables" not in m:
            self.problem(m.line, field, "mode nftables needs `nftables: FILE` (an nft ruleset)")
            return
        value, line = m["nftables"], m.line_of("nftables")
        if not isinstance(value, str):
            self.problem(line, f"{field}.nftables", f"expected a file name, got {show(value)}")
            return
        path = self.beside(value)
        try:
            text = read_input(path, "nft ruleset")
        except InputError as exc:
            self.problem(line, f"{field}.nftables", "; ".join(str(p) for p in exc.problems))
            return
        problems = nftables.refused(text)
        if not problems and node is not None:   # like an iptables-save file's -i/-o
            problems = nftables.interface_problems(text, node.name, [i.name for i in node.interfaces])
        for number, message in problems:
            self.problems.append(Problem(str(path), number, f"{field}.nftables", message))
        if not problems:
            fw.nftables, fw.nftables_text = path, text

    def iptables_save(self, node: Node, value: Any, line: int, field: str) -> Path | None:
        if not isinstance(value, str):
            self.problem(line, field, f"expected a file name, got {show(value)}")
            return None
        path = self.beside(value)
        try:
            text = read_input(path, "iptables-save file")
        except InputError as exc:
            self.problem(line, field, "; ".join(str(p) for p in exc.problems))
            return None
        if "*filter" not in text or "COMMIT" not in text:
            self.problem(line, field, f"{path} does not look like iptables-save output "
                                      f"(needs a *filter table ending in COMMIT)")
            return None
        # each problem at its own line of the ruleset (loading it for real: lab.topology.check)
        found = interface_problems(text, str(path), node.name, [i.name for i in node.interfaces])
        found += [Problem(str(path), number, field, message) for number, message in savefile.refused(text)]
        self.problems += sorted(found, key=lambda p: p.line)
        return None if found else path

    def beside(self, name: str) -> Path:
        """A file named in the topology file, relative to that file (absolute names as they are)."""
        return ((self.source.parent if self.source else Path.cwd()) / name).resolve()

    def rules(self, node: Node, value: Any, line: int, field: str) -> list[FilterRule]:
        rules = []
        for where, m in self.mappings(value, line, field, "rules"):
            self.keys(m, where, RULE_KEYS, {"action"})
            action = self.string(m, "action", where, set(ACTIONS))
            proto = self.string(m, "proto", where, {"tcp", "udp", "icmp", "any"}) if "proto" in m else "tcp"
            rule = FilterRule(action=ACTIONS.get(action or "", "drop"), proto=proto or "tcp", line=m.line,
                              comment=self.string(m, "comment", where, empty_ok=True) or "")
            for key in ("src", "dst"):
                if key in m:
                    v = m[key]
                    setattr(rule, key, self.network(v, m.line_of(key), f"{where}.{key}"))   # an address: /32 or /128
            for key in ("sport", "dport"):
                if key in m:
                    if proto not in ("tcp", "udp"):
                        self.problem(m.line_of(key), f"{where}.{key}", f"ports need proto tcp or udp, not {proto}")
                        continue
                    setattr(rule, key, self.port_range_at(m, key, where))
            for key in ("in_interface", "out_interface"):
                if key in m:
                    setattr(rule, key, self.resolve_interface(node, m[key], m.line_of(key), f"{where}.{key}"))
            if action and proto:
                rules.append(rule)
        return rules

    # FTP and the internet -------------------------------------------------------------------
    def ftp(self, value: Any, line: int) -> FtpSettings | None:
        m = self.mapping(value, line, "ftp")
        if m is None:
            return None
        self.keys(m, "ftp", FTP_KEYS, {"client", "server"})
        ends = {}
        for role in ("client", "server"):
            name = self.string(m, role, "ftp")
            if name is None:
                if role in m and m[role] is None:
                    self.problem(m.line_of(role), f"ftp.{role}", "expected a node name, got nothing")
                continue
            node = self.nodes.get(name)
            if node is None:
                self.problem(m.line_of(role), f"ftp.{role}", f"unknown node {name!r}")
            elif node.kind != "host":
                self.problem(m.line_of(role), f"ftp.{role}", f"{name} is a {node.kind}; the FTP {role} runs on a host")
            elif node.interfaces:
                ends[role] = node
        ports = {}
        for key, default in (("control_port", 21), ("implicit_port", 990)):
            ports[key] = self.port(m[key], m.line_of(key), f"ftp.{key}") if key in m else default
        statements = {}
        for key in ("server_statements", "client_statements"):
            statements[key] = self.statements(m, key)
        if len(ends) != 2:
            return None
        server = ends["server"]
        own = server.interfaces[0]
        dial = own.address.ip
        if "server_address" in m:
            dial = self.address(m["server_address"], m.line_of("server_address"), "ftp.server_address")
            if dial is not None and not self.check_dial(dial, server, self.dial_ports(ports),
                                                        m.line_of("server_address"), "ftp.server_address"):
                dial = None
        # over IPv6 (dual stack): the server's own IPv6 address when the client dials its own IPv4 one
        dial6 = own.address6.ip if own.address6 is not None and dial is not None and dial.version == 4 \
            and dial == own.address.ip else None
        if "server_address6" in m:
            dial6 = self.address(m["server_address6"], m.line_of("server_address6"), "ftp.server_address6", 6)
            if dial6 is not None and not self.check_dial(dial6, server, self.dial_ports(ports),
                                                         m.line_of("server_address6"), "ftp.server_address6"):
                dial6 = None
        if dial is None or None in ports.values():
            return None
        if dial.version == 6:
            dial6 = None                    # an IPv6-only picture: server_address says it all
        return FtpSettings(client=ends["client"].name, server=server.name, server_address=dial,
                           control_port=ports["control_port"], implicit_port=ports["implicit_port"],
                           server_address6=dial6, **statements)

    def statements(self, m: Mapping, key: str) -> dict[str, str | list[str]]:
        if key not in m:
            return {}
        value = self.mapping(m[key], m.line_of(key), f"ftp.{key}")
        result = {}
        for name, setting in (value or {}).items():
            where = f"ftp.{key}.{name}"
            if not isinstance(name, str) or not STATEMENT_NAME.match(name):
                self.problem(value.line_of(name), where, "a statement name is upper case, as in FTP.DATA "
                                                         "(e.g. PASSIVEDATAPORTS)")
            elif isinstance(setting, Sequence) and not isinstance(setting, str) and setting and \
                    all(isinstance(item, str | int | float) and not isinstance(item, bool) for item in setting):
                result[name] = [str(item) for item in setting]    # a repeated statement, a line each
            elif isinstance(setting, Mapping | Sequence) or setting is None:
                self.problem(value.line_of(name), where, f"expected a value or a list of values, "
                                                         f"got {show(setting)}")
            else:
                result[name] = value.raw.get(name, str(setting))
        if value is not None:
            side = "server" if key == "server_statements" else "client"
            found = statement_problems(result, value, side, self.file, f"ftp.{key}")
            self.problems += found
            if "KEYRING" in result and not found:
                result["KEYRING"] = self.keyring(str(result["KEYRING"]), value.line_of("KEYRING"),
                                                 f"ftp.{key}.KEYRING")
        return result

    def keyring(self, value: str, line: int, field: str) -> str:
        """KEYRING as the lab reads it: `*AUTH*/*` (the lab's CA), or a PEM file or a folder of PEM
        files with the CA certificates to trust, relative to the topology file; returned absolute,
        as the endpoints (started elsewhere) need it."""
        from lab.ftps import pki, tls  # TLS libraries only for a file that names a key ring

        if value.strip().upper() == KEYRING_LAB_CA:
            return value
        path = self.beside(value)
        if not path.exists():
            self.problem(line, field, f"{value!r}: no such file or folder ({path}). In the lab KEYRING names a "
                                      f"PEM file or a folder of PEM files with the CA certificates to trust, or "
                                      f"{KEYRING_LAB_CA} for the lab's own CA; a z/OS key ring name (e.g. "
                                      f"FTPD/FTPRING) means nothing here")
            return value
        files = tls.keyring_files(str(path))
        if not files:
            self.problem(line, field, f"{value!r}: the folder {path} has no .pem or .crt file")
        for file in files:
            try:
                pki.load_certificates(file, "KEYRING")
            except InputError as exc:
                self.problem(line, field, "; ".join(p.message if p.file == str(file) else str(p)
                                                    for p in exc.problems) + f" ({file})")
        return str(path)

    @staticmethod
    def dial_ports(ports: dict[str, int | None]) -> tuple[int, ...]:
        """The control ports a client may dial: 21 (control_port) and the implicit port. A design
        that forwards only one of them is legitimate (an implicit-only server on 990): the cells
        of the other then fail at connect, in the prediction and in the run."""
        return tuple(dict.fromkeys(p for p in (ports["control_port"] or 21, ports["implicit_port"] or 990)))

    def check_dial(self, dial, server: Node, port: int | tuple[int, ...], line: int,
                   field: str = "ftp.server_address") -> bool:
        """The client dials the server itself, or a NAT router that forwards a control port (21 or
        the implicit port) to it (over IPv6: a forward's IPv6 twin, NAT66)."""
        wanted = (port,) if isinstance(port, int) else port
        owner = self.owner(dial) or (self.nodes.get(self.publics[dial][0]) if dial in self.publics else None)
        if owner is None:
            self.problem(line, field, f"{dial}: no node has this address")
            return False
        if owner is server:
            return True
        server_ips = {a.ip for i in server.interfaces for a in i.addresses}
        nat = owner.nat
        public = dial if nat and dial in nat.public_addresses() else None
        if nat and (nat.inside_of(dial) in server_ips or any(
                f.proto == "tcp" and any(p in f.ports for p in wanted) and
                (f.to if dial.version == f.to.version else f.to6) in server_ips and f.public == public
                for f in nat.forwards)):
            return True
        if file_forwards(owner, dial, wanted, server_ips):
            return True
        self.problem(line, field, f"{dial} belongs to {owner.name}, which does not forward "
                                  f"tcp port {' or '.join(map(str, wanted))} to the FTP server ({server.name})")
        return False

    def internet(self, top: Mapping) -> str | None:
        """The node that plays the internet: named by `internet:`, or the node called internet."""
        if "internet" in top:
            name = self.string(top, "internet", "")
            if name is not None and name not in self.nodes:
                self.problem(top.line_of("internet"), "internet", f"unknown node {name!r}")
                return None
        else:
            name = "internet" if "internet" in self.nodes else None
        if name is not None and self.nodes[name].kind != "router":
            self.problem(self.nodes[name].line, f"nodes.{name}.kind", "the internet is a router")
            return None
        return name

    def public_only(self, node: Node, m: Mapping) -> None:
        """The internet routes only public prefixes and has no default route, so a private
        address announced in a PORT command or a 227 reply is unreachable, as on the real one."""
        field = f"nodes.{node.name}"
        if "gateway" in m:
            self.problem(m.line_of("gateway"), f"{field}.gateway", "the internet has no default route: "
                                                                  "a destination it does not know is unreachable")
        routes = m.get("routes")
        for i, item in enumerate(routes if isinstance(routes, Sequence) else []):
            to = item.get("to") if isinstance(item, Mapping) else None
            try:
                net = DEFAULT if to == "default" else ipaddress.ip_network(to)
            except (ValueError, TypeError):
                continue   # already reported
            if net.prefixlen == 0:
                self.problem(item.line_of("to"), f"{field}.routes[{i}].to", "the internet has no default "
                             "route: a destination it does not know is unreachable")
            elif is_private(net):
                self.problem(item.line_of("to"), f"{field}.routes[{i}].to", f"{net} is private "
                             f"({'RFC 1918' if net.version == 4 else 'IPv6 unique-local'}): the internet routes only "
                             "public prefixes")
        for intf in node.interfaces:
            for address in intf.addresses:
                if is_private(address.network):
                    link = next(lk for lk in self.links_seen if node.name in (lk.a, lk.b) and
                                intf.name in (lk.a_interface, lk.b_interface))
                    self.problem(link.line, f"{field}.{intf.name}", f"private address {address}: "
                                                                   "the internet uses only public addresses")

    def reachability(self, topology: Topology, line: int) -> None:
        g = topology.graph()
        if not nx.has_path(g, topology.ftp.client, topology.ftp.server):
            self.problem(line, "ftp", f"no chain of links joins {topology.ftp.client} and {topology.ftp.server}")
        elif not self.problems:   # walking broken tables would only repeat what is reported
            messages = control_connection(topology)
            ftp = topology.ftp
            if messages and ftp.implicit_port != ftp.control_port:
                # an implicit-only design (nothing on 21, the implicit port gets through) is one a
                # run can test: its explicit cells fail at connect, its implicit ones may pass
                implicit = dataclasses.replace(topology, ftp=dataclasses.replace(ftp, control_port=ftp.implicit_port))
                if not control_connection(implicit):
                    messages = []
            for message in messages:
                self.problem(line, "ftp", f"the control connection cannot flow: {message} "
                                          "(check gateways, routes and port forwards)")


def file_forwards(owner: Node, dial, ports: tuple[int, ...], server_ips: set) -> bool:
    """Does the owner's own iptables-save file DNAT a control port of `dial` to the server (a
    Docker host: its forwards are only in the file's nat table)?"""
    return any((got := file_dnat(owner, dial, port)) is not None and got[0] in server_ips for port in ports)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
