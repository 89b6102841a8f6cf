"""Added latency per control packet: the scapy ALG versus the kernel helper, same path, same run.

    python -m lab.endpoints.algbench [--count 400] [--topology client-nat]

In a sandbox, the picture is brought up four times (alg off, the kernel helper, the scapy ALG
installing its mappings with an iptables process each - the old way - and the scapy ALG as it
works now, through libnftables in-process). On each, a client
holds one control connection to a responder on the server's port 21 and times `count` NOOP
round trips (every one is a command segment and a reply segment through the NAT router, so
both cross the device's queue), then `count/8` PORT round trips (an announcement: the ALG
rewrites it and installs a mapping before forwarding). Prints the median round trip of each, the
median added latency per control packet = (median RTT - median RTT with alg off) / 2, and the
median time the ALG took to install a mapping (its mapping-open events' install_ms).
"""

from __future__ import annotations

import argparse
import json
import sys

CLIENT = r"""
import socket, sys, time, statistics, json
addr, n = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((addr, 21), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
f.readline()
def rtts(line, count):
    out = []
    for i in range(count):
        t = time.perf_counter_ns()
        s.sendall(line.replace(b"{i}", str(1 + i % 250).encode()))
        f.readline()
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out
me = s.getsockname()[0].replace(".", ",")
rtts(b"NOOP\r\n", 20)                        # warm up
noop = rtts(b"NOOP\r\n", n)
port = rtts(("PORT %s,200,{i}\r\n" % me).encode(), max(n // 8, 10))   # a new port each time
print(json.dumps({"noop": noop, "port": port}))
"""

RESPONDER = r"""
import socket
srv = socket.create_server(("0.0.0.0", 21))
while True:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = c.makefile("rb")
    c.sendall(b"220 bench\r\n")
    for line in f:
        c.sendall(b"200 ok\r\n")
    c.close()
"""


#: (label, ALG mode, how the scapy ALG installs its mappings): the reference devices, then the ALG
#: the old way (an iptables process per mapping) and the way it works now (libnftables in-process).
DEVICES = (("off", "off", None), ("kernel", "kernel", None), ("scapy-iptables", "scapy", "iptables"),
           ("scapy", "scapy", "nft"))


def in_sandbox_bench(topology: str, count: int) -> dict:
    import os
    import statistics

    from lab.network.net import LabNet
    from lab.network.ready import wait_until
    from lab.topology.loader import load

    topo = load(topology)
    out = {}
    for label, alg, maps in DEVICES:
        os.environ["FTLAB_ALG_MAPS"] = maps or ""       # the ALG process inherits it
        with LabNet(topo, alg=alg) as net:
            responder = net.popen("server", [sys.executable, "-c", RESPONDER])
            wait_until(lambda: ":21 " in net.run("server", ["ss", "-ltn"]).stdout, timeout=5,
                       what="the responder in server", proc=responder)
            done = net.run("client", [sys.executable, "-c", CLIENT, str(topo.ftp.server_address), str(count)],
                           timeout=120)
            rtts = json.loads(done.stdout)
            events = [json.loads(line) for line in net.events_path.read_text().splitlines() if line.strip()]
            installs = [e["install_ms"] for e in events if e.get("type") == "mapping-open" and "install_ms" in e]
        out[label] = {k: statistics.median(v) for k, v in rtts.items()}
        out[label]["samples"] = len(rtts["noop"])
        if installs:
            out[label]["install"] = statistics.median(installs)
            out[label]["install_max"] = max(installs)
            out[label]["installs"] = len(installs)
    os.environ.pop("FTLAB_ALG_MAPS", None)
    return out


def main(argv: list[str] | None = None) -> int:
    from lab.network.sandbox import call_in_sandbox

    p = argparse.ArgumentParser(prog="lab.endpoints.algbench", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--topology", default="client-nat")
    a = p.parse_args(argv)
    r = call_in_sandbox(__file__, "in_sandbox_bench", a.topology, a.count, timeout=600)
    base = r["off"]
    print(f"{a.topology}, {r['scapy']['samples']} NOOP round trips per device (median, ms):")
    print(f"  {'device':<15} {'NOOP RTT':>9} {'added/pkt':>10} {'PORT RTT':>9} {'added/pkt':>10} "
          f"{'mapping install (max, n)':>26}")
    for label, _, _ in DEVICES:
        m = r[label]
        install = f"{m['install']:.3f} ({m['install_max']:.3f}, {m['installs']})" if "install" in m else "-"
        print(f"  {label:<15} {m['noop']:9.3f} {(m['noop'] - base['noop']) / 2:10.3f} "
              f"{m['port']:9.3f} {(m['port'] - base['port']) / 2:10.3f} {install:>26}")
    added = (r["scapy"]["noop"] - r["kernel"]["noop"]) / 2
    install = r["scapy"].get("install")
    print(f"scapy ALG: {(r['scapy']['noop'] - base['noop']) / 2:.3f} ms added per control packet, {added:.3f} ms "
          f"more than the kernel helper (goal <= 0.1 ms: {'met' if added <= 0.1 else 'NOT met'})")
    if install is not None:
        before = r["scapy-iptables"].get("install")
        print(f"mapping install: {install:.3f} ms median in-process (goal <= 0.2 ms: "
              f"{'met' if install <= 0.2 else 'NOT met'})" + (f"; {before:.3f} ms with an iptables process" if before
                                                              else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
