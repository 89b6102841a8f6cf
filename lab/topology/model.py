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


@dataclass
class Interface:
    name: str                 # interface name inside the node, e.g. "r1-eth0"
    address: IPv4Interface    # address with prefix, e.g. 10.0.0.1/24
    peer: str                 # the node at the other end of the link


@dataclass
class Route:
    destination: IPv4Network  # 0.0.0.0/0 for the default route
    via: IPv4Address


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
    server_address: IPv4Address           # the address the client dials (public one behind NAT)
    control_port: int = 21
    implicit_port: int = 990
    # FTP.DATA statements; a list = a statement repeated (CIPHERSUITE, EXTENSIONS, CERTUSERMAP)
    server_statements: dict[str, str | list[str]] = field(default_factory=dict)
    client_statements: dict[str, str | list[str]] = field(default_factory=dict)


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

    def owner_of(self, address: IPv4Address) -> Node | None:
        """The node with this address: on an interface, or a public one its NAT holds (1:1, forwards)."""
        for node in self.nodes.values():
            if any(i.address.ip == address for i in node.interfaces):
                return node
        return next((n for n in self.nodes.values() if n.nat and address in n.nat.public_addresses()), None)

    def address_of(self, node: str) -> IPv4Address:
        """The node's first interface address (hosts have one)."""
        return self.nodes[node].interfaces[0].address.ip
