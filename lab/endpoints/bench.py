"""`ftlab bench [NAME|FILE]`: throughput on one network's native data path, side by side in one run.

The built-in client and server (plain and PROT P, RETR and STOR), curl + vsftpd and iperf3 move
the same bytes between the network's client and server nodes (lab.endpoints.throughput does the
measuring); the result is printed as ratios and written to bench.json. Any topology: the client
dials what it dials for FTP - the server's own address, or the public address of a NAT in front
of it (the DMZ case). The network is brought up without device programs (data connections never
pass through Python anyway); its NAT and filters are the kernel's, as in a run. The bench's ports
are ones the path admits (lab.network.pathports: the network's own control ports and the server's
passive range first), forwarded for the measurement where the dialled NAT has no forward, and
checked with one connect each before anything is measured: a path that blocks the bench is one
line, within seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.network import pathports
from lab.topology import loader as topo

#: Passive ports per FTP server of the bench (one transfer at a time: a few are plenty).
PASV_PORTS = 10


def choose_ports(topology) -> pathports.Ports:
    """Two control ports and iperf3's plus two passive ranges, all admitted by the path's models."""
    return pathports.choose(topology, controls=2, data=1 + 2 * PASV_PORTS, what="benchmark")


def bench_ports(ports: pathports.Ports) -> tuple[int, int, tuple[int, int], int, tuple[int, int]]:
    """(iperf3, ftlab control, ftlab passive range, vsftpd control, vsftpd passive range) from the
    chosen ports; a passive range must be contiguous (a server picks any port inside it)."""
    iperf3, *rest = ports.data
    halves = rest[:PASV_PORTS], rest[PASV_PORTS:]
    ranges = []
    for half in halves:
        if half != list(range(half[0], half[0] + len(half))):
            raise pathports.PathBlocked(f"the path admits no {PASV_PORTS} consecutive passive ports "
                                        f"for a bench server (got {', '.join(map(str, half))})")
        ranges.append((half[0], half[-1]))
    return iperf3, ports.controls[0], ranges[0], ports.controls[1], ranges[1]


def bench_topology(name: str, size: int, runs: int, out: Path, progress=lambda line: print(line, flush=True)) -> str:
    from lab.endpoints import throughput as bench
    from lab.network.net import LabNet

    topology = topo.load(name)
    server_ip = topology.address_of(topology.ftp.server)
    chosen = choose_ports(topology)
    iperf3, ftlab, ftlab_pasv, vsftpd, vsftpd_pasv = bench_ports(chosen)
    out.mkdir(parents=True, exist_ok=True)
    with LabNet(topology, workdir=out / "work", devices=False) as net:
        for node, argv in pathports.temporary_forwards(topology, chosen.all):
            progress(f"{node}: forwarding tcp {argv[argv.index('--dport') + 1]} to the server for the benchmark")
            net.run(node, argv)
        pathports.require(net, topology, chosen.all, "benchmark")

        def server_popen(argv, **kw):
            return net.popen(topology.ftp.server, argv, **kw)

        def client_popen(argv, **kw):
            return net.popen(topology.ftp.client, argv, **kw)

        result = bench.run_bench(size=size, runs=runs, server_host=str(server_ip), server_popen=server_popen,
                                 client_popen=client_popen, progress=progress,
                                 dial_host=str(topology.ftp.server_address),
                                 ports=bench.BenchPorts(iperf3, ftlab, ftlab_pasv, vsftpd, vsftpd_pasv))
    doc = result.to_dict()
    doc["topology"] = topology.name
    doc["ports"] = {"iperf3": iperf3, "ftlab": [ftlab, *ftlab_pasv], "vsftpd": [vsftpd, *vsftpd_pasv]}
    doc["all_ratios"] = doc.pop("ratios")
    # The headline ratios: RETR, built-in client and server.
    doc["ratios"] = {k: doc["all_ratios"].get(f"retr.{k}") for k in
                     ("plain_vs_iperf3", "tls_vs_iperf3", "tls_vs_curl_vsftpd")}
    (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    return bench.format_result(result) + f"\n\nbench.json: {out / 'bench.json'}"
