"""Strict reverse-path filtering on every lab router: a packet is forwarded only when it arrived
on the interface its source address is routed through.

Without it a neighbour can claim any address: a client on the outside link sends a segment "from
the server" and, to a device that matched segments by addresses and ports alone, speaks for the
server. The devices check each control segment's side themselves (lab.devkit.ctrlstream); this is
the router's own half of the same rule, for every packet and both families. In raw PREROUTING,
before the devices' queues, conntrack and NAT, so a spoofed packet is never read or translated;
the drop is observed (lab.devkit.observed) and named, so a design with asymmetric routes fails
with this reason instead of silently. The sysctl rp_filter=1 stays on behind it for IPv4.
"""

from __future__ import annotations

from lab.devkit.observed import RuleSet, drop_chain

#: Drop reason (nfmark value); NAT 1, internet 2, static filter 3 and from 100 on.
MARK_SPOOFED_SOURCE = 4
CHAIN = "ftlab-rpfilter"
REASON = ("source address not routed back through the interface it arrived on "
          "(strict reverse-path filter: spoofed, or asymmetric routing)")

SYSCTLS = {"net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.default.rp_filter": "1"}


def rpfilter_rules(ipv6: bool = False) -> RuleSet:
    """The router's reverse-path check, observed, for IPv4 (and IPv6 when the picture has it)."""
    families = ("iptables", "ip6tables") if ipv6 else ("iptables",)
    rules = []
    for tool in families:
        rules += drop_chain(CHAIN, MARK_SPOOFED_SOURCE, "raw", tool)
        rules.append([tool, "-t", "raw", "-A", "PREROUTING", "-m", "rpfilter", "--invert", "-j", CHAIN])
    return RuleSet(rules, {MARK_SPOOFED_SOURCE: REASON})
