"""The kernel NAT of a router with a `nat:` section: a device with kernel rules only.

Pure functions: the node's view in, iptables argv lists out (run in order inside the router's
namespace by the engine). The ALG (nat.alg) and the kernel helper (nat.kernel_helper) add their
own rules; what is here is the NAT itself:

- source NAT (masquerade) of everything leaving through the outside interface;
- DNAT port forwards, single ports and ranges, from the outside address to an inside host;
- the NAT's answer to unsolicited inbound connections: dropped, and observed (dropwatch).

Its model for prediction (`KernelNat`, what the path walk asks): which new connections the port
forwards translate and to where, whether one leaving through the outside interface is
masqueraded, and that a new connection arriving on the outside interface that nothing translated
is dropped. It does not read the control channel (with `alg: off` nothing does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.devkit import features
from lab.devkit.conntrack import idle_sysctls
from lab.devkit.device import Device, DeviceSetup
from lab.devkit.inspection import Blind
from lab.devkit.observed import RuleSet, drop_chain
from lab.devkit.view import NodeView
from nat.section import Nat, PortForward

#: Drop reasons (nfmark values) used by the rules in this module.
MARK_UNSOLICITED = 1
MARK_NO_HAIRPIN = 5

UNSOLICITED_CHAIN = "ftlab-nat-unsolicited"
NO_HAIRPIN_CHAIN = "ftlab-nat-no-hairpin"


def outside_interface(view: NodeView, nat: Nat) -> ipaddress.IPv4Interface:
    """The address of the NAT's outside interface (what masquerade and port forwards use)."""
    return view.interface(nat.outside).address


def dnat_target(fwd: PortForward, to=None) -> str:
    """The --to-destination value: keep the port when the mapping is the identity (`to`: the
    address to use instead of fwd.to: its IPv6 twin, written [addr]:port with a port)."""
    to = fwd.to if to is None else to
    host = f"[{to}]" if to.version == 6 else str(to)
    if fwd.to_ports == fwd.ports:
        return str(to)
    if fwd.to_ports.low == fwd.to_ports.high:
        return f"{host}:{fwd.to_ports.low}"
    # A shifted range: "/base" keeps each port's offset (kernel >= 5.x, iptables >= 1.8.6).
    return f"{host}:{fwd.to_ports.low}-{fwd.to_ports.high}/{fwd.ports.low}"


def public_addresses(view: NodeView, nat: Nat) -> list[list[str]]:
    """The NAT's own public addresses (1:1 NATs, forwards on an address of their own) added to the
    outside interface, with its prefix: the router answers ARP for them on the outside link."""
    prefix = outside_interface(view, nat).network.prefixlen
    return [["ip", "addr", "add", f"{address}/{prefix}", "dev", nat.outside] for address in nat.public_addresses()]


