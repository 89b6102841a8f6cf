"""The topology model: what a network picture is, independent of how it is built.

A topology file (YAML, see topologies/README.md) is loaded into these dataclasses by
lab.topology.loader; lab.network.net builds a Mininet network from them. Everything here is plain data
plus a few pure queries (the client->server path, who owns an address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import networkx as nx

# The device sections (nat:, firewall:) are defined by their devices; a topology holds them.
from firewall.section import FilterRule, Firewall  # noqa: F401
from lab.devkit.types import PortRange  # noqa: F401
from nat.section import Nat, PortForward, StaticNat  # noqa: F401

IPv4Interface = ipaddress.IPv4Interface
IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Interface:
    name: str                 # interface name inside the node, e.g. "r1-eth0"
    address: IPInterface      # address with prefix, e.g. 10.0.0.1/24: the IPv4 one, or the IPv6 one alone
    peer: str                 # the node at the other end of the link
    address6: ipaddress.IPv6Interface | None = None   # its IPv6 address (dual stack, or IPv6 alone)

    @property
    def addresses(self) -> list[IPInterface]:
        """Every address of the interface, IPv4 first."""
        return list(dict.fromkeys(a for a in (self.address, self.address6) if a is not None))

    def of(self, version: int) -> IPInterface | None:
        """The interface's address of that IP version (4 or 6), or None."""
        return next((a for a in self.addresses if a.version == version), None)


@dataclass
class Route:
    destination: IPNetwork    # 0.0.0.0/0 (::/0) for the default route
    via: IPAddress


@dataclass
class Node:
    name: str
    kind: Literal["host", "router"]
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    nat: Nat | None = None
    firewall: Firewall | None = None
    description: str = ""
    line: int = 0

    @property
    def is_device(self) -> bool:
        """A router that does more than forward: NAT and/or filtering."""
        return self.nat is not None or self.firewall is not None

    def device_kinds(self) -> list[str]:
        kinds = []
        if self.nat is not None:
            kinds.append("nat")
        if self.firewall is not None:
            kinds.append(f"{self.firewall.mode}-filter")
        return kinds


@dataclass
class Link:
    a: str
    b: str
    a_interface: str
    b_interface: str
    line: int = 0


@dataclass
class FtpSettings:
    """The FTP endpoints of the picture and the settings that belong to the design."""
    client: str                           # node name of the FTP client
    server: str                           # node name of the FTP server
    server_address: IPAddress             # the address the client dials (public one behind NAT)
    control_port: int = 21
    implicit_port: int = 990
    # FTP.DATA statements; a list = a statement repeated (CIPHERSUITE, EXTENSIONS, CERTUSERMAP)
    server_statements: dict[str, str | list[str]] = field(default_factory=dict)
    client_statements: dict[str, str | list[str]] = field(default_factory=dict)
    server_address6: ipaddress.IPv6Address | None = None   # what the client dials over IPv6 (dual stack)


@dataclass
class Topology:
    name: str
    description: str
    nodes: dict[str, Node]
    links: list[Link]
    ftp: FtpSettings
    source: Path | None = None
    internet: str | None = None           # node name of the "internet" router, if any

    # -- pure queries ---------------------------------------------------------------
    def graph(self) -> nx.Graph:
        g = nx.Graph()
        for node in self.nodes.values():
            g.add_node(node.name, kind=node.kind, devices=node.device_kinds())
        for link in self.links:
            g.add_edge(link.a, link.b, a_interface=link.a_interface, b_interface=link.b_interface)
        return g

    def path(self, src: str | None = None, dst: str | None = None) -> list[str]:
        """Nodes a packet crosses from src to dst (endpoints excluded)."""
        src = src or self.ftp.client
        dst = dst or self.ftp.server
        hops = nx.shortest_path(self.graph(), src, dst)
        return hops[1:-1]

    def hops(self) -> list[str]:
        """Every node from the FTP client to the FTP server, both included."""
        return [self.ftp.client, *self.path(), self.ftp.server]

    def devices_on_path(self) -> list[Node]:
        return [self.nodes[n] for n in self.path() if self.nodes[n].is_device]

    def owner_of(self, address: IPAddress) -> Node | None:
        """The node with this address: on an interface, or a public one its NAT holds (1:1, forwards)."""
        for node in self.nodes.values():
            if any(a.ip == address for i in node.interfaces for a in i.addresses):
                return node
        return next((n for n in self.nodes.values() if n.nat and address in n.nat.public_addresses()), None)

    def address_of(self, node: str, version: int | None = None) -> IPAddress:
        """The node's first interface address (hosts have one link): IPv4 first, or of `version`."""
        intf = self.nodes[node].interfaces[0]
        found = intf.address if version is None else intf.of(version)
        if found is None:
            raise ValueError(f"{node} has no IPv{version} address")
        return found.ip

    @property
    def families(self) -> tuple[int, ...]:
        """The IP versions the FTP client can dial the server with: (4,), (6,) or (4, 6)."""
        return tuple(sorted({self.ftp.server_address.version} | ({6} if self.ftp.server_address6 else set())))

    def server_address_of(self, version: int) -> IPAddress:
        """The address the client dials over IP `version`."""
        if self.ftp.server_address.version == version:
            return self.ftp.server_address
        if version == 6 and self.ftp.server_address6 is not None:
            return self.ftp.server_address6
        raise ValueError(f"{self.name}: the client cannot dial the server over IPv{version}")
