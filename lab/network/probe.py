"""Probe, at the start of a run, the tools and kernel features the lab needs.

Runs inside the run's sandbox (its fresh network namespace), so the throw-away rules and
qdisc it loads touch nothing outside. A missing piece raises MissingFeature naming it,
instead of a puzzling failure later in the middle of a scenario. The kernel features the
devices need come from the device registry (each device names its own); the lab's own are here.
"""

from __future__ import annotations

import shutil
import subprocess

from lab.devkit.features import PROBE_CHAIN, KernelFeature
from lab.errors import LabError, MissingFeature
from lab.topology import devices

TOOLS = {
    "mnexec": "Mininet's mnexec (Debian package mininet)",
    "ip": "iproute2",
    "tc": "iproute2's tc",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "iperf3": "iperf3",
    "nft": "nftables",
}

#: The lab's own kernel features (link shaping); the devices' come from the registry.
HTB = KernelFeature("HTB qdisc", "CONFIG_NET_SCH_HTB",
                    (("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb"),
                     ("tc", "qdisc", "del", "dev", "lo", "root")))


def features() -> list[KernelFeature]:
    return [*devices.kernel_features(), HTB]


def _cleanup(feature: KernelFeature) -> None:
    """Remove the probe chains the feature made (so every feature starts from none)."""
    made = [argv for argv in feature.steps if argv[0] == "iptables" and "-N" in argv]
    for table in [argv[argv.index("-t") + 1] if "-t" in argv else "filter" for argv in made]:
        for op in ("-F", "-X"):
            subprocess.run(["iptables", "-t", table, op, PROBE_CHAIN], capture_output=True)
    for argv in feature.steps:          # an nft table a failed step left behind
        if argv[:3] == ("nft", "add", "table"):
            subprocess.run(["nft", "delete", "table", *argv[3:]], capture_output=True)


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
    for feature in features():
        try:
            for argv in feature.steps:
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode != 0:
                    raise MissingFeature(f"missing kernel feature: {feature.name} ({feature.hint}): "
                                         f"`{' '.join(argv)}` said: {done.stderr.strip()}")
        finally:
            _cleanup(feature)
    _probed = True


def require_in_sandbox() -> None:
    from lab.network.sandbox import in_sandbox

    if not in_sandbox():
        raise LabError("refusing to probe kernel features outside a sandbox (it loads throw-away rules)")