def nat_rules(view: NodeView) -> RuleSet:
    """1:1 NAT, masquerade, port forwards, and the observed drop of unsolicited inbound connections."""
    nat: Nat = view.section
    outside = outside_interface(view, nat)
    rules: list[list[str]] = public_addresses(view, nat)
    for one in nat.one_to_one:      # before MASQUERADE: a 1:1 host leaves as its own public address
        rules.append(["iptables", "-t", "nat", "-A", "PREROUTING", "-i", nat.outside, "-d", str(one.public),
                      "-j", "DNAT", "--to-destination", str(one.to)])
        rules.append(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", nat.outside, "-s", str(one.to),
                      "-j", "SNAT", "--to-source", str(one.public)])
    # NAT66 beside NAT44 when the outside interface has an IPv6 address: the same masquerade and
    # forwards (to the inside host's IPv6 address), the same drop of unsolicited connections
    outside6 = view.interface(nat.outside).address6
    tools = ("iptables", "ip6tables") if outside6 is not None and outside6.version == 6 else ("iptables",)
    if nat.masquerade:
        rules += [[tool, "-t", "nat", "-A", "POSTROUTING", "-o", nat.outside, "-j", "MASQUERADE"] for tool in tools]
    for fwd in nat.forwards:
        if fwd.ports.high - fwd.ports.low != fwd.to_ports.high - fwd.to_ports.low:
            raise ValueError(f"{view.name}: forward {fwd.ports} -> {fwd.to_ports}: ranges differ in size")
        rules.append([
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", nat.outside, "-d", str(fwd.public or outside.ip),
            "-p", fwd.proto, "--dport", fwd.ports.iptables(), "-j", "DNAT", "--to-destination", dnat_target(fwd),
        ])
        if "ip6tables" in tools and fwd.to6 is not None and fwd.public is None:
            rules.append(["ip6tables", "-t", "nat", "-A", "PREROUTING", "-i", nat.outside, "-d", str(outside6.ip),
                          "-p", fwd.proto, "--dport", fwd.ports.iptables(), "-j", "DNAT",
                          "--to-destination", dnat_target(fwd, fwd.to6)])
    hairpin = hairpin_rules(view, nat, tools)
    rules += hairpin.iptables
    # A connection that starts outside and was not port-forwarded has nowhere to go: to the
    # router itself (INPUT) or, if someone routes a private address here, through it (FORWARD).
    reason = f"unsolicited inbound connection to {view.name}'s outside address (port not forwarded)"
    for tool in tools:
        rules += drop_chain(UNSOLICITED_CHAIN, MARK_UNSOLICITED, tool=tool)
        for proto in ("tcp", "udp"):
            rules.append([tool, "-A", "INPUT", "-i", nat.outside, "-p", proto,
                          "-m", "conntrack", "--ctstate", "NEW", "-j", UNSOLICITED_CHAIN])
            rules.append([tool, "-A", "FORWARD", "-i", nat.outside, "-p", proto,
                          "-m", "conntrack", "--ctstate", "NEW", "-m", "conntrack", "!", "--ctstate", "DNAT",
                          "-j", UNSOLICITED_CHAIN])
    return RuleSet(rules, {MARK_UNSOLICITED: reason, **hairpin.reasons})


def hairpin_rules(view: NodeView, nat: Nat, tools: tuple[str, ...]) -> RuleSet:
    """NAT loopback. With `hairpin: true`, a connection from the inside to a public address the NAT
    forwards (a port forward, a 1:1 address) is DNATed as one from the outside is, and masqueraded
    behind the router's inside address, so that the host answers through the router and not
    straight to a client on its own link. Without it such a connection reaches the router itself,
    where nothing listens: it is dropped and observed, naming the missing option."""
    outside = outside_interface(view, nat)
    inside = [i for i in view.interfaces if i.name != nat.outside]
    rules: list[list[str]] = []
    if not (nat.forwards or nat.one_to_one) or not inside:
        return RuleSet()
    if nat.hairpin:
        for one in nat.one_to_one:
            rules.append(["iptables", "-t", "nat", "-A", "PREROUTING", "!", "-i", nat.outside, "-d", str(one.public),
                          "-j", "DNAT", "--to-destination", str(one.to)])
        for fwd in nat.forwards:
            rules.append(["iptables", "-t", "nat", "-A", "PREROUTING", "!", "-i", nat.outside, "-d",
                          str(fwd.public or outside.ip), "-p", fwd.proto, "--dport", fwd.ports.iptables(), "-j", "DNAT",
                          "--to-destination", dnat_target(fwd)])
        for intf in inside:
            rules.append(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", intf.name, "-s",
                          str(intf.address.network), "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"])
        return RuleSet(rules)
    reason = (f"NAT loopback is off on {view.name}: a connection from the inside to its public address does not "
              "reach the forwarded host (`hairpin: true` in its nat section turns it on)")
    rules += drop_chain(NO_HAIRPIN_CHAIN, MARK_NO_HAIRPIN)
    publics = [str(a) for a in (outside.ip, *nat.public_addresses()) if a.version == 4]
    for address in dict.fromkeys(publics):
        rules.append(["iptables", "-A", "INPUT", "!", "-i", nat.outside, "-d", address, "-p", "tcp",
                      "-m", "conntrack", "--ctstate", "NEW", "-j", NO_HAIRPIN_CHAIN])
    return RuleSet(rules, {MARK_NO_HAIRPIN: reason})


