"""Report writers on run documents made by lab.matrix.verdict: schema, JUnit, merge, shard, baseline, charts."""

from __future__ import annotations

import json

import junitparser
import pytest
from report_fixtures import S, make_doc, with_pictures

from lab.errors import InputError
from lab.report import charts, html, junit, merge, results, write_all
from lab.report.claims import check as check_claims

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
    page = html.render(doc, baseline=make_doc())
    assert page.count("<details id=\"cell-") == 160
    assert 'id="matrix-table"' in page and "differs from prediction" in page
    assert "227 Entering Passive Mode" in page and "ciphertext" in page
    assert f"{FLIPPED}</code></a>: fail → pass" in page


def test_write_all(tmp_path):
    doc = with_pictures(make_doc(S.default_cells(topologies=["lan", "client-nat"])))
    written = write_all(doc, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["index.html", "junit.xml", "matrix.png", "results.json", "throughput.png"]
    page = (tmp_path / "index.html").read_text()
    assert page.count('<img class="diagram" alt="diagram of') == 2   # diagrams embedded, from results.json
    assert results.load(tmp_path)["topologies"]["client-nat"]["diagram"].startswith("data:image/png;base64,")


HOSTILE_TRANSCRIPT = "client < 550 <script>alert(1)</script>"
HOSTILE_RULE = """-A FORWARD -p tcp --dport 22 -m comment --comment "x'&<>" -j DROP"""


def test_html_escapes_hostile_text():
    """Transcripts and rule lines are whatever a peer or a user's ruleset says: text, never markup."""
    doc = make_doc(S.default_cells(topologies=["dynamic-filter"]))
    cell = doc["scenarios"][0]
    cell["transcript"] = [HOSTILE_TRANSCRIPT]
    cell["reason"] = f"fw dropped tcp 1.2.3.4:1 -> 5.6.7.8:22 [S] ({HOSTILE_RULE})"
    cell["events"] = [{"device": "fw", "type": "drop", "reason": HOSTILE_RULE}]
    cell["firewall_saw"] = [{"device": "fw", "kind": "drop", "text": HOSTILE_RULE}]
    cell["pcaps"] = ["javascript:alert(1)", "pcaps/../../etc/passwd", "pcaps/00-dynamic-filter/fw-eth0.pcap"]
    doc["lab_errors"] = ["<img src=x onerror=alert(1)>"]
    doc["topologies"]["dynamic-filter"].update(
        {"reasoning": "</pre><script>alert(2)</script>", "diagram": "javascript:alert(3)",
         "title": '"><script>alert(4)</script>'})
    page = html.render(doc)
    assert "<script" not in page and "<img src=x" not in page and "javascript:" not in page
    assert "550 &lt;script&gt;alert(1)&lt;/script&gt;" in page
    escaped_rule = "--comment &#34;x&#39;&amp;&lt;&gt;&#34; -j DROP"
    # in the verdict, the device events, what the firewall saw (and the matrix cell's tooltip)
    assert page.count(escaped_rule) >= 4, page.count(escaped_rule)
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)" in page and "&#34;&gt;&lt;script&gt;alert(4)" in page
    assert '<a href="pcaps/00-dynamic-filter/fw-eth0.pcap">' in page and "etc/passwd" not in page
    assert "<img" not in page                      # a diagram that is not a PNG data URI is not shown


def test_html_reads_only_the_results_document():
    """A picture the lab has never heard of renders from what its results document says."""
    doc = make_doc(S.default_cells(topologies=["lan"]))
    for s in doc["scenarios"]:
        s["topology"] = "moon-base"
        s["id"] = s["id"].replace("lan/", "moon-base/", 1)
    doc["topologies"] = {"moon-base": {"description": "a picture nobody shipped", "title": "Moon base",
                                       "slide": "slide 99", "reasoning": "no air, no NAT",
                                       "recommendation": "tls/epsv (step 0): why not", "baseline_mbps": 12.5,
                                       "diagram": "data:image/png;base64,iVBORw0KGgo="}}
    page = html.render(doc)
    for text in ("<b>Moon base</b>", "<i>Slides:</i> slide 99", "<pre>no air, no NAT</pre>",
                 "tls/epsv (step 0): why not", "iperf3 baseline on this path: 12.5 MB/s",
                 'src="data:image/png;base64,iVBORw0KGgo="', 'id="cell-moon-base_plain_pasv"'):
        assert text in page, text


def test_slides_claims_checked_on_observed_outcomes():
    from lab.report.claims import check

    holds = {c.text: h for c, h, _ in check(make_doc())}
    # the default matrix runs no variant cells: a claim about +v6 twins is "not run" there
    on_variants = {c.text for c, _, _ in check(make_doc()) if any("+" in cid for cid in c.expect)}
    assert len(holds) >= 7 and all(h for text, h in holds.items() if text not in on_variants)
    assert on_variants and all(holds[text] is None for text in on_variants)
    broken = check(make_doc(flip={"dynamic-filter/tls/epsv"}))
    failing = [(c.text, wrong) for c, h, wrong in broken if h is False]
    assert failing == [("Dynamic filtering: with TLS only the CCC method works (step 4)", ["dynamic-filter/tls/epsv"])]
    partial = check(make_doc(S.default_cells(topologies=["lan"])))
    assert [h for _, h, _ in partial].count(None) == len(partial) - 1


def test_a_lab_error_neither_confirms_nor_refutes_a_claim():
    broken = check_claims(make_doc(broken={"server-nat/tls/port"}))
    undecided = [(c.text, ids) for c, h, ids in broken if h is None and ids]
    assert undecided == [("Server behind NAT, TLS: 'Passive mode (PASV) will not work - Active mode (PORT) may "
                          "work'", ["server-nat/tls/port"])]
    assert all(h for c, h, _ in broken if c.text != undecided[0][0] and not any("+" in i for i in c.expect))
    page = html.render(make_doc(broken={"server-nat/tls/port"}))
    assert "<b>not decided</b>: lab errors in" in page and "does not hold" not in page


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
    assert bad.returncode == 2 and "results.json" in bad.stderr


def test_the_throughput_table_carries_its_notes_baseline_and_how_busy_the_machine_was():
    """The throughput phase's notes (cut short, skipped, shaped) and machine_busy were in
    results.json and the run's output only, not in index.html."""
    from lab.report.html import throughput_table

    t = throughput_table({"throughput": {"classes": {}, "iperf3": {"mbps": 900}, "method": "m",
                                         "notes": {"tls": "cut short: 12 s budget", "plain": ""},
                                         "baseline": "iperf3 on port 60005 (the ruleset admits it)",
                                         "machine_busy": {"before": 0.31, "after": 0.05}}})
    assert t["notes"] == {"tls": "cut short: 12 s budget"}
    assert t["baseline"].startswith("iperf3 on port 60005") and t["busy"] == "before 31 %, after 5 %"
