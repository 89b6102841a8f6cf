"""A small real matrix, end to end, twice: the slides' claims hold and the outcomes repeat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.report import results

CMD = [sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--jobs", "2", "--size", "256KiB",
       "--topologies", "dynamic-filter", "server-nat", "--security", "plain", "tls", "tls-ccc"]


def run(out) -> tuple[int, dict, str]:
    done = subprocess.run([*CMD, "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert (out / "results.json").exists(), done.stderr[-3000:]
    return done.returncode, results.load(out), done.stdout + done.stderr


@pytest.mark.network
@pytest.mark.timeout(300)
def test_matrix_twice_reproduces_the_slides(tmp_path):
    code, doc, output = run(tmp_path / "one")
    assert code == 0, output
    assert results.validate(doc) == []
    by_id = {s["id"]: s for s in doc["scenarios"]}
    assert len(by_id) == 24
    # Dynamic filtering: with TLS only CCC works; the drop names the firewall and the packet.
    for d in ("pasv", "epsv", "port", "eprt"):
        assert by_id[f"dynamic-filter/plain/{d}"]["outcome"] == "pass"
        assert by_id[f"dynamic-filter/tls-ccc/{d}"]["outcome"] == "pass"
        failed = by_id[f"dynamic-filter/tls/{d}"]
        assert failed["outcome"] == "fail" and failed["stage"] == "data-connect"
        assert failed["reason"].startswith("fw dropped tcp"), failed["reason"]
        # A failing cell ends within 2 s of the drop that decides it.
        assert failed["ended"] - failed["drop"]["ts"] <= 2.0
    # Server behind NAT: TLS PASV fails (private 227 address), TLS PORT works.
    assert by_id["server-nat/tls/pasv"]["outcome"] == "fail"
    assert "internet dropped" in by_id["server-nat/tls/pasv"]["reason"]
    assert by_id["server-nat/tls/port"]["outcome"] == "pass"
    passed = [s for s in doc["scenarios"] if s["outcome"] == "pass"]
    assert all(s["sha256_ok"] and s["bytes"] == 256 * 1024 and s["throughput_mbps"] > 0 for s in passed)
    assert doc["topologies"]["server-nat"]["baseline_mbps"] > 0
    # What the firewall saw: the cleartext announcement versus TLS.
    saw = json.dumps(by_id["dynamic-filter/plain/pasv"]["firewall_saw"])
    assert "cleartext" in saw
    for name in ("index.html", "junit.xml", "matrix.png", "throughput.png"):
        assert (tmp_path / "one" / name).stat().st_size > 0

    code2, doc2, output2 = run(tmp_path / "two")
    assert code2 == 0, output2
    assert {s["id"]: s["outcome"] for s in doc2["scenarios"]} == {s["id"]: s["outcome"] for s in doc["scenarios"]}
    # And against the first run as a baseline: nothing changed.
    again = subprocess.run([*CMD, "--out", str(tmp_path / "three"), "--baseline", str(tmp_path / "one"),
                            "--topologies", "dynamic-filter", "--security", "tls", "--pcap"],
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 cells changed since baseline" in again.stdout
    # With --pcap: what fw saw on the wire was ciphertext after AUTH TLS, and the pcaps are linked.
    cell = results.load(tmp_path / "three")["scenarios"][0]
    wire = cell["wire"]
    assert any(w["device"].startswith("fw") and w["kind"] == "cleartext" and "AUTH TLS" in w["text"] for w in wire)
    assert any(w["device"].startswith("fw") and w["kind"] == "ciphertext" for w in wire)
    assert cell["pcaps"] and all((tmp_path / "three" / p).stat().st_size > 0 for p in cell["pcaps"])