# -- the model ---------------------------------------------------------------------------------------

def forward_target(nat: Nat, proto: str, port: int, public=None) -> tuple[ipaddress.IPv4Address, int] | None:
    """Where the NAT sends a new connection to one of its public addresses and `port` (None: it
    does not): `public` None or the outside interface's own address means the port forwards that
    name no address of their own; a 1:1 public address sends every port on to its host."""
    inside = nat.inside_of(public) if public is not None else None
    if inside is not None:
        return inside, port
    for fwd in nat.forwards:
        if fwd.proto == proto and port in fwd.ports and fwd.public == (public if public in nat.public_addresses()
                                                                       else None):
            to = fwd.to if public is None or public.version == fwd.to.version else fwd.to6
            return (to, fwd.to_ports.low + (port - fwd.ports.low)) if to is not None else None
    return None


@dataclass(frozen=True)
class KernelNat(Blind):
    """The kernel NAT's model: what its rules do to a new connection. Pure."""

    name: str = "the kernel NAT"
    unsolicited_reason: str = "unsolicited inbound connection to the outside address (port not forwarded)"

    def forward(self, nat: Nat, outside: ipaddress.IPv4Address, in_interface: str | None,
                proto: str, dst: ipaddress.IPv4Address, dport: int) -> tuple[ipaddress.IPv4Address, int] | None:
        """DNAT by a port forward or a 1:1 NAT: a connection arriving on the outside interface (on
        any interface with `hairpin`, IPv4), to the interface's address or one of the NAT's public
        addresses."""
        if dst != outside and dst not in nat.public_addresses():
            return None
        if in_interface != nat.outside and not (nat.hairpin and dst.version == 4):
            return None
        return forward_target(nat, proto, dport, dst)

    def hairpin_source(self, nat: Nat, in_interface: str | None, out_interface: str, translated: bool,
                       src, egress) -> ipaddress.IPv4Address | None:
        """NAT loopback's masquerade: a connection from the inside that a forward translated and
        that leaves by an inside interface into its own source's subnet takes that interface's
        address (`egress`: its address with prefix), so that the host answers through the router."""
        if not (nat.hairpin and translated and in_interface != nat.outside and out_interface != nat.outside):
            return None
        return egress.ip if src.version == egress.version and src in egress.network else None

    def refuses_hairpin(self, nat: Nat, in_interface: str | None, dst, outside) -> bool:
        """The no-hairpin rule (INPUT): a new connection from the inside to the NAT's public address."""
        return (not nat.hairpin and in_interface != nat.outside and dst.version == 4
                and (dst == outside or dst in nat.public_addresses()) and bool(nat.forwards or nat.one_to_one))

    def masquerades(self, nat: Nat, out_interface: str) -> bool:
        return nat.masquerade and out_interface == nat.outside

    def source(self, nat: Nat, out_interface: str, src, outside) -> ipaddress.IPv4Address | None:
        """The source a new connection leaves with (None: unchanged): a 1:1 host's public address,
        else the outside address when the NAT masquerades."""
        if out_interface != nat.outside:
            return None
        public = nat.public_of(src)
        if public is not None:
            return public
        return outside if nat.masquerade else None

    def drops(self, nat: Nat, in_interface: str | None, state: str, translated: bool) -> bool:
        """The unsolicited-inbound rule (INPUT and FORWARD): NEW on the outside interface, not translated."""
        return in_interface == nat.outside and state == "NEW" and not translated


def setup(view: NodeView) -> DeviceSetup:
    rules = nat_rules(view)
    return DeviceSetup(iptables=rules.iptables, reasons=rules.reasons, sysctls=idle_sysctls(view.section.idle_timeout))


DEVICE = Device(
    name="nat", section="nat", applies=lambda view: view.section is not None, setup=setup,
    model=KernelNat(), events=frozenset({"drop"}),   # its drops are reported by the drop observer
    features=(features.KERNEL_NAT, features.CONNTRACK_MARK, features.NFQUEUE),
)
