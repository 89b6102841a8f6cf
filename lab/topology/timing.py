"""A variation's timing of a network: its devices' idle timeouts, and how long a transfer takes.

    topology = timing.apply(model, Timing(idle_timeout=2, transfer_seconds=6))

`idle_timeout`: every router on the client -> server path that has a NAT or a firewall forgets an
established connection idle that long (its sections' `idle_timeout`, the topology key; one value
per router). `transfer_seconds`: the server's link is shaped (lab.network.net.LabNet.shape, HTB) so
that the cell's file takes about that long - the worker shapes it, and prediction knows that the
control connection is silent that long while the data flows. Pure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lab.topology.model import Topology


@dataclass(frozen=True)
class Timing:
    idle_timeout: int | None = None           # seconds, on every NAT and firewall on the path
    transfer_seconds: float | None = None     # about how long the cell's transfer takes

    def __bool__(self) -> bool:
        return self.idle_timeout is not None or self.transfer_seconds is not None

    def label(self) -> str:
        parts = ([f"idle {self.idle_timeout} s"] if self.idle_timeout is not None else []) + \
                ([f"transfer {self.transfer_seconds:g} s"] if self.transfer_seconds is not None else [])
        return ", ".join(parts)

    def rate_bits(self, size: int) -> int | None:
        """The rate (bits a second) at which `size` bytes take transfer_seconds; None: not shaped."""
        if self.transfer_seconds is None:
            return None
        return max(8000, int(size * 8 / self.transfer_seconds))


def apply(topology: Topology, timing: Timing | None) -> Topology:
    """The topology with the timing's idle timeout on every device on the path (a copy; unchanged
    when the timing sets none)."""
    if not timing or timing.idle_timeout is None:
        return topology
    result = copy.deepcopy(topology)
    for node in result.devices_on_path():
        for section in (node.nat, node.firewall):
            if section is not None:
                section.idle_timeout = timing.idle_timeout
    return result
