"""The report of an interrupted matrix (issue 20 item 3): the cells Ctrl-C kept from running are
`not-run` (`not_run: true`), never lab errors, and the document says `interrupted`.

results.json validates; counts() and the summary count them apart; a document read back (merge,
--baseline) with not-run cells is not decided: exit 3 unless a cell that ran differs (1) - the
runner's own exit after Ctrl-C is 130; index.html has a banner and a grey symbol; junit.xml skips
them; "what works here" and the slides' claims say "not run"; merge refuses an interrupted input
unless --allow-partial.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from report_fixtures import S, make_doc

from lab.errors import InputError
from lab.matrix import runner
from lab.report import charts, claims, html, junit, merge, results, works

LAN = S.default_cells(topologies=["lan"], security=["plain", "tls"], data=["pasv", "port"])


def interrupted(cells=LAN, not_run: int = 2, phase: str = "verdicts") -> dict:
    """A run of `cells` whose last `not_run` cells Ctrl-C kept from running, as the runner writes it."""
    doc = make_doc(cells)
    for i in range(len(cells) - not_run, len(cells)):
        doc["scenarios"][i] = runner.not_run(cells[i], S)
    doc["interrupted"] = runner.Stop(doc_started(doc) + 12.3, set(), 0, phase).summary(doc["scenarios"],
                                                                                       doc_started(doc))
    return doc


def doc_started(doc: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(doc["started"]).timestamp()


def test_the_runner_writes_not_run_and_the_document_validates():
    assert runner.NOT_RUN == "not-run"
    doc = interrupted()
    last = doc["scenarios"][-1]
    assert last["outcome"] == "not-run" and last["not_run"] is True and not last["matches"]
    assert doc["interrupted"]["cells_run"] == 2 and doc["interrupted"]["cells_not_run"] == 2
    assert results.validate(doc) == []
    doc["interrupted"]["phase"] = "somewhere"
    assert results.validate(doc)                      # the schema knows the record's fields


def test_counts_keep_not_run_apart_from_lab_errors():
    doc = interrupted()
    n = results.counts(doc)
    assert (n["not_run"], n["error"], n["pass"] + n["fail"]) == (2, 0, 2)
    # a document written while the report did not know "not-run" (outcome error, not_run true)
    for s in doc["scenarios"]:
        if s.get("not_run"):
            s["outcome"] = "error"
    assert results.counts(doc)["not_run"] == 2 and results.counts(doc)["error"] == 0


def test_a_document_read_back_with_not_run_cells_is_not_decided():
    doc = interrupted()
    assert results.exit_code(doc) == 3               # as predicted where it ran: still no green verdict
    ran = make_doc(LAN[:2], flip={LAN[0].id})
    doc["scenarios"][:2] = ran["scenarios"]
    assert results.exit_code(doc) == 1               # a cell that ran differs: that is decided
    whole = interrupted(not_run=0, phase="throughput")
    assert results.exit_code(whole) == 0              # Ctrl-C in the throughput phase: every verdict is there


def test_not_run_cells_are_no_baseline_change_and_no_unmet_expectation():
    doc = interrupted()
    base = make_doc(LAN)
    assert results.baseline_changes(doc, base) == []
    assert results.baseline_changes(base, doc) == []
    assert results.exit_code(doc, base) == 3
    doc["expect_file"] = "expect.yaml"
    for s in doc["scenarios"]:
        s["expect"] = {"outcome": "pass", "line": 1, "pattern": "*"}
        s["expect_met"] = s["outcome"] == "pass"        # what lab.matrix.expect makes of a not-run cell
    assert results.exit_code(doc) == 3


def test_index_html_has_the_banner_and_a_symbol_for_not_run():
    doc = interrupted()
    page = html.render(doc)
    assert "interrupted after 12.3 s: 2 cells ran, 2 not run" in page
    assert html.SYMBOL["not-run"] in page and 'class="not-run"' in page
    assert "2 not run" in page.split("</p>")[0] + page.split("</p>")[1]
    differ = page.split("Where observation and prediction differ")
    assert len(differ) == 1 or all(s["id"] not in differ[1].split("<h2")[0]
                                   for s in doc["scenarios"] if s["not_run"])
    assert "interrupted after" not in html.render(make_doc(LAN))


def test_matrix_png_draws_not_run_grey(tmp_path):
    assert charts.COLORS["not-run"] != charts.COLORS["error"]
    r, g, b = (int(charts.COLORS["not-run"][i:i + 2], 16) for i in (1, 3, 5))
    assert r == g == b                                 # grey
    assert charts.matrix_png(interrupted(), tmp_path / "m.png").stat().st_size > 0


def test_junit_skips_not_run_cells():
    suites = junit.build(interrupted())
    cases = suites.findall(".//testcase")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(skipped) == 2
    assert {c.find("skipped").get("message") for c in skipped} == {"not run: interrupted"}
    assert suites.get("errors") == "0" and suites.get("failures") == "0"
    assert "not run" in ET.tostring(suites, encoding="unicode")


def test_what_works_here_says_not_run():
    lines = works.works_here(interrupted()["scenarios"]).lines()
    assert any("2 not run" in line for line in lines)
    assert not any("lab error" in line for line in lines)
    variant = make_doc(S.default_cells(topologies=["lan"], security=["tls"], data=["pasv"]))
    cell = variant["scenarios"][0]
    cell.update(variant="v6", outcome="not-run", not_run=True)
    assert all("tls/pasv" not in line for line in works.works_here([cell]).lines())


def test_a_claim_whose_cells_did_not_run_is_unknown_not_run():
    cells = [c for c in S.default_cells(topologies=["client-nat"]) if c.id in
             ("client-nat/tls/pasv", "client-nat/tls/port")]
    doc = interrupted(cells, not_run=1)
    claim = next(c for c in claims.check(doc) if "Client behind NAT" in c[0].text)
    assert claim[1] is None and claim[2] == [cells[1].id]
    shown = next(c for c in html.claims(doc) if "Client behind NAT" in c["text"])
    assert shown["status"] == "not run"
    assert "unknown (not run)" in html.render(doc)


def test_merge_refuses_an_interrupted_input_by_name(tmp_path):
    a, b = make_doc(LAN[:2], run_id="a"), interrupted(LAN[2:], not_run=1)
    b["run_id"] = "b"
    results.write(a, tmp_path / "a")
    results.write(b, tmp_path / "b")
    with pytest.raises(InputError, match=r"b.*interrupted.*--allow-partial"):
        merge.merge_dirs([tmp_path / "a", tmp_path / "b"])
    merged = merge.merge_dirs([tmp_path / "a", tmp_path / "b"], allow_partial=True)
    assert "interrupted" in merged["partial"]["reason"] and merged["partial"]["interrupted"] == [str(tmp_path / "b")]
    assert results.validate(merged) == []
    assert results.counts(merged)["not_run"] == 1 and results.exit_code(merged) == 3


def test_a_cell_not_run_in_one_input_and_run_in_another_is_no_conflict(tmp_path):
    first = interrupted(LAN, not_run=2)
    again = make_doc(LAN[2:], run_id="again")
    merged = merge.merge([first, again], ["first", "again"], allow_partial=True)
    by_id = {s["id"]: s for s in merged["scenarios"]}
    assert all(by_id[c.id]["outcome"] in ("pass", "fail") for c in LAN)
    assert [s["id"] for s in merged["scenarios"]] == [c.id for c in LAN]
