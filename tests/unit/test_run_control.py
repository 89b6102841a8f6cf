"""Controlling a run from the command line (issue 20, issue 18 item 4): Ctrl-C stops a matrix and
still writes the report of what ran; `--out` is a folder the run holds alone, and keeps the run id;
the default report folder is where the user is; `ftlab client ... get -o -`; and the smaller items:
variants outside their list, `--list-variants`, `recommend --json` and its exit code, a missing
`--topologies` file named, YAML merge keys, `bench --help`.

No network: the matrix's sandboxed workers are replaced by threads that write what a worker writes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import cli
from lab.errors import InputError
from lab.ftps import pki
from lab.ftps.config import ServerConfig
from lab.ftps.server import FTPServer
from lab.matrix import cli as matrix_cli
from lab.matrix import predict, runner, scenario
from lab.matrix.verdict import Verdict
from lab.report import results
from lab.topology.yamlfile import read_yaml

pytestmark = pytest.mark.timeout(90)

S = scenario.load("default")
ROOT = Path(__file__).resolve().parents[2]


def ftlab(*argv: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)


# -- Ctrl-C ------------------------------------------------------------------------------------------

class FakeWorkers:
    """Stands in for the sandboxed workers: each group's cells pass one after the other, `per_cell`
    seconds each, written to cells.jsonl as the worker writes them. When its sandbox is stopped
    (stop_sandboxes_of) a worker does what a real one does when Ctrl-C kills what it runs: it
    writes lab errors for the cells it did not finish, then exits non-zero."""

    def __init__(self, per_cell: float = 0.2):
        self.per_cell = per_cell
        self.stopped = threading.Event()
        self.stop_calls = 0

    def run_worker(self, plan, plan_path, index):
        g = plan.groups[index]
        sink = plan.group_dir(index) / "cells.jsonl"
        for n, cid in enumerate(g.cells):
            cell = scenario.parse_cell_id(cid)
            if self.stopped.wait(self.per_cell):
                with open(sink, "a") as f:
                    for rest in g.cells[n:]:
                        c = scenario.parse_cell_id(rest)
                        f.write(json.dumps(results.scenario_entry(
                            cell=c, spec=S.spec(c), prediction=predict.predict(S, c),
                            verdict=Verdict("error", None, "lab: the client agent exited (killed by SIGINT)"),
                            duration_s=0.0)) + "\n")
                return f"{g.label}: worker exited -9"
            entry = results.scenario_entry(cell=cell, spec=S.spec(cell), prediction=predict.predict(S, cell),
                                           verdict=Verdict("pass", None, "ok"), duration_s=self.per_cell,
                                           ended=round(time.time(), 3))
            with open(sink, "a") as f:
                f.write(json.dumps(entry) + "\n")
        return None

    def stop_sandboxes_of(self, owner):
        self.stop_calls += 1
        self.stopped.set()
        return []


@pytest.fixture
def fake(monkeypatch):
    w = FakeWorkers()
    monkeypatch.setattr(runner, "require_root", lambda *a: None)
    monkeypatch.setattr(runner, "make_pki", lambda directory, topologies: directory)
    monkeypatch.setattr(runner, "run_worker", w.run_worker)
    monkeypatch.setattr(runner, "stop_sandboxes_of", w.stop_sandboxes_of)
    return w


def cells_of(*topologies: str) -> list[scenario.Cell]:
    return S.default_cells(list(topologies), ["plain", "tls"], None)


def test_ctrl_c_stops_the_matrix_and_writes_the_report_of_what_ran(fake, tmp_path):
    cells = cells_of("lan", "client-nat")            # two networks of 8 cells, 0.2 s a cell
    sent = {}

    def ctrl_c():
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)          # as the terminal sends it (here: to the runner alone)

    timer = threading.Timer(0.75, ctrl_c)
    timer.start()
    try:
        doc = runner.run_matrix(cells, S, tmp_path / "out", progress=False, throughput="off")
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped run_matrix: no report was written")
    finally:
        timer.cancel()
    took = time.monotonic() - sent["at"]
    print(f"run_matrix returned {took:.2f} s after the signal")
    # the goal is 2 s (tests/net/test_interrupt_report.py measures it); here the mechanism, on a loaded CI
    assert took < 3.0
    assert fake.stop_calls >= 1, "the runner must stop its sandboxes itself (SIGINT to it alone)"
    assert doc["interrupted"]["signal"] == "SIGINT"
    by = {s["id"]: s for s in doc["scenarios"]}
    assert list(by) == [c.id for c in cells], "every cell asked for is in the report, in order"
    ran = [s for s in doc["scenarios"] if s["outcome"] == "pass"]
    not_run = [s for s in doc["scenarios"] if s.get("not_run")]
    assert ran and not_run and len(ran) + len(not_run) == len(cells)
    assert all(s["outcome"] == runner.NOT_RUN and "interrupted" in s["reason"] for s in not_run)
    # what the workers wrote after the signal (lab errors caused by it) is not believed
    assert doc["lab_errors"] == []
    assert doc["interrupted"]["cells_run"] == len(ran) and doc["interrupted"]["cells_not_run"] == len(not_run)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["interrupted"] and len(on_disk["scenarios"]) == len(cells)
    assert (tmp_path / "out" / "index.html").exists() and (tmp_path / "out" / "junit.xml").exists()


def test_ctrl_c_before_any_cell_ends_marks_every_cell_not_run(fake, tmp_path):
    fake.per_cell = 5.0
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        doc = runner.run_matrix(cells_of("lan"), S, tmp_path / "out", progress=False, reports=False)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped run_matrix")
    finally:
        timer.cancel()
    assert all(s.get("not_run") for s in doc["scenarios"]) and doc["interrupted"]["cells_run"] == 0


def test_an_interrupted_matrix_exits_130_after_its_summary(fake, monkeypatch, tmp_path, capsys):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = cli.main(["matrix", "--topologies", "lan", "--security", "plain", "tls", "--throughput", "off",
                         "--quiet", "--out", str(tmp_path / "out")])
    finally:
        timer.cancel()
    assert code == 130
    captured = capsys.readouterr()
    assert "not run" in captured.out and f"report: {tmp_path / 'out'}/index.html" in captured.out
    assert "interrupted" in captured.err


# -- --out ---------------------------------------------------------------------------------------------

def test_out_naming_a_file_is_one_line_and_exit_2(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a folder\n")
    for argv in (["matrix", "--topologies", "lan", "--throughput", "off"], ["run", "lan/plain/pasv"],
                 ["recommend", "lan"], ["bench", "lan"]):
        done = ftlab(*argv, "--out", str(f))
        assert done.returncode == 2, (argv, done.stderr[-2000:])
        assert done.stderr == f"ftlab: --out {f}: not a directory\n", argv
    assert f.read_text() == "not a folder\n"


HOLD = """
import sys, time
from pathlib import Path
from lab.matrix import cli
cli._out_dir(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_run_with_the_same_out_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = ftlab("matrix", "--topologies", "lan", "--security", "plain", "--data", "pasv", "--throughput", "off",
                     "--out", str(out))
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        line = done.stderr.strip()
        assert "\n" not in line and line.startswith(f"ftlab: --out {out}: in use by another run (pid {holder.pid}, "
                                                    "started 20"), line
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            matrix_cli._out_dir(out)
    finally:
        holder.stdin.close()
        holder.wait(10)
    again = matrix_cli._out_dir(out)          # the first run is over: its lock went with it
    assert again == out
    matrix_cli._release(out)


def test_the_run_id_is_not_the_folder_name(fake, tmp_path):
    doc = runner.run_matrix(cells_of("lan")[:1], S, tmp_path / "my-folder", progress=False, reports=False)
    assert doc["run_id"] != "my-folder" and re.fullmatch(r"\d{8}-\d{6}", doc["run_id"])
    named = runner.run_matrix(cells_of("lan")[:1], S, tmp_path / "x", progress=False, reports=False, run_id="r-1")
    assert named["run_id"] == "r-1"


def test_the_default_report_folder_is_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = matrix_cli._out_dir(None, "run-")
    try:
        assert out.parent == tmp_path / "reports" and out.name.startswith("run-") and out.is_dir()
    finally:
        matrix_cli._release(out)


def test_a_worker_stopped_by_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    from lab.matrix import worker

    def interrupted(g):
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "Group", lambda plan, index: object())
    monkeypatch.setattr(worker.RunPlan, "read", staticmethod(lambda path: None))
    monkeypatch.setattr(worker, "run_group", interrupted)
    assert worker.main(["plan.json", "0"]) == 130
    assert "Traceback" not in capsys.readouterr().err


