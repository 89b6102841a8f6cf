"""Types the engine and the devices share: port ranges, the NAT inspector's modes, a connection,
and what a device's model says when a connection's fate depends on something it cannot read."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

#: Who inspects and rewrites a NAT router's plaintext control channel: the lab's scapy ALG
#: (nat.alg), the Linux kernel's FTP helper attached with iptables (nat.kernel_helper) or with an
#: nftables ct helper object (nat.nft_helper), or nobody.
AlgMode = Literal["scapy", "kernel", "kernel-nft", "off"]
ALG_MODES: tuple[str, ...] = ("scapy", "kernel", "kernel-nft", "off")


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
    where the connection comes in and where it leaves (None: not known). state: its conntrack
    state on this device, NEW, or RELATED when a connection-tracking helper on the device expected
    it (the kernel's FTP helper); dnat: this device translated its destination (conntrack's DNAT
    status, which iptables matches as `--ctstate DNAT`).
    """

    proto: str
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    dport: int
    sport: int | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    state: str = "NEW"
    dnat: bool = False


class Unreadable(ValueError):
    """A device's model met something outside what it reads (a match, a target, a table) on the
    way to a verdict: the prediction says "cannot predict: FILE:LINE uses X", never a guess."""

    def __init__(self, line: int, what: str):
        super().__init__(f"line {line}: {what}")
        self.line = line
        self.what = what
