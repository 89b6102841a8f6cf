"""`ftlab bench [NAME]`: throughput on one picture's native data path, side by side in one run.

The built-in client and server (plain and PROT P, RETR and STOR), curl + vsftpd and iperf3 move
the same bytes between the picture's client and server nodes (lab.endpoints.throughput does the measuring);
the result is printed as ratios and written to bench.json. The network is brought up without
device programs: data connections never pass through Python anyway, and the benchmark's ports
are not the pictures' control ports.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.errors import InputError, Problem
from lab.topology import loader as topo


def bench_topology(name: str, size: int, runs: int, out: Path) -> str:
    from lab.endpoints import throughput as bench
    from lab.network.net import LabNet

    topology = topo.load(name)
    server_ip = topology.address_of(topology.ftp.server)
    if topology.ftp.server_address != server_ip:
        raise InputError([Problem(name, 0, "topology", "the benchmark needs a picture whose client reaches the "
                                  "server's own address (e.g. lan, client-nat, static-filter): the benchmark's "
                                  "servers listen on ports no NAT forwards")])
    out.mkdir(parents=True, exist_ok=True)
    with LabNet(topology, workdir=out / "work", devices=False) as net:
        def server_popen(argv, **kw):
            return net.popen(topology.ftp.server, argv, **kw)

        def client_popen(argv, **kw):
            return net.popen(topology.ftp.client, argv, **kw)

        result = bench.run_bench(size=size, runs=runs, server_host=str(server_ip), server_popen=server_popen,
                                 client_popen=client_popen, progress=lambda line: print(line, flush=True))
    doc = result.to_dict()
    doc["topology"] = topology.name
    doc["all_ratios"] = doc.pop("ratios")
    # The headline ratios: RETR, built-in client and server.
    doc["ratios"] = {k: doc["all_ratios"].get(f"retr.{k}") for k in
                     ("plain_vs_iperf3", "tls_vs_iperf3", "tls_vs_curl_vsftpd")}
    (out / "bench.json").write_text(json.dumps(doc, indent=1) + "\n")
    return bench.format_result(result) + f"\n\nbench.json: {out / 'bench.json'}"