# -- ftlab client ... get -o - ------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    pkidir = tmp_path / "pki"
    pki.init_ca(pkidir)
    pki.issue_server(pkidir, "server", ips=["127.0.0.1"])
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(bytes(range(256)) * 400)
    srv = FTPServer(ServerConfig(LOGINDELAY=0), root, {"alice": "pw"}, cert=pkidir / "server.pem",
                    key=pkidir / "server.key", listen=("127.0.0.1", 0)).start()
    yield srv
    srv.close()


@pytest.mark.parametrize("into", ["file", "pipe"])
def test_client_get_to_stdout(server, tmp_path, into):
    url = f"ftp://alice:pw@127.0.0.1:{server.address[1]}/f.bin"
    data = bytes(range(256)) * 400
    if into == "file":               # `ftlab client URL get -o - > file`
        with open(tmp_path / "copy", "wb") as f:
            done = subprocess.run([sys.executable, "-m", "lab.cli", "client", url, "get", "-o", "-"], stdout=f,
                                  stderr=subprocess.PIPE, text=False, timeout=30, cwd=ROOT)
        got = (tmp_path / "copy").read_bytes()
    else:                            # `ftlab client URL get -o - | ...`
        done = subprocess.run([sys.executable, "-m", "lab.cli", "client", url, "get", "-o", "-"],
                              capture_output=True, timeout=30, cwd=ROOT)
        got = done.stdout
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert got == data
    import hashlib
    assert hashlib.sha256(data).hexdigest() in done.stderr.decode()


