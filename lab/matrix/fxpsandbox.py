"""The body of `ftlab matrix --scenarios fxp` that runs inside a sandbox (lab.network.sandbox loads this
file by its path: module-level code here stays plain, no dataclasses): one picture brought up once, and
per three-way case the lab's server in both server nodes and `ftlab client SRC fxp DST --json` in
the client node; the copy checked by SHA-256; the devices' events while the client ran, as the
two-party worker gathers a cell's (lab.matrix.worker.cell_events). Returns what was seen, per case;
lab.matrix.fxprun decides (fxprun.observe), predicts and compares."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from lab.errors import LabError

USER, PASSWORD = "lab", "lab-secret"
SETTLE = 0.05       # after the client ends: the devices' last events reach the file (as lab.matrix.worker waits)


def in_sandbox_run(topology_path: str, cases: list[dict], size: int) -> dict:
    """Bring the picture up once; per case start both servers with its statements, run the client."""
    import os
    import subprocess
    import tempfile
    import time

    from lab.ftps import pki
    from lab.matrix.jsonl import JsonLines
    from lab.matrix.worker import cell_events
    from lab.network.net import LabNet
    from lab.topology.loader import load as load_topology

    topology = load_topology(topology_path)
    tmp = Path(tempfile.mkdtemp(prefix="ftlab-fxp-"))
    ftlab = [sys.executable, "-m", "lab.cli"]
    content = os.urandom(size)
    sha = hashlib.sha256(content).hexdigest()
    addresses = sorted({a for c in cases for s in c["servers"].values() for a in (s["address"],)}
                       | {str(topology.address_of(s["node"])) for c in cases for s in c["servers"].values()})
    pki.init_ca(tmp / "pki")
    cert = pki.issue_server(tmp / "pki", "server", ips=addresses)
    results = {}
    seen_flows: set = set()                 # flows dropped in earlier cases: their retransmitted SYNs are not news
    with LabNet(topology, workdir=tmp / "run") as net:
        for n, case in enumerate(cases):
            work = tmp / f"case-{n}"
            procs = []
            for side, server in case["servers"].items():
                root = work / side
                root.mkdir(parents=True)
                if side == "src":
                    (root / "f.bin").write_bytes(content)
                st = {"LOGINDELAY": "0", "DATATIMEOUT": "4", **server["statements"]}
                (work / f"{side}.data").write_text("".join(f"{k} {v}\n" for k, v in st.items()))
                log = open(work / f"{side}.log", "w")
                procs.append(net.popen(server["node"], [*ftlab, "server", "--listen", "0.0.0.0:21", "--root", str(root),
                                                        "--user", f"{USER}:{PASSWORD}", "--cert", str(cert.cert),
                                                        "--key", str(cert.key), "--ftpdata", str(work / f"{side}.data")],
                                       stdout=log, stderr=subprocess.STDOUT))
            for side, server in case["servers"].items():
                deadline = time.monotonic() + 10
                while ":21 " not in net.run(server["node"], ["ss", "-ltn"]).stdout:
                    if time.monotonic() > deadline:
                        raise LabError(f"the FTP server in {server['node']} did not start: "
                                       f"{(work / f'{side}.log').read_text()[-300:]}")
                    time.sleep(0.05)
            src, dst = case["servers"]["src"], case["servers"]["dst"]
            argv = [*ftlab, "client", f"ftp://{USER}:{PASSWORD}@{src['address']}/f.bin", "--json", "--security",
                    case["security"], "--ca", str(tmp / "pki" / "ca.pem"), "--timeout", "10", "fxp",
                    f"ftp://{USER}:{PASSWORD}@{dst['address']}/copy.bin", "--data", case["data"],
                    "--passive", case["passive"]] + (["--sscn", case["sscn"]] if case["sscn"] else [])
            tail = JsonLines(net.events_path)           # the device events from here on are this case's
            done = net.run(net.topology.ftp.client, argv, check=False, timeout=60)
            time.sleep(SETTLE)
            events = cell_events(tail.read(), seen_flows)
            try:
                out = json.loads(done.stdout)
            except ValueError:
                out = None
            copy = work / "dst" / "copy.bin"
            copied = copy.exists() and hashlib.sha256(copy.read_bytes()).hexdigest() == sha
            for p in procs:
                p.terminate()
                p.wait(5)
            results[case["id"]] = {"client": out if isinstance(out, dict) else None, "copied": copied,
                                   "events": events, "exit_code": done.returncode,
                                   "stderr": (done.stderr or done.stdout or "")[-2000:]}
    return results
