"""What a device's setup() is given: its node as the device needs to see it, nothing more.

The engine builds a NodeView from the topology for each device on a node. A device never
receives the whole topology: it gets the node's name and interfaces, its own config section,
where events go, the control ports to inspect, and (for the drop observer) the drop reasons
the node's other devices declared.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class InterfaceView:
    name: str                 # the interface's name inside the node, e.g. "nat-c-eth1"
    address: IPInterface      # address with prefix, e.g. 198.51.100.1/24 (IPv4; IPv6 on an IPv6-only link)
    peer: str                 # the node at the other end of the link
    address6: ipaddress.IPv6Interface | None = None   # its IPv6 address (dual stack or IPv6 only)


@dataclass(frozen=True)
class NodeView:
    name: str
    interfaces: tuple[InterfaceView, ...]
    section: Any = None                       # the device's config section (nat.section.Nat, ...)
    events: Path = Path("events.jsonl")       # the JSON-lines file every device appends to
    control_ports: tuple[int, ...] = (21, 990)   # FTP control ports on this node: the picture's and the sections'
    drop_reasons: Mapping[int, str] = field(default_factory=dict)   # mark -> why (the node's observed drops)
    #: a kernel FTP helper on this node rewrites the control channel after the mangle table
    #: (nf_nat_ftp at the helper hook): ACK numbers seen before it count the bytes as rewritten
    late_rewrite: bool = False

    @property
    def tools(self) -> tuple[str, ...]:
        """The rule tools a device programs this node with: iptables, and ip6tables when the node
        has IPv6 addresses (the same rules for both families, where they apply)."""
        return ("iptables", "ip6tables") if any(i.address6 is not None for i in self.interfaces) else ("iptables",)

    def interface(self, name: str) -> InterfaceView:
        for intf in self.interfaces:
            if intf.name == name:
                return intf
        raise ValueError(f"{self.name}: {name!r} is not one of its interfaces "
                         f"({', '.join(i.name for i in self.interfaces)})")


def config_path(view: NodeView, program: str) -> Path:
    """Where the engine writes a device program's JSON config: beside the events file."""
    return Path(view.events).parent / f"{view.name}-{program}.json"
