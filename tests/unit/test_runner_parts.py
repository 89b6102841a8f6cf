"""The runner's parts: sizes, grouping, the typed plan, ftpdata, what the firewall saw, JSON-lines
tailing, waiting for readiness, noticing a dead server or device program, third-party client
command lines and their outcomes."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.endpoints.launch import client_argv, client_result
from lab.errors import InputError, LabError
from lab.matrix import scenario
from lab.matrix.jsonl import JsonLines, read_all
from lab.matrix.plan import GroupPlan, RunPlan
from lab.matrix.runner import Progress, _running_cells, parse_size, plan_groups
from lab.matrix.servers import ServerRun, ftpdata_text, server_key, server_statements
from lab.matrix.worker import RUNNING, firewall_saw, lab_fault, payload
from lab.network.net import Program
from lab.network.ready import file_shows, wait_until
from lab.topology import loader as topo

S = scenario.load("default")


def test_parse_size():
    assert parse_size("2MiB") == 2 << 20
    assert parse_size("512KiB") == 512 << 10
    assert parse_size("4096") == 4096
    assert parse_size("1.5M") == int(1.5 * (1 << 20))
    for bad in ("two", "-1", "5 parsecs"):
        with pytest.raises(InputError):
            parse_size(bad)


def test_groups_are_one_network_per_picture_and_alg():
    cells = S.default_cells(topologies=["client-nat", "lan"]) + S.variant_cells(["alg-kernel"], ["client-nat"])
    groups = plan_groups(cells, S)
    keys = sorted((g.topology, g.alg or "") for g in groups)
    assert keys == [("client-nat", ""), ("client-nat", "kernel"), ("lan", "")]
    assert sorted(c for g in groups for c in g.cells) == sorted(c.id for c in cells)
    assert [len(g.cells) for g in groups] == sorted((len(g.cells) for g in groups), reverse=True)


def test_server_statements_and_keys():
    t = topo.load("static-filter")
    spec = S.spec(scenario.parse_cell_id("static-filter/implicit-zos/pasv"))
    st = server_statements(t, spec)
    assert st["PASSIVEDATAPORTS"] == "(60000,60100)" and st["SECUREIMPLICITZOS"] == "TRUE"
    assert st["TLSRFCLEVEL"] == "RFC4217"
    no_range = server_statements(t, S.spec(scenario.parse_cell_id("static-filter/tls/pasv+no-passive-range")))
    assert "PASSIVEDATAPORTS" not in no_range and no_range["SECUREIMPLICITZOS"] == "FALSE"
    assert "PASSIVEDATAPORTS" not in ftpdata_text(no_range)
    # Plain, tls and implicit share one built-in server; implicit-zos needs its own.
    keys = {server_key(t, S.spec(c)) for c in S.default_cells(topologies=["static-filter"])}
    assert len(keys) == 2
    vs = {server_key(t, S.spec(c)) for c in S.with_endpoints(S.default_cells(topologies=["static-filter"]),
                                                             None, "vsftpd")}
    assert len(vs) == 1


def test_payload_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert payload(a, 100_000) == payload(b, 100_000) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert a.stat().st_size == 100_000 and len(set(a.read_bytes()[:4096])) > 200


def test_firewall_saw_cleartext_ciphertext_and_repeats():
    events = [
        {"device": "nat-s", "type": "rewrite", "before": "227 Entering Passive Mode (10,1,1,10,234,96)",
         "after": "227 Entering Passive Mode (203,0,113,1,234,96)"},
        {"device": "fw", "type": "tls-detected", "conn": "a:1>b:21"},
        {"device": "fw", "type": "tls-detected", "conn": "a:1>b:21"},
        {"device": "fw", "type": "drop", "src": "a", "sport": 1, "dst": "b", "dport": 60001, "flags": "S"},
        {"device": "fw", "type": "mapping-used"},
    ]
    saw = firewall_saw(events)
    assert [x["kind"] for x in saw] == ["cleartext", "ciphertext", "drop"]
    assert "227 Entering Passive Mode (10,1,1,10" in saw[0]["text"] and "203,0,113,1" in saw[0]["text"]
    assert saw[1]["text"].endswith("(x2)")


def test_json_lines_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"type": "ready"}) + "\n")
    tail = JsonLines(path)
    assert tail.read() == []
    with open(path, "a") as f:
        f.write(json.dumps({"type": "drop", "n": 1}) + "\n" + "not json\n" + '{"type": "dr')
    assert tail.read() == [{"type": "drop", "n": 1}]
    with open(path, "a") as f:
        f.write('op", "n": 2}\n')
    assert tail.read() == [{"type": "drop", "n": 2}]
    assert read_all(path) == [{"type": "ready"}, {"type": "drop", "n": 1}, {"type": "drop", "n": 2}]
    assert read_all(tmp_path / "absent.jsonl") == [] and JsonLines(tmp_path / "later.jsonl").read() == []


def test_progress_logs_lines_when_not_a_tty():
    out = io.StringIO()
    bar = Progress(40, stream=out)
    entries = [{"outcome": "pass", "matches": True}] * 20 + [{"outcome": "fail", "matches": False}] * 20
    bar.update(entries[:5])
    bar.update(entries[:20])
    bar.update(entries)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[-1].startswith("[" + "#" * 30 + "] 40/40  pass 20  fail 20  error 0  differ 20")


def test_progress_says_which_cell_runs_and_for_how_long(tmp_path):
    """The bar moved only when a cell ended: a 20 s cell looked like a hang."""
    log = io.StringIO()
    bar = Progress(40, stream=log)
    bar.update([], "", [("dynamic-filter-nat/plain/pasv+control-timeout", 1.0)])
    assert log.getvalue() == ""                                       # a short cell says nothing
    bar.update([], "", [("dynamic-filter-nat/plain/pasv+control-timeout", 6.0)])
    assert log.getvalue() == "  running dynamic-filter-nat/plain/pasv+control-timeout: 6 s\n"
    bar.update([], "", [("dynamic-filter-nat/plain/pasv+control-timeout", 6.5)])
    assert log.getvalue().count("running") == 1                       # at most one line every 5 s
    group = tmp_path / "g0"
    group.mkdir()
    (group / RUNNING).write_text(json.dumps({"id": "lan/tls/pasv", "since": time.time() - 3}))

    class Plan:
        def group_dir(self, i):
            return tmp_path / f"g{i}"

    (cid, age), = _running_cells(Plan(), [0, 1])                     # g1 has no running cell
    assert cid == "lan/tls/pasv" and 2.5 < age < 10


def test_curl_and_lftp_command_lines(tmp_path):
    curl = client_argv("curl", "tls-ccc", "port", "203.0.113.1", 21, "data.bin", "u", "p", tmp_path / "ca.pem",
                       tmp_path / "out", 10)
    assert curl[-1] == "ftp://203.0.113.1:21/data.bin"
    assert {"--ssl-reqd", "--ftp-ssl-ccc", "--disable-eprt"} <= set(curl) and curl[curl.index("-P") + 1] == "-"
    implicit = client_argv("curl", "implicit", "epsv", "h", 990, "f", "u", "p", tmp_path / "c", tmp_path / "o", 10)
    assert implicit[-1] == "ftps://h:990/f" and "--ssl-reqd" not in implicit
    lftp = client_argv("lftp", "tls", "epsv", "h", 21, "f", "u", "p", tmp_path / "c", tmp_path / "o", 10)
    script = lftp[-1]
    assert "set ftp:prefer-epsv yes" in script and "set ftp:ssl-force yes" in script and "open -u u,p ftp://h:21" in script


def test_curl_outcomes_in_client_json_shape(tmp_path):
    out = tmp_path / "out"
    out.write_bytes(b"x" * 1000)
    ok = client_result("curl", 0, "ftlab-timing 1000 0.010 0.020\n", "> USER u\n< 331 pw\n> PASS secret\n", out, 0.5)
    assert ok["outcome"] == "ok" and ok["bytes"] == 1000
    assert ok["sha256"] == hashlib.sha256(b"x" * 1000).hexdigest() and ok["mbps"] == pytest.approx(0.1)
    assert "> PASS ****" in ok["transcript"]
    out.unlink()
    stderr = ("< 220 hi\n> USER u\n< 331 pw\n> PASS p\n< 230 in\n> EPSV\n< 229 Entering Extended Passive Mode (|||60005|)\n"
              "curl: (7) Failed to connect to h port 60005\n")
    bad = client_result("curl", 7, "", stderr, out, 2.0)
    assert bad["outcome"] == "failed" and bad["stage"] == "data-connect" and "curl exited 7" in bad["reason"]
    refused = client_result("curl", 67, "", "< 220 hi\n> USER u\n< 530 no\n", out, 1.0)
    assert refused["stage"] == "login" and refused["code"] == 530
    lftp = client_result("lftp", 1, "", "<--- 220 hi\n---> USER u\n<--- 230 ok\n---> PASV\n<--- 425 no\n", out, 1)
    assert lftp["stage"] == "data-setup" and lftp["transcript"][0] == "< 220 hi"


def test_plan_round_trips_through_json(tmp_path):
    groups = tuple(plan_groups(S.default_cells(topologies=["lan"]) + S.variant_cells(["alg-kernel"], ["client-nat"]),
                               S, {"lan": str(tmp_path / "my-lan.yaml")}))
    plan = RunPlan(out=tmp_path / "out", size=4096, timeout=7.5, pcap=True, scenario_file=S.source,
                   pki=tmp_path / "pki", heartbeat=None, groups=groups)
    again = RunPlan.read(plan.write(tmp_path / "plan.json"))
    assert again == plan
    assert isinstance(again.groups[0], GroupPlan) and isinstance(again.out, Path)
    by_label = {g.label: plan.group_dir(i).name for i, g in enumerate(again.groups)}
    assert by_label == {"my-lan": "00-my-lan", "client-nat (alg kernel)": "01-client-nat-alg-kernel"}


def test_wait_until_ready_exited_or_late(tmp_path):
    log = tmp_path / "server.log"
    proc = subprocess.Popen(["sh", "-c", f"sleep 0.2; echo 'listening on 0.0.0.0:21' > {log}; sleep 5"])
    try:
        wait_until(file_shows(log, "listening on"), timeout=5, what="the server", proc=proc, log=log)
    finally:
        proc.kill()
        proc.wait()
    dead = subprocess.Popen(["sh", "-c", f"echo 'bind: address in use' > {log}; exit 4"])
    with pytest.raises(LabError, match=r"the server exited with code 4 before it was ready: bind: address in use"):
        wait_until(file_shows(tmp_path / "never", "x"), timeout=5, what="the server", proc=dead, log=log)
    t0 = time.monotonic()
    with pytest.raises(LabError, match=r"the responder was not ready within 0.3 s"):
        wait_until(lambda: False, timeout=0.3, what="the responder")
    assert time.monotonic() - t0 < 1.0


def test_a_dead_server_or_device_program_is_a_lab_fault(tmp_path):
    """What the worker checks before and after every cell: real processes, alive or exited."""
    log, err = tmp_path / "server.log", tmp_path / "alg.err"
    log.write_text("listening on 0.0.0.0:21\nstopping\n")
    err.write_text("Traceback (most recent call last):\nRuntimeError: queue 1 is gone\n")
    server_proc = subprocess.Popen(["sleep", "30"])
    device_proc = subprocess.Popen(["sleep", "30"])
    server = ServerRun("builtin", "server", "lab", "pw", {"explicit": log, "implicit": log}, [server_proc],
                       lambda: None)
    net = SimpleNamespace(programs=[Program("nat-s", "alg", device_proc, tmp_path / "alg.out", err, ["alg"],
                                            lambda out, err: True)])
    try:
        assert lab_fault(net, server) is None
        device_proc.kill()
        device_proc.wait()
        assert lab_fault(net, server) == ("the device program alg in nat-s exited with code -9: "
                                          "RuntimeError: queue 1 is gone")
        server_proc.send_signal(signal.SIGINT)
        server_proc.wait()
        assert lab_fault(net, server) == ("the FTP server (builtin) in server exited with code -2, its log "
                                          "ends: stopping")
    finally:
        for p in (server_proc, device_proc):
            p.kill()
            p.wait()
