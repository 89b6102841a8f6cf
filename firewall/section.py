"""The `firewall:` section of a router in a topology file, as the filters read it.

lab.topology.loader fills it from YAML (with file:line problems); the static filter
(firewall.static), the dynamic filter (firewall.dynamic) and the nftables filter
(firewall.nftables) get it as their view's section.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.devkit.types import PortRange


@dataclass
class FilterRule:
    """One static rule: first match wins. Fields left None match anything."""
    action: Literal["accept", "drop"]
    proto: Literal["tcp", "udp", "icmp", "any"] = "tcp"
    src: ipaddress.IPv4Network | None = None
    dst: ipaddress.IPv4Network | None = None
    sport: PortRange | None = None
    dport: PortRange | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    comment: str = ""
    line: int = 0


@dataclass
class Firewall:
    mode: Literal["static", "dynamic", "nftables"]
    rules: list[FilterRule] = field(default_factory=list)   # static only
    default: Literal["accept", "drop"] = "drop"
    iptables_save: Path | None = None                       # static: use this ruleset instead
    control_ports: list[int] = field(default_factory=lambda: [21, 990])
    nftables: Path | None = None                            # nftables: the user's nft ruleset file
    nftables_text: str = ""                                 # ... its text, as checked at load time
    idle_timeout: int | None = None       # seconds an established connection may idle (None: the kernel's 5 days)
    pinhole_lifetime: float | None = None                   # dynamic: seconds a pinhole waits (None: 30)
