"""The lab's internet: the router between the sites routes only public prefixes.

A private address announced in a PORT or 227 is unreachable from the other site, as on the real
Internet. The router's rules drop, and have observed (lab.devkit.observed), every packet to a
private address. In mangle PREROUTING, before the routing decision: otherwise the missing route
would answer with an ICMP "network unreachable" and the drop would not be observed.
"""

from __future__ import annotations

from lab.devkit.observed import RuleSet, drop_chain
from lab.topology.loader import PRIVATE6, RFC1918

#: Drop reason (nfmark value); the NAT's is 1 (nat.rules), the static filter's from 3 on.
MARK_PRIVATE_DESTINATION = 2
PRIVATE_CHAIN = "ftlab-private-dst"


def internet_rules(ipv6: bool = False) -> RuleSet:
    """Drop, observed, every packet to an RFC 1918 address (the list the loader checks with); with
    IPv6, also to unique-local and link-local IPv6 destinations (ip6tables)."""
    families = ("iptables", "ip6tables") if ipv6 else ("iptables",)
    rules = [argv for tool in families for argv in drop_chain(PRIVATE_CHAIN, MARK_PRIVATE_DESTINATION, "mangle", tool)]
    for net in (*RFC1918, *(PRIVATE6 if ipv6 else ())):
        tool = "iptables" if net.version == 4 else "ip6tables"
        rules.append([tool, "-t", "mangle", "-A", "PREROUTING", "-d", str(net), "-j", PRIVATE_CHAIN])
    return RuleSet(rules, {MARK_PRIVATE_DESTINATION: "private address not routed on the internet"})
