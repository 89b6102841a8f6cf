"""The reference device: the Linux kernel's own FTP helper (nf_conntrack_ftp + nf_nat_ftp).

    nat: {alg: kernel}   ->  nat.kernel_helper.setup(view)

The helper is assigned explicitly (automatic assignment by port is gone from modern kernels):
`-t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp`, also for 990 and any configured
control port (on 990 it only ever sees TLS, like on a TLS-upgraded 21). The data connections it
expects become RELATED, so they are accepted in FORWARD. How the helper parses and rewrites, and
its blind spot after CCC (the first clear line is not inspected), is in
reference/zos-ftp-and-rfcs.md section 8.1; tests/net/test_devices.py pins that difference.

The optional process (`python -m nat.kernel_helper --config F`) turns `conntrack -E expect`
into mapping-open events, so the kernel device is observable like the scapy one.

Kernel features: the conntrack FTP helper (CT --helper ftp). Its model for prediction: an
inspector that misses the first cleartext line after CCC.
"""

from __future__ import annotations

import re
import subprocess
import sys

from lab.devkit import features
from lab.devkit.device import Device, DeviceSetup
from lab.devkit.events import EventWriter
from lab.devkit.inspection import Inspector
from lab.devkit.view import NodeView, config_path


def setup(view: NodeView) -> DeviceSetup:
    # IPv6 too when the node has it: nf_conntrack_ftp reads EPRT |2| and 229 and nf_nat_ftp
    # rewrites them for NAT66 (the helper is the same for both families)
    rules = [[tool, "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", str(p),
              "-j", "CT", "--helper", "ftp"] for tool in view.tools for p in view.control_ports]
    rules += [[tool, "-I", "FORWARD", "1", "-m", "conntrack", "--ctstate", "RELATED", "-j", "ACCEPT"]
              for tool in view.tools]
    return DeviceSetup(
        iptables=rules,
        sysctls={},
        argv=[sys.executable, "-m", "nat.kernel_helper", "--config", str(config_path(view, "kernel-helper"))],
        config={"device": view.name, "events": str(view.events)},
    )


DEVICE = Device(
    name="kernel-helper", section="nat", applies=lambda view: view.section.alg == "kernel", setup=setup,
    program="nat.kernel_helper",
    model=Inspector("the kernel helper", misses_first_line_after_ccc=True, rewrites="translated", related=True),
    events=frozenset({"ready", "mapping-open"}),
    features=(features.FTP_HELPER, features.CONNTRACK_MARK),
)


# [NEW] 300 proto=6 src=198.51.100.2 dst=203.0.113.1 sport=0 dport=1025 mask-src=... class=0 helper=ftp
_EXPECT = re.compile(r"\[NEW\].*?src=(\S+) dst=(\S+) sport=\d+ dport=(\d+).*?master-src=(\S+)")


def main(argv: list[str] | None = None) -> int:
    import signal

    from lab.devkit.nfq import load_config

    cfg = load_config(argv, "nat.kernel_helper")
    events = EventWriter(cfg.get("events"), cfg["device"], "kernel-helper")
    # stdbuf: conntrack block-buffers its stdout on a pipe, and events must arrive as they happen
    proc = subprocess.Popen(["stdbuf", "-oL", "conntrack", "-E", "expect"], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    print("READY", flush=True)
    events.emit("ready", helper="ftp")
    try:
        for line in proc.stdout:
            m = _EXPECT.search(line)
            if m:
                events.emit("mapping-open", public=f"{m.group(2)}:{m.group(3)}", peer=m.group(1),
                            private=f"{m.group(4)} (nf_nat_ftp expectation)", expectation=line.strip())
    finally:
        proc.terminate()
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
