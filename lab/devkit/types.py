"""Types the engine and the devices share: port ranges, the NAT inspector's modes, a connection."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

#: Who inspects and rewrites a NAT router's plaintext control channel: the lab's scapy ALG
#: (nat.alg), the Linux kernel's FTP helper (nat.kernel_helper), or nobody.
AlgMode = Literal["scapy", "kernel", "off"]
ALG_MODES: tuple[str, ...] = ("scapy", "kernel", "off")


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __contains__(self, port: int) -> bool:
        return self.low <= port <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    def iptables(self) -> str:
        """As an iptables --sport/--dport value: "21" or "60000:60100"."""
        return str(self.low) if self.low == self.high else f"{self.low}:{self.high}"


@dataclass(frozen=True)
class Flow:
    """A new connection as a device on its path sees it arrive (what a device's model is asked about).

    sport None: not known in advance (a client's ephemeral port). Interfaces: the device's own,
    where the connection comes in and where it leaves (None: not known).
    """

    proto: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    dport: int
    sport: int | None = None
    in_interface: str | None = None
    out_interface: str | None = None
