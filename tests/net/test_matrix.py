"""A small real matrix, end to end, twice: the slides' claims hold and the outcomes repeat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.matrix import speed
from lab.report import results

CMD = [sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--jobs", "2", "--size", "256KiB",
       "--topologies", "dynamic-filter", "server-nat", "--security", "plain", "tls", "tls-ccc"]


def run(out, throughput: str = "off") -> tuple[int, dict, str]:
    done = subprocess.run([*CMD, "--out", str(out), "--throughput", throughput], capture_output=True, text=True,
                          timeout=240)
    assert (out / "results.json").exists(), done.stderr[-3000:]
    return done.returncode, results.load(out), done.stdout + done.stderr


@pytest.mark.network
@pytest.mark.timeout(300)
def test_matrix_twice_reproduces_the_slides(tmp_path):
    code, doc, output = run(tmp_path / "one", "quick")
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
        # A failing cell ends at once after the drop that decides it. Issue 14's goal is 0.3 s
        # (results.json's drop_to_end_s measures it: 6-10 ms median); the test guards the mechanism
        # with room for a loaded CI machine - without it a cell waits out its client (seconds).
        assert failed["ended"] - failed["drop"]["ts"] <= 1.0 and failed["drop_to_end_s"] <= 1.0
    # Server behind NAT: TLS PASV fails (private 227 address), TLS PORT works.
    assert by_id["server-nat/tls/pasv"]["outcome"] == "fail"
    assert "internet dropped" in by_id["server-nat/tls/pasv"]["reason"]
    assert by_id["server-nat/tls/port"]["outcome"] == "pass"
    passed = [s for s in doc["scenarios"] if s["outcome"] == "pass"]
    assert all(s["sha256_ok"] and s["bytes"] == 256 * 1024 for s in passed)
    # The throughput phase: every passing cell shows its data-path class's figure, with spread and
    # method, beside iperf3 of the same path measured in the same phase.
    for s in passed:
        t = s["throughput"]
        assert 0 < t["min"] <= t["mbps"] <= t["max"] and s["throughput_mbps"] == t["mbps"], s["id"]
        assert t["iperf3_mbps"] > 0 and s["baseline_mbps"] == t["iperf3_mbps"] and "interleaved" in t["method"]
        assert t["class"] == ("passive" if s["data"] in ("pasv", "epsv") else "active") + \
            ("/clear" if s["security"] == "plain" else "/protected")
    phase = doc["topologies"]["server-nat"]["throughput"]
    # quick: its rounds, and iperf3 once more after the last (lab.matrix.speed)
    assert phase["mode"] == "quick" and len(phase["iperf3"]["runs"]) == speed.MODES["quick"].runs + 1
    assert not phase["errors"] and not set(phase["notes"]) - {"busy"}
    assert set(phase["classes"]) == {"passive/clear", "passive/protected", "active/clear", "active/protected"}
    assert phase["classes"]["passive/protected"]["cell"] == "server-nat/tls-ccc/pasv"      # tls/pasv fails
    assert doc["throughput_mode"] == "quick" and doc["phases"]["throughput_s"] > 0
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
