"""Report writers on run documents made by lab.matrix.verdict: schema, JUnit, merge, shard, baseline, charts."""

from __future__ import annotations

import json

import junitparser
import pytest
from report_fixtures import S, make_doc

from lab.errors import InputError
from lab.report import charts, html, junit, merge, results, write_all

FLIPPED = "server-nat/tls/pasv"
BROKEN = "lan/plain/port"


def test_results_validate_against_schema(tmp_path):
    doc = make_doc(flip={FLIPPED})
    assert results.validate(doc) == []
    path = results.write(doc, tmp_path)
    again = results.load(tmp_path)
    assert again == json.loads(path.read_text())
    by_id = {s["id"]: s for s in again["scenarios"]}
    assert by_id[FLIPPED]["outcome"] == "pass" and not by_id[FLIPPED]["matches"]
    assert by_id["server-nat/tls/port"]["outcome"] == "pass" and by_id["server-nat/tls/port"]["matches"]
    assert by_id["dynamic-filter/tls/epsv"]["reason"].startswith("fw dropped tcp")


def test_schema_rejects_broken_documents(tmp_path):
    doc = make_doc(S.default_cells(topologies=["lan"]))
    del doc["scenarios"][0]["ratio"]
    doc["scenarios"][1]["outcome"] = "maybe"
    problems = results.validate(doc)
    assert any("ratio" in msg for _, msg in problems)
    assert any(where == "scenarios/1/outcome" for where, _ in problems)
    (tmp_path / "results.json").write_text(json.dumps(doc))
    with pytest.raises(InputError):
        results.load(tmp_path)


def test_exit_codes():
    assert results.exit_code(make_doc()) == 0
    assert results.exit_code(make_doc(flip={FLIPPED})) == 1
    assert results.exit_code(make_doc(broken={BROKEN})) == 3


def test_junit_one_testcase_per_cell(tmp_path):
    doc = make_doc(flip={FLIPPED}, broken={BROKEN})
    path = junit.write(doc, tmp_path / "junit.xml")
    xml = junitparser.JUnitXml.fromfile(str(path))
    cases = [(suite.name, case) for suite in xml for case in suite]
    assert len(cases) == 160
    failed = [f"{s}/{c.name}" for s, c in cases if c.result and isinstance(c.result[0], junitparser.Failure)]
    errored = [f"{s}/{c.name}" for s, c in cases if c.result and isinstance(c.result[0], junitparser.Error)]
    assert failed == [FLIPPED]
    assert errored == [BROKEN]
    assert xml.tests == 160 and xml.failures == 1 and xml.errors == 1


def test_shards_are_disjoint_cover_and_keep_pictures_together():
    cells = S.default_cells()
    parts = [merge.shard(cells, k, 3) for k in (1, 2, 3)]
    ids = [c.id for p in parts for c in p]
    assert sorted(ids) == sorted(c.id for c in cells)
    for p in parts:
        assert p
        for other in parts:
            if other is not p:
                assert not {c.topology for c in p} & {c.topology for c in other}
    assert merge.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1-2"):
        with pytest.raises(InputError):
            merge.parse_shard(bad)


def test_merge_of_shards_equals_whole_run(tmp_path):
    cells = S.default_cells()
    whole = make_doc(cells)
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"shard{k}"
        results.write(make_doc(merge.shard(cells, k, 2), run_id=f"run{k}"), d)
        dirs.append(d)
    merged = merge.merge_dirs(dirs)
    assert results.validate(merged) == []
    assert sorted((s["id"], s["outcome"]) for s in merged["scenarios"]) == \
        sorted((s["id"], s["outcome"]) for s in whole["scenarios"])
    assert merged["merged_from"] == [str(d) for d in dirs]
    conflict = make_doc(S.default_cells(topologies=["lan"]), flip={"lan/tls/pasv"}, run_id="x")
    with pytest.raises(InputError, match="conflicts"):
        merge.merge([make_doc(S.default_cells(topologies=["lan"])), conflict])


def test_baseline_lists_every_changed_cell():
    before = make_doc()
    after = make_doc(flip={FLIPPED, "lan/tls/eprt"})
    changes = results.baseline_changes(after, before)
    assert sorted(c.id for c in changes) == sorted([FLIPPED, "lan/tls/eprt"])
    assert str(next(c for c in changes if c.id == FLIPPED)) == f"{FLIPPED}: fail -> pass"
    assert results.exit_code(after, baseline=before) == 1
    assert results.exit_code(before, baseline=make_doc()) == 0


def test_charts_and_html_are_written(tmp_path):
    doc = make_doc(flip={FLIPPED})
    for png in charts.write(doc, tmp_path):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    page = html.render(doc, scenarios=S, baseline=make_doc(), diagrams=False)
    assert page.count("<details id=\"cell-") == 160
    assert 'id="matrix-table"' in page and "differs from prediction" in page
    assert "227 Entering Passive Mode" in page and "ciphertext" in page
    assert f"{FLIPPED}</code></a>: fail → pass" in page


def test_write_all(tmp_path):
    written = write_all(make_doc(S.default_cells(topologies=["lan", "client-nat"])), tmp_path, scenarios=S)
    names = sorted(p.name for p in written)
    assert names == ["index.html", "junit.xml", "matrix.png", "results.json", "throughput.png"]
    assert "data:image/png;base64," in (tmp_path / "index.html").read_text()   # diagrams embedded


def test_slides_claims_checked_on_observed_outcomes():
    from lab.report.claims import check

    holds = {c.text: h for c, h, _ in check(make_doc())}
    assert len(holds) >= 7 and all(holds.values())
    broken = check(make_doc(flip={"dynamic-filter/tls/epsv"}))
    failing = [(c.text, wrong) for c, h, wrong in broken if h is False]
    assert failing == [("Dynamic filtering: with TLS only the CCC method works (step 4)", ["dynamic-filter/tls/epsv"])]
    partial = check(make_doc(S.default_cells(topologies=["lan"])))
    assert [h for _, h, _ in partial].count(None) == len(partial) - 1


def test_report_merge_command(tmp_path):
    import subprocess
    import sys

    cells = S.default_cells(topologies=["lan", "client-nat"])
    for k in (1, 2):
        results.write(make_doc(merge.shard(cells, k, 2), run_id=f"shard{k}"), tmp_path / f"s{k}")
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", "merge", str(tmp_path / "s1"),
                           str(tmp_path / "s2"), "--out", str(tmp_path / "all")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "40 cells" in done.stdout
    merged = results.load(tmp_path / "all")
    assert len(merged["scenarios"]) == 40
    assert (tmp_path / "all" / "index.html").exists() and (tmp_path / "all" / "junit.xml").exists()
    bad = subprocess.run([sys.executable, "-m", "lab.cli", "report", "merge", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no results.json" in bad.stderr
