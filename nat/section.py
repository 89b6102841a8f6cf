"""The `nat:` section of a router in a topology file, as the NAT devices read it.

lab.topology.loader fills it from YAML (with file:line problems); the kernel NAT (nat.rules), the
scapy ALG (nat.alg) and the kernel helper (nat.kernel_helper) get it as their view's section.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from lab.devkit.types import AlgMode, PortRange

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class PortForward:
    """DNAT on a NAT router: a public address:ports -> inside host:ports."""
    proto: Literal["tcp", "udp"]
    ports: PortRange                  # ports on the public address
    to: Address                       # inside host
    to_ports: PortRange               # same size as ports (identity when not given)
    line: int = 0
    public: Address | None = None     # the address it listens on; None: the outside interface's own
    to6: Address | None = None        # the inside host's IPv6 address (dual stack: the forward's NAT66 twin)


@dataclass
class StaticNat:
    """1:1 NAT: a public address of its own on the outside interface stands for one inside host,
    every port both ways (DNAT of what comes to it, SNAT of what the host sends out)."""
    public: Address
    to: Address
    line: int = 0


@dataclass
class Nat:
    outside: str              # name of the router's outside interface
    masquerade: bool          # source NAT of everything leaving through `outside`
    forwards: list[PortForward] = field(default_factory=list)
    alg: AlgMode = "scapy"    # who inspects/rewrites the plaintext control channel
    control_ports: list[int] = field(default_factory=lambda: [21, 990])
    one_to_one: list[StaticNat] = field(default_factory=list)
    idle_timeout: int | None = None   # seconds an established connection may idle (None: the kernel's)
    #: NAT loopback: a host on the inside reaches a forward (or a 1:1 address) by its public address
    #: too, and is masqueraded so that the answer comes back through the router
    hairpin: bool = False

    def public_addresses(self) -> list[Address]:
        """The addresses the NAT holds on its outside interface besides the interface's own (1:1
        NATs, forwards on an address of their own), each once, in the file's order."""
        found = [s.public for s in self.one_to_one] + [f.public for f in self.forwards if f.public is not None]
        return list(dict.fromkeys(found))

    def public_of(self, inside: Address) -> Address | None:
        """The 1:1 public address of an inside host, or None."""
        return next((s.public for s in self.one_to_one if s.to == inside), None)

    def inside_of(self, public: Address) -> Address | None:
        """The inside host a 1:1 public address stands for, or None."""
        return next((s.to for s in self.one_to_one if s.public == public), None)
