"""The runner's pure parts: sizes, grouping, ftpdata, what the firewall saw, event tailing,
third-party client command lines and their outcomes."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from lab.endpoints.launch import client_argv, client_result
from lab.errors import InputError
from lab.matrix import scenario
from lab.matrix.runner import Progress, parse_size, plan_groups
from lab.matrix.worker import EventTail, firewall_saw, ftpdata_text, payload, server_key, server_statements
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
    assert sum(len(g.cells) for g in groups) == len(cells)


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


def test_event_tail_reads_only_new_complete_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"type": "ready"}) + "\n")
    tail = EventTail(path)
    assert tail.read() == []
    with open(path, "a") as f:
        f.write(json.dumps({"type": "drop", "n": 1}) + "\n" + '{"type": "dr')
    assert tail.read() == [{"type": "drop", "n": 1}]
    with open(path, "a") as f:
        f.write('op", "n": 2}\n')
    assert tail.read() == [{"type": "drop", "n": 2}]


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