# -- the smaller items -------------------------------------------------------------------------------

def select(argv: list[str]) -> list[str]:
    cells, _ = matrix_cli._select(cli.build_parser().parse_args(["matrix", *argv]), S)
    return [c.id for c in cells]


def test_a_variant_on_a_picture_outside_its_list_runs_the_cells_asked_for(capsys):
    got = select(["--topologies", "lan", "--variants", "ignore-pasv-address", "--only-variants",
                  "--security", "plain", "--data", "pasv"])
    assert got == ["lan/plain/pasv+ignore-pasv-address"]
    assert "ignore-pasv-address" in capsys.readouterr().err    # said: the file does not list lan for it
    # where the file lists it, the listed cells as before
    assert select(["--topologies", "server-nat", "--variants", "ignore-pasv-address", "--only-variants",
                   "--security", "tls"]) == ["server-nat/tls/pasv+ignore-pasv-address"]


def test_a_variant_that_changes_nothing_on_the_cells_asked_for_is_refused_with_why():
    with pytest.raises(InputError, match=r"alg-off.*lan.*no NAT router|lan.*alg-off"):
        select(["--topologies", "lan", "--variants", "alg-off", "--only-variants"])


def test_list_variants(capsys):
    assert cli.main(["matrix", "--list-variants"]) == 0
    out = capsys.readouterr().out
    for name in S.variations:
        assert re.search(rf"^{re.escape(name)}\b", out, re.M), name
    assert "server-nat, double-nat, static-filter-nat" in out       # where the file lists ignore-pasv-address


