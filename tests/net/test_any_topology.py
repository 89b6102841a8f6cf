"""Issue 12 on real networks: one cell of an engineer's own file, its variations per NAT router,
bench and baseline with the server behind NAT (the DMZ case), and a path that blocks the
measurement said in one line within seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import TOPOLOGY_DIR
from lab.report import results

FTLAB = [sys.executable, "-m", "lab.cli"]
pytestmark = [pytest.mark.network]

#: A client behind a home router (ALG on) behind a carrier-grade NAT (alg: off); server public.
HOME_CGN = TOPOLOGY_DIR / "examples" / "home-and-cgn.yaml"


def ftlab(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*FTLAB, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(180)
def test_one_cell_of_a_file_and_alg_variations_per_router(tmp_path):
    net = HOME_CGN
    done = ftlab("run", f"{net}/plain/pasv", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout + done.stderr
    doc = results.load(tmp_path / "run")
    assert [s["id"] for s in doc["scenarios"]] == ["home-and-cgn/plain/pasv"] and doc["scenarios"][0]["outcome"] == "pass"
    # results.json names the file relative to the report folder (no absolute paths of this machine)
    source = doc["topologies"]["home-and-cgn"]["source"]
    assert list(doc["topologies"]) == ["home-and-cgn"] and not source.startswith("/")
    assert (tmp_path / "run" / source).resolve() == net.resolve()

    # alg-kernel leaves cgn's `alg: off` alone: PORT announces home's 100.64.0.2, which the internet
    # cannot reach; alg-kernel@cgn turns cgn's kernel helper on, which rewrites it: PORT passes.
    done = ftlab("matrix", "--quiet", "--topologies", str(net), "--variants", "alg-kernel", "alg-kernel@cgn",
                 "--only-variants", "--security", "plain", "--data", "port", "--throughput", "off",
                 "--out", str(tmp_path / "m"))
    assert "cgn: ALG stays off (alg: off in home-and-cgn; an override naming it, +alg-kernel@cgn, turns it on)" \
        in done.stderr, done.stderr
    doc = results.load(tmp_path / "m")
    by_id = {s["id"]: s for s in doc["scenarios"]}
    assert by_id["home-and-cgn/plain/port+alg-kernel"]["outcome"] == "fail"
    assert "100.64.0.2" in by_id["home-and-cgn/plain/port+alg-kernel"]["reason"]
    assert by_id["home-and-cgn/plain/port+alg-kernel@cgn"]["outcome"] == "pass"
    assert doc["topologies"]["home-and-cgn"]["alg_overrides"]["kernel@cgn"] == \
        ["home: ALG scapy, unchanged", "cgn: ALG off -> kernel"]


@pytest.mark.timeout(120)
def test_bench_with_the_server_behind_nat(tmp_path):
    done = ftlab("bench", "server-nat", "--size", "1MiB", "--runs", "1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["path"] == "203.0.113.1 -> 10.1.1.10 (client -> server)"
    assert all(m["median"] > 0 and not m["errors"] for m in bench["measurements"]), bench["measurements"]
    assert "nat-s: forwarding tcp 5201:5221 to the server for the benchmark" in done.stdout


@pytest.mark.timeout(60)
def test_baseline_with_the_server_behind_nat():
    done = ftlab("baseline", "server-nat", "--seconds", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [x.split()[0] for x in lines] == ["client→server", "server→client"]
    assert all(float(x.split()[1]) > 0 for x in lines)


@pytest.mark.timeout(90)
def test_a_path_that_blocks_the_measurement_is_one_line_within_seconds(tmp_path):
    """A filter the model cannot read (-m length) drops every data port: the live check says so."""
    (tmp_path / "fw.rules").write_text(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A FORWARD -p tcp --dport 21 -j ACCEPT\n-A FORWARD -p tcp --dport 990 -j ACCEPT\n"
        "-A FORWARD -p tcp -m length --length 0:1500 -j DROP\n"
        "-A FORWARD -p tcp --dport 60000:60100 -j ACCEPT\nCOMMIT\n")
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("name: static-filter", "name: sf-length")
    start, end = text.index("      default: drop"), text.index("  server: {kind: host")
    (tmp_path / "net.yaml").write_text(text[:start] + "      iptables_save: fw.rules\n" + text[end:])
    for argv in (["bench", "--size", "1MiB", "--runs", "1", "--out", str(tmp_path / "b")], ["baseline"]):
        t0 = time.monotonic()
        done = ftlab(argv[0], str(tmp_path / "net.yaml"), *argv[1:])
        took = time.monotonic() - t0
        assert done.returncode == 2, done.stdout + done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "sf-length: the path blocks the " in last and "client → 203.0.113.10:60000 gets no answer within 2 s" \
            in last and "-m length" in last, done.stderr
        assert took < 20, took
