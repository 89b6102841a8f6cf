"""Observed drops: every packet the lab drops on purpose goes to the dropwatch program.

A dropping rule jumps to a per-reason chain that marks the packet with the reason's number
and queues it to the dropwatch queue (lab.devkit.queues.DROPWATCH). The drop observer
(firewall.dropwatch) drops it and writes
a "drop" event that names the device and the reason (looked up by the mark). Without a
listener the kernel drops queued packets anyway (fail closed), so a filter never leaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.devkit.queues import DROPWATCH


@dataclass
class RuleSet:
    """iptables argv lists to run in order, and the drop reasons they use (mark -> text)."""

    iptables: list[list[str]] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)

    def extend(self, other: RuleSet) -> None:
        clash = set(self.reasons) & set(other.reasons)
        if clash:
            raise ValueError(f"drop marks used twice: {sorted(clash)}")
        self.iptables.extend(other.iptables)
        self.reasons.update(other.reasons)


def drop_chain(chain: str, mark: int, table: str = "filter") -> list[list[str]]:
    """Create `chain` that marks a packet with `mark` and hands it to dropwatch."""
    return [
        ["iptables", "-t", table, "-N", chain],
        ["iptables", "-t", table, "-A", chain, "-j", "MARK", "--set-mark", str(mark)],
        ["iptables", "-t", table, "-A", chain, "-j", "NFQUEUE", "--queue-num", str(DROPWATCH)],
    ]
