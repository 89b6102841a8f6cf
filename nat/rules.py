"""Kernel NAT rules for a NAT router, and the internet router's "no private addresses" rule.

Pure functions: a model Node in, iptables argv lists out (run in order inside the router's
namespace by lab.network.net). The ALG (nat.alg) and the kernel helper (nat.kernel_helper) add their
own rules; what is here is the NAT itself:

- source NAT (masquerade) of everything leaving through the outside interface;
- DNAT port forwards, single ports and ranges, from the outside address to an inside host;
- the NAT's answer to unsolicited inbound connections: dropped, and observed (dropwatch).
"""

from __future__ import annotations

import ipaddress

from firewall.observed import RuleSet, drop_chain, port_match
from lab.topology.loader import RFC1918
from lab.topology.model import Nat, Node, PortForward

#: Drop reasons (nfmark values) used by the rules in this module.
MARK_UNSOLICITED = 1
MARK_PRIVATE_DESTINATION = 2

UNSOLICITED_CHAIN = "ftlab-nat-unsolicited"
PRIVATE_CHAIN = "ftlab-private-dst"

PRIVATE_NETWORKS = RFC1918     # the same list the topology loader checks the internet with


def outside_interface(node: Node, nat: Nat) -> ipaddress.IPv4Interface:
    """The address of the NAT's outside interface (what masquerade and port forwards use)."""
    for intf in node.interfaces:
        if intf.name == nat.outside:
            return intf.address
    raise ValueError(f"{node.name}: NAT outside interface {nat.outside!r} is not one of its interfaces")


def dnat_target(fwd: PortForward) -> str:
    """The --to-destination value: keep the port when the mapping is the identity."""
    if fwd.to_ports == fwd.ports:
        return str(fwd.to)
    if fwd.to_ports.low == fwd.to_ports.high:
        return f"{fwd.to}:{fwd.to_ports.low}"
    # A shifted range: "/base" keeps each port's offset (kernel >= 5.x, iptables >= 1.8.6).
    return f"{fwd.to}:{fwd.to_ports.low}-{fwd.to_ports.high}/{fwd.ports.low}"


def nat_rules(node: Node) -> RuleSet:
    """Masquerade, port forwards, and the observed drop of unsolicited inbound connections."""
    nat = node.nat
    if nat is None:
        return RuleSet()
    outside = outside_interface(node, nat)
    rules: list[list[str]] = []
    if nat.masquerade:
        rules.append(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", nat.outside, "-j", "MASQUERADE"])
    for fwd in nat.forwards:
        if fwd.ports.high - fwd.ports.low != fwd.to_ports.high - fwd.to_ports.low:
            raise ValueError(f"{node.name}: forward {fwd.ports} -> {fwd.to_ports}: ranges differ in size")
        rules.append([
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", nat.outside, "-d", str(outside.ip),
            "-p", fwd.proto, "--dport", port_match(fwd.ports), "-j", "DNAT", "--to-destination", dnat_target(fwd),
        ])
    # A connection that starts outside and was not port-forwarded has nowhere to go: to the
    # router itself (INPUT) or, if someone routes a private address here, through it (FORWARD).
    reason = f"unsolicited inbound connection to {node.name}'s outside address (port not forwarded)"
    rules += drop_chain(UNSOLICITED_CHAIN, MARK_UNSOLICITED)
    for proto in ("tcp", "udp"):
        rules.append(["iptables", "-A", "INPUT", "-i", nat.outside, "-p", proto,
                      "-m", "conntrack", "--ctstate", "NEW", "-j", UNSOLICITED_CHAIN])
        rules.append(["iptables", "-A", "FORWARD", "-i", nat.outside, "-p", proto,
                      "-m", "conntrack", "--ctstate", "NEW", "-m", "conntrack", "!", "--ctstate", "DNAT",
                      "-j", UNSOLICITED_CHAIN])
    return RuleSet(rules, {MARK_UNSOLICITED: reason})


def internet_rules(node: Node) -> RuleSet:
    """The internet routes only public prefixes: packets to private addresses are dropped.

    In mangle PREROUTING, before the routing decision: otherwise the missing route would
    answer with an ICMP "network unreachable" and the drop would not be observed.
    """
    rules = drop_chain(PRIVATE_CHAIN, MARK_PRIVATE_DESTINATION, table="mangle")
    for net in PRIVATE_NETWORKS:
        rules.append(["iptables", "-t", "mangle", "-A", "PREROUTING", "-d", str(net), "-j", PRIVATE_CHAIN])
    return RuleSet(rules, {MARK_PRIVATE_DESTINATION: "private address not routed on the internet"})
