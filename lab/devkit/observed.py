"""Observed drops: every packet the lab drops on purpose goes to the dropwatch program.

A dropping rule jumps to a per-reason chain that marks the packet with the reason's number
and queues it to the dropwatch queue (lab.devkit.queues.DROPWATCH). The drop observer
(firewall.dropwatch) drops it and writes
a "drop" event that names the device and the reason (looked up by the mark). Without a
listener the kernel drops queued packets anyway (fail closed), so a filter never leaks.

nftables cannot queue on this kernel: an nft rule that drops first logs the packet to the
observer's netlink log group (lab.devkit.queues.DROPWATCH_LOG) with the reason's number in its
prefix (log_statement), then drops it itself, so its fate does not depend on the observer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.devkit.queues import DROPWATCH, DROPWATCH_LOG

#: The log prefix of an observed nftables drop: the prefix, then the reason's number.
LOG_PREFIX = "ftlab-drop "


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


def drop_chain(chain: str, mark: int, table: str = "filter", tool: str = "iptables") -> list[list[str]]:
    """Create `chain` that marks a packet with `mark` and hands it to dropwatch (`tool`
    ip6tables: the same chain for IPv6; NFQUEUE takes both families to one queue)."""
    return [
        [tool, "-t", table, "-N", chain],
        [tool, "-t", table, "-A", chain, "-j", "MARK", "--set-mark", str(mark)],
        [tool, "-t", table, "-A", chain, "-j", "NFQUEUE", "--queue-num", str(DROPWATCH)],
    ]


def log_statement(key: int) -> str:
    """The nft statement that has a drop observed: placed before the rule's `drop` (which still
    drops), it sends the packet to the drop observer's log group with reason `key`."""
    return f'log group {DROPWATCH_LOG} prefix "{LOG_PREFIX}{key}"'


def logged_key(prefix: str) -> int | None:
    """The reason's number in a logged packet's prefix, or None (not an observed drop)."""
    if not prefix.startswith(LOG_PREFIX):
        return None
    number = prefix[len(LOG_PREFIX):].strip()
    return int(number) if number.isdigit() else None
