"""The `nat:` section of a router in a topology file, as the NAT devices read it.

lab.topology.loader fills it from YAML (with file:line problems); the kernel NAT (nat.rules), the
scapy ALG (nat.alg) and the kernel helper (nat.kernel_helper) get it as their view's section.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from lab.devkit.types import AlgMode, PortRange


@dataclass
class PortForward:
    """DNAT on a NAT router: outside address:ports -> inside host:ports."""
    proto: Literal["tcp", "udp"]
    ports: PortRange                  # ports on the NAT's outside address
    to: ipaddress.IPv4Address         # inside host
    to_ports: PortRange               # same size as ports (identity when not given)
    line: int = 0


@dataclass
class Nat:
    outside: str              # name of the router's outside interface
    masquerade: bool          # source NAT of everything leaving through `outside`
    forwards: list[PortForward] = field(default_factory=list)
    alg: AlgMode = "scapy"    # who inspects/rewrites the plaintext control channel
    control_ports: list[int] = field(default_factory=lambda: [21, 990])