def test_recommend_json(capsys):
    assert cli.main(["recommend", "static-filter-nat", "--no-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["topology"] == "static-filter-nat" and doc["recommended"]["method"] == "tls/epsv"
    assert doc["recommended"]["step"] == 3 and doc["after_run"] is None


def _fake_recommend_run(monkeypatch, differs: bool):
    def run_matrix(cells, scen, out, **kw):
        scen_entries = []
        for c in cells:
            pred = predict.predict(scen, c)
            outcome = pred.outcome if pred.outcome != "unknown" else "pass"
            if differs and c.id.endswith("/plain/port"):       # not the recommended method
                outcome = "pass" if outcome == "fail" else "fail"
            v = Verdict(outcome, None if outcome == "pass" else pred.stage, "as faked",
                        device=None if outcome == "pass" else pred.device)
            scen_entries.append(results.scenario_entry(cell=c, spec=scen.spec(c), prediction=pred, verdict=v,
                                                       duration_s=0.1))
        doc = results.new_run(run_id="fake")
        doc["scenarios"] = scen_entries
        return doc
    monkeypatch.setattr(runner, "run_matrix", run_matrix)


@pytest.mark.parametrize("differs", [False, True])
def test_recommend_exits_1_when_its_run_differs_from_its_prediction(monkeypatch, tmp_path, capsys, differs):
    _fake_recommend_run(monkeypatch, differs)
    code = cli.main(["recommend", "static-filter-nat", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == (1 if differs else 0), out
    if differs:
        assert "static-filter-nat/plain/port" in out and "differ" in out


def test_recommend_json_after_a_run(monkeypatch, tmp_path, capsys):
    _fake_recommend_run(monkeypatch, False)
    assert cli.main(["recommend", "static-filter-nat", "--json", "--out", str(tmp_path / "r")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["after_run"]["method"] == "tls/epsv" and doc["confirms"] is True and doc["differing_cells"] == []
    assert doc["report"] == str(tmp_path / "r" / "index.html")


def test_a_missing_topologies_file_is_named(tmp_path):
    missing = tmp_path / "nosuch.yaml"
    with pytest.raises(InputError) as exc:
        select(["--topologies", str(missing)])
    assert str(exc.value) == f"--topologies {missing}: no such topology file"
    done = ftlab("matrix", "--topologies", str(missing), "--throughput", "off")
    assert done.returncode == 2 and done.stderr == f"ftlab: --topologies {missing}: no such topology file\n"


def test_yaml_merge_keys_are_merged_not_duplicates():
    text = ("defaults: &d\n"        # 1
            "  mode: dynamic\n"     # 2
            "  rules: []\n"         # 3
            "fw:\n"                 # 4
            "  <<: *d\n"            # 5
            "  mode: static\n"      # 6
            "both:\n"               # 7
            "  <<: [*d, {extra: 1}]\n")   # 8
    data, problems = read_yaml(text, "t.yaml")
    assert problems == []
    assert dict(data["fw"]) == {"mode": "static", "rules": []}
    assert data["fw"].line_of("mode") == 6 and data["fw"].line_of("rules") == 3
    assert dict(data["both"]) == {"mode": "dynamic", "rules": [], "extra": 1}


def test_yaml_real_duplicates_are_still_found_with_merge_keys():
    text = "d: &d\n  a: 1\nx:\n  <<: *d\n  b: 2\n  b: 3\n"
    _, problems = read_yaml(text, "t.yaml")
    assert [str(p) for p in problems] == ["t.yaml:6: duplicate key 'b' (first at line 5)"]
    _, plain = read_yaml("x:\n  a: 1\n  a: 2\n", "t.yaml")
    assert [str(p) for p in plain] == ["t.yaml:3: duplicate key 'a' (first at line 2)"]


def test_bench_help_names_no_issue():
    helptext = ftlab("bench", "--help").stdout
    assert "bench" in helptext and not re.search(r"\bissue\b", helptext, re.I)
