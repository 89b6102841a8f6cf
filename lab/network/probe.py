"""Probe, at the start of a run, the tools and kernel features the lab needs.

Runs inside the run's sandbox (its fresh network namespace), so the throw-away rules and
qdisc it loads touch nothing outside. A missing piece raises MissingFeature naming it,
instead of a puzzling failure later in the middle of a scenario.
"""

from __future__ import annotations

import shutil
import subprocess

from lab.errors import LabError, MissingFeature

TOOLS = {
    "mnexec": "Mininet's mnexec (Debian package mininet)",
    "ip": "iproute2",
    "tc": "iproute2's tc",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "iperf3": "iperf3",
}

# (feature, package/kernel option hint, argv lists run in order). Each loads a throw-away
# rule in the sandbox's own netns; the chain is removed afterwards.
FEATURES = [
    ("iptables filter/conntrack/comment/MARK", "xt_conntrack, xt_comment, xt_mark",
     [["iptables", "-N", "ftlab-probe"],
      ["iptables", "-A", "ftlab-probe", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment",
       "--comment", "probe", "-j", "MARK", "--set-mark", "1"]]),
    ("NFQUEUE target", "CONFIG_NETFILTER_XT_TARGET_NFQUEUE",
     [["iptables", "-A", "ftlab-probe", "-j", "NFQUEUE", "--queue-num", "30"]]),
    ("kernel NAT (MASQUERADE, DNAT)", "CONFIG_NF_NAT, CONFIG_IP_NF_TARGET_MASQUERADE",
     [["iptables", "-t", "nat", "-N", "ftlab-probe"],
      ["iptables", "-t", "nat", "-A", "ftlab-probe", "-j", "MASQUERADE"],
      ["iptables", "-t", "nat", "-A", "ftlab-probe", "-p", "tcp", "-j", "DNAT", "--to-destination",
       "192.0.2.1"]]),
    ("conntrack FTP helper (CT --helper ftp)", "CONFIG_NF_CONNTRACK_FTP, CONFIG_NETFILTER_XT_TARGET_CT",
     [["iptables", "-t", "raw", "-N", "ftlab-probe"],
      ["iptables", "-t", "raw", "-A", "ftlab-probe", "-p", "tcp", "--dport", "21", "-j", "CT",
       "--helper", "ftp"]]),
    ("HTB qdisc", "CONFIG_NET_SCH_HTB",
     [["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"],
      ["tc", "qdisc", "del", "dev", "lo", "root"]]),
]

CLEANUP = [["iptables", "-t", table, *op, "ftlab-probe"]
           for table in ("filter", "nat", "raw") for op in (["-F"], ["-X"])]

_probed = False


def probe(force: bool = False) -> None:
    """Check tools and features once per process; raise MissingFeature naming what is missing."""
    global _probed
    if _probed and not force:
        return
    require_in_sandbox()
    missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise MissingFeature("missing tool: " + ", ".join(missing))
    try:
        for feature, hint, steps in FEATURES:
            for argv in steps:
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode != 0:
                    raise MissingFeature(f"missing kernel feature: {feature} ({hint}): "
                                         f"`{' '.join(argv)}` said: {done.stderr.strip()}")
    finally:
        for argv in CLEANUP:
            subprocess.run(argv, capture_output=True)
    _probed = True


def require_in_sandbox() -> None:
    from lab.network.sandbox import in_sandbox

    if not in_sandbox():
        raise LabError("refusing to probe kernel features outside a sandbox (it loads throw-away rules)")
