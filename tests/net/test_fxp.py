"""Three-way (FXP) transfers with real packets, end to end: `ftlab matrix --scenarios fxp` brings up
topologies/examples/fxp-nat.yaml (server B behind NAT, its control port and passive range forwarded,
the scapy ALG) and fxp-filter.yaml (server B behind a dynamic filter), runs every case of
scenarios/fxp.yaml with the lab's client driving two lab servers, and compares each with its
prediction by lab.matrix.fxpwalk. Every case must be as predicted (outcome, stage and the node that
decided, read from the device events), and the run must show passing transfers, a failure naming the
filter that dropped it, and refusals naming PASSIVEDATACONN and PORTCOMMANDIPADDR, and write its report
(index.html, junit.xml)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.network]


@pytest.mark.timeout(400)
def test_matrix_runs_the_three_way_cases_as_predicted(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--scenarios", "fxp", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=390)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.rstrip().endswith(f"report: {tmp_path}/index.html")
    page = (tmp_path / "index.html").read_text()
    assert page.count("fxp-nat/plain/pasv+passive-src") >= 2 and "DIFFERS" not in page       # table and transcript
    assert (tmp_path / "junit.xml").is_file()
    doc = json.loads((tmp_path / "fxp-results.json").read_text())
    cases = {c["id"]: c for c in doc["cases"]}
    assert len(cases) == 14 and all(c["as_predicted"] for c in cases.values())
    observed = {k: c["observed"] for k, c in cases.items()}
    assert observed["fxp-nat/plain/pasv+passive-src"]["outcome"] == "pass"          # the ALG rewrote the 227
    assert observed["fxp-nat/tls/epsv+passive-src+sscn-dst"]["outcome"] == "pass"   # EPSV through the NAT
    assert observed["fxp-nat/tls/pasv+passive-src+sscn-dst"]["stage"] == "data-connect"   # a private 227
    assert "PASSIVEDATACONN NOREDIRECT" in observed["fxp-nat/plain/pasv+passive-dst+dst-passivedataconn-noredirect"]["reason"]
    assert "PORTCOMMANDIPADDR NOREDIRECT" in \
        observed["fxp-nat/plain/pasv+passive-dst+src-portcommandipaddr-noredirect"]["reason"]
    assert cases["fxp-filter/plain/pasv+passive-src"]["predicted"]["device"] == "fw"
    # the observed side names the device from its events: the filter's dropped SYN of src's data connection
    blocked = observed["fxp-filter/plain/pasv+passive-src"]
    assert blocked["device"] == "fw" and blocked["drop"]["device"] == "fw" and blocked["drop"]["flags"] == "S"
    assert blocked["drop"]["sport"] == 20 and any(e["type"] == "pinhole-open" for e in blocked["events"])
    assert observed["fxp-nat/plain/pasv+passive-dst+src-portcommandipaddr-noredirect"]["device"] == "server-b"
    assert any("SSCN:CLIENT METHOD" in line for line in observed["fxp-nat/tls/epsv+passive-src+sscn-dst"]["transcript"])
