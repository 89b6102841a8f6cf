"""Kernel features a device needs, as the start-up probe checks them (lab.network.probe).

Each feature loads throw-away rules into a chain `ftlab-probe` of the table(s) it names, in the
sandbox's own network namespace; the probe removes the chains afterwards. A device lists the
ones it needs (lab.devkit.device.Device.features); the probe checks the union.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.devkit import queues

PROBE_CHAIN = "ftlab-probe"


@dataclass(frozen=True)
class KernelFeature:
    name: str                                   # what a user is told is missing
    hint: str                                   # the kernel option or package that provides it
    steps: tuple[tuple[str, ...], ...]          # argv lists, run in order


def _chain(table: str) -> tuple[str, ...]:
    return ("iptables", "-t", table, "-N", PROBE_CHAIN)


CONNTRACK_MARK = KernelFeature(
    "iptables filter/conntrack/comment/MARK", "xt_conntrack, xt_comment, xt_mark",
    (_chain("filter"),
     ("iptables", "-A", PROBE_CHAIN, "-m", "conntrack", "--ctstate", "NEW", "-m", "comment",
      "--comment", "probe", "-j", "MARK", "--set-mark", "1")))
NFQUEUE = KernelFeature(
    "NFQUEUE target", "CONFIG_NETFILTER_XT_TARGET_NFQUEUE",
    (_chain("mangle"),
     ("iptables", "-t", "mangle", "-A", PROBE_CHAIN, "-j", "NFQUEUE", "--queue-num", str(queues.PROBE))))
KERNEL_NAT = KernelFeature(
    "kernel NAT (MASQUERADE, DNAT)", "CONFIG_NF_NAT, CONFIG_IP_NF_TARGET_MASQUERADE",
    (_chain("nat"),
     ("iptables", "-t", "nat", "-A", PROBE_CHAIN, "-j", "MASQUERADE"),
     ("iptables", "-t", "nat", "-A", PROBE_CHAIN, "-p", "tcp", "-j", "DNAT", "--to-destination", "192.0.2.1")))
FTP_HELPER = KernelFeature(
    "conntrack FTP helper (CT --helper ftp)", "CONFIG_NF_CONNTRACK_FTP, CONFIG_NETFILTER_XT_TARGET_CT",
    (_chain("raw"),
     ("iptables", "-t", "raw", "-A", PROBE_CHAIN, "-p", "tcp", "--dport", "21", "-j", "CT", "--helper", "ftp")))
#: nftables' log statement to a netlink group (how nft drops are observed: nft cannot queue here).
NFT_LOG = KernelFeature(
    "nftables log to a netlink group (nft log group)", "CONFIG_NFT_LOG, CONFIG_NETFILTER_NETLINK_LOG",
    (("nft", "add", "table", "inet", PROBE_CHAIN),
     ("nft", "add", "chain", "inet", PROBE_CHAIN, "c", "{", "type", "filter", "hook", "forward", "priority",
      "0", ";", "}"),
     ("nft", "add", "rule", "inet", PROBE_CHAIN, "c", "log", "group", str(queues.PROBE), "drop"),
     ("nft", "delete", "table", "inet", PROBE_CHAIN)))
#: The conntrack FTP helper attached through an nftables ct helper object (ALG mode kernel-nft).
NFT_CT_HELPER = KernelFeature(
    "conntrack FTP helper through nftables (ct helper)", "CONFIG_NF_CONNTRACK_FTP, CONFIG_NFT_CT",
    (("nft", "add", "table", "inet", PROBE_CHAIN),
     ("nft", "add", "ct", "helper", "inet", PROBE_CHAIN, "ftp", "{", "type", '"ftp"', "protocol", "tcp", ";", "}"),
     ("nft", "delete", "table", "inet", PROBE_CHAIN)))
