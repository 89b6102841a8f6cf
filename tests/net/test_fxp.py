"""Three-way (FXP) transfers with real packets: topologies/examples/fxp-nat.yaml (the client and server A
public, server B behind a NAT router that forwards 21 and its passive range 60000-60100, with the
scapy ALG). The lab's client in the client node drives server A and server B (`ftlab client SRC fxp
DST --json`); every copy is checked by SHA-256 in the destination's root.

What each case should do, and why (the expectation is written before the run, as a prediction):
    plain, B passive (PASV)          pass: the ALG rewrites B's 227 to 192.0.2.1, the port is forwarded
    tls+SSCN, B passive (PASV)       fail: the 227 is encrypted and names 10.2.2.10; A's connection to a
                                     private address dies at the internet router
    tls+SSCN, B passive (EPSV)       pass: EPRT names 192.0.2.1 (where the client reached B), forwarded
    tls+SSCN, A passive (PASV)       pass: B connects out to 203.0.113.10 through the masquerade
    plain, A passive, A PASSIVEDATACONN NOREDIRECT   refused: A closes B's connection (425 names it)
    plain, A passive, B PORTCOMMANDIPADDR NOREDIRECT refused: B refuses the PORT naming A (504 names it)
"""

from __future__ import annotations

import hashlib
import random

import pytest

from lab.network.sandbox import call_in_sandbox

pytestmark = [pytest.mark.network]

USER, PASSWORD = "lab", "lab-pw"
CONTENT = random.Random(15).randbytes(400_000)
SHA256 = hashlib.sha256(CONTENT).hexdigest()

# (name, security, data, passive side, sscn side, {server: statements}, expected outcome, what it must say)
CASES = [
    ("alg-rewrites-227", "plain", "pasv", "src", None, {}, "ok", ""),
    ("encrypted-227-private", "tls", "pasv", "src", "dst", {}, "failed", ""),
    ("epsv-through-nat", "tls", "epsv", "src", "dst", {}, "ok", ""),
    ("b-connects-out", "tls", "pasv", "dst", "src", {}, "ok", ""),
    ("passivedataconn", "plain", "pasv", "dst", None, {"server-a": {"PASSIVEDATACONN": "NOREDIRECT"}}, "failed",
     "PASSIVEDATACONN NOREDIRECT"),
    ("portcommandipaddr", "plain", "pasv", "dst", None, {"server-b": {"PORTCOMMANDIPADDR": "NOREDIRECT"}}, "failed",
     "PORTCOMMANDIPADDR NOREDIRECT"),
]


def in_sandbox_fxp(topology_file: str, cases: list) -> dict:
    """Bring fxp-nat up once; per case start both servers with its statements, run the client."""
    import json
    import sys
    import tempfile
    import time
    from pathlib import Path

    from lab.ftps import pki
    from lab.network.net import LabNet
    from lab.topology.loader import load

    topology = load(topology_file)
    tmp = Path(tempfile.mkdtemp(prefix="ftlab-fxp-"))
    ftlab = str(Path(sys.executable).with_name("ftlab"))
    pki.init_ca(tmp / "pki")
    cert = pki.issue_server(tmp / "pki", "server", ips=["203.0.113.10", "10.2.2.10", "192.0.2.1"])
    addresses = {"server-a": "203.0.113.10", "server-b": "192.0.2.1"}     # as the client dials them
    results = {}
    with LabNet(topology, workdir=tmp / "run") as net:
        for name, security, data, passive, sscn, statements, _, _ in cases:
            procs = []
            for node in addresses:             # server-a, server-b
                root = tmp / name / node
                root.mkdir(parents=True)
                if node == "server-b":
                    (root / "f.bin").write_bytes(CONTENT)
                st = {"PASSIVEDATAPORTS": "(60000,60100)", "LOGINDELAY": "0", "DATATIMEOUT": "4",
                      **statements.get(node, {})}
                ftpdata = tmp / name / f"{node}.data"
                ftpdata.write_text("".join(f"{k} {v}\n" for k, v in st.items()))
                procs.append(net.popen(node, [ftlab, "server", "--listen", "0.0.0.0:21", "--root", str(root),
                                              "--user", f"{USER}:{PASSWORD}", "--cert", str(cert.cert),
                                              "--key", str(cert.key), "--ftpdata", str(ftpdata)],
                                       stdout=open(tmp / name / f"{node}.log", "w"), stderr=subprocess_stdout()))
            for node in addresses:             # server-a, server-b
                deadline = time.monotonic() + 10
                while ":21 " not in net.run(node, ["ss", "-ltn"]).stdout:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{node} did not start: {(tmp / name / f'{node}.log').read_text()}")
                    time.sleep(0.05)
            argv = [ftlab, "client", f"ftp://{USER}:{PASSWORD}@{addresses['server-b']}/f.bin", "--json",
                    "--security", security, "--ca", str(tmp / "pki" / "ca.pem"), "--timeout", "10",
                    "fxp", f"ftp://{USER}:{PASSWORD}@{addresses['server-a']}/copy.bin", "--data", data,
                    "--passive", passive] + (["--sscn", sscn] if sscn else [])
            done = net.run("client", argv, check=False, timeout=60)
            try:
                out = json.loads(done.stdout)
            except ValueError:
                out = {"outcome": "lab-error", "reason": done.stderr[-800:]}
            copy = tmp / name / "server-a" / "copy.bin"
            out["copied_sha256"] = hashlib_sha256(copy) if copy.exists() else None
            for p in procs:
                p.terminate()
                p.wait(5)
            out["logs"] = {n: (tmp / name / f"{n}.log").read_text()[-3000:] for n in ("server-a", "server-b")}
            results[name] = out
    return results


def subprocess_stdout():
    import subprocess

    return subprocess.STDOUT


def hashlib_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(300)
def test_three_way_transfers_through_nat():
    from lab import ROOT

    results = call_in_sandbox(__file__, "in_sandbox_fxp", str(ROOT / "topologies" / "examples" / "fxp-nat.yaml"),
                              CASES, timeout=280)
    wrong = []
    for name, _, _, _, _, _, expected, says in CASES:
        r = results[name]
        passed = r.get("outcome") == "ok" and r.get("copied_sha256") == SHA256
        if passed != (expected == "ok") or (says and says not in r.get("reason", "")):
            wrong.append(f"{name}: expected {expected} {says!r}, got {r.get('outcome')} {r.get('stage')} "
                         f"{r.get('reason')}\n{r.get('transcript', [])[-12:]}\n{r.get('logs')}")
    assert not wrong, "\n\n".join(wrong)
    # the refusal on the NAT case is where the prediction says: the data connection, not the setup
    assert results["encrypted-227-private"]["stage"] in ("data-connect", "transfer")
