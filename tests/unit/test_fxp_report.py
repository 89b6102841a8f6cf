"""The report of a three-way (FXP) run (lab/report/fxp.py, templates/fxp.html.j2) made from an
fxp-results.json built here from real cases of scenarios/fxp.yaml and their real predictions, with
constructed observations: the page (escaping, DIFFERS, the method), JUnit, the exit code, --expect by
case id, --baseline, and the two-party options a three-way run refuses."""

from __future__ import annotations

import json
from dataclasses import asdict

import junitparser
import pytest

from lab.cli import build_parser
from lab.errors import InputError
from lab.matrix import expect, fxprun
from lab.report import fxp

AGREES = "fxp-nat/plain/pasv+passive-src"                                   # predicted pass
DIFFERS = "fxp-nat/plain/pasv+passive-dst+dst-passivedataconn-noredirect"    # predicted fail at data-connect
HOSTILE = "[src] < 550 <script>alert(1)</script>"


def make_doc(outcomes: dict[str, str] | None = None) -> dict:
    """Two cases: AGREES observed as predicted, DIFFERS observed passing (the prediction says fail)."""
    outcomes = {AGREES: "pass", DIFFERS: "pass", **(outcomes or {})}
    cases = {c.id: c for c in fxprun.load("fxp")}
    doc = {"kind": "fxp", "run_id": "20260101-000000", "started": "2026-01-01T00:00:00+00:00", "host": "lab",
           "scenarios": "scenarios/fxp.yaml", "size": 1024, "cases": []}
    for cid, outcome in outcomes.items():
        pred = fxprun.predict(cases[cid])
        obs = {"outcome": outcome, "stage": None if outcome == "pass" else "data-connect",
               "reason": "copied" if outcome == "pass" else "<b>425</b> closed",
               "transcript": ["[src] > PASV", "[src] < 227 Entering Passive Mode (192,0,2,1,234,96)", HOSTILE]}
        doc["cases"].append({**asdict(cases[cid]), "predicted": asdict(pred), "observed": obs,
                             "as_predicted": fxprun.agrees(pred, obs)})
    return doc


def test_page_shows_every_case_escaped_with_differs_and_the_method():
    page = fxp.render(make_doc())
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page   # the transcript, as text
    assert "<b>425</b>" not in page
    assert page.count("<b class=\"bad\">DIFFERS</b>") == 1           # one row: DIFFERS is told, AGREES agrees
    assert AGREES in page and DIFFERS in page and "1 of 2 as the lab's model predicts" in page
    assert "PASSIVEDATACONN NOREDIRECT" in page and "PORTCOMMANDIPADDR NOREDIRECT" in page and "RFC 4217" in page
    assert "dst (passive): PASSIVEDATAPORTS (60000,60100), PASSIVEDATACONN NOREDIRECT" in page
    assert "EPSV + EPRT" not in page and "PASV + PORT" in page
    assert "227 Entering Passive Mode (192,0,2,1,234,96)" in page


def test_junit_and_exit_code(tmp_path):
    doc = make_doc()
    page, xml_path = fxp.write(doc, tmp_path)
    assert page == tmp_path / "index.html" and page.read_text().startswith("<!doctype html>")
    xml = junitparser.JUnitXml.fromfile(str(xml_path))
    failed = [f"{s.name}/{c.name}" for s in xml for c in s if c.result and isinstance(c.result[0], junitparser.Failure)]
    assert xml.tests == 2 and failed == [DIFFERS]
    assert fxp.exit_code(doc) == 1
    assert fxp.exit_code(make_doc({DIFFERS: "fail"})) == 0
    assert fxp.exit_code(make_doc({AGREES: "error"})) == 3


def test_expect_names_cases_by_id(tmp_path):
    f = tmp_path / "fxp.expect.yaml"
    f.write_text("expect:\n  '*/plain/*+*': pass\n  fxp-nat/plain/pasv+passive-dst+*noredirect: fail\n  tls/epsv: pass\n")
    stated = expect.load(f)
    doc = make_doc()
    fxprun._judge(doc, stated, fxp.view)
    by_id = {c["id"]: c for c in doc["cases"]}
    assert by_id[AGREES]["expect"]["line"] == 2 and by_id[AGREES]["expect_met"] is True
    assert by_id[DIFFERS]["expect"]["line"] == 3 and by_id[DIFFERS]["expect_met"] is False
    assert [s.line for s in expect.unused(fxp.view(doc), stated)] == [4]    # names no three-way case
    assert fxp.exit_code(doc) == 1
    assert "UNMET" in fxp.render(doc) and str(f) in fxp.render(doc)


def test_baseline_is_an_earlier_three_way_run(tmp_path):
    (tmp_path / fxp.FILE).write_text(json.dumps(make_doc({DIFFERS: "fail"})))
    baseline = fxp.load(tmp_path)
    doc = make_doc()
    assert [str(c) for c in fxp.baseline_changes(doc, baseline)] == [f"{DIFFERS}: fail -> pass"]
    assert fxp.exit_code(doc, baseline) == 1 and fxp.exit_code(baseline, baseline) == 0
    assert f"{DIFFERS}</code></a>: fail → pass" in fxp.render(doc, baseline)
    two_party = tmp_path / "two"
    two_party.mkdir()
    (two_party / "results.json").write_text(json.dumps({"schema": "ftlab.results/1", "scenarios": []}))
    for wrong, needle in ((two_party, "holds no fxp-results.json"), (two_party / "results.json", "not an fxp-results")):
        with pytest.raises(InputError, match=needle):
            fxp.load(wrong)


def test_two_party_options_are_refused_by_name():
    parse = build_parser().parse_args
    fxprun.check_options(parse(["matrix", "--scenarios", "fxp", "--security", "tls", "--data", "epsv"]))
    with pytest.raises(InputError) as err:
        fxprun.check_options(parse(["matrix", "--scenarios", "fxp", "--pcap", "--jobs", "1", "--throughput", "off"]))
    assert [p.file for p in err.value.problems] == ["--jobs", "--pcap", "--throughput"]
    assert "applies to two-party runs" in str(err.value)


def test_a_picture_the_lab_cannot_bring_up_is_reported_not_lost(tmp_path, monkeypatch, capsys):
    """The sandbox failing for a picture (a lab failure) marks its cases as lab errors, still writes the
    report, and exits 3."""
    import lab.network.sandbox as sandbox
    from lab.errors import LabError

    def broken(*args, **kwargs):
        raise LabError("fxpsandbox.py:in_sandbox_run failed in its sandbox (exit 1): <boom>")

    monkeypatch.setattr(sandbox, "call_in_sandbox", broken)
    args = build_parser().parse_args(["matrix", "--scenarios", "fxp", "--topologies", "fxp-filter"])
    assert fxprun.main(args, lambda: tmp_path) == 3
    doc = json.loads((tmp_path / fxp.FILE).read_text())
    assert len(doc["cases"]) == 3 and all(c["observed"]["outcome"] == "error" for c in doc["cases"])
    page = (tmp_path / "index.html").read_text()
    assert "Lab errors" in page and "&lt;boom&gt;" in page
    assert capsys.readouterr().out.rstrip().endswith(f"report: {tmp_path}/index.html")


def test_the_observed_side_names_its_device_on_the_page_and_in_junit(tmp_path, monkeypatch):
    """The sandbox's raw findings (client result, copy check, device events) decided by fxprun.observe:
    a case whose SYN the filter dropped agrees with its prediction (fail at data-connect by fw); one
    whose drop was not seen differs by its node only, and JUnit and the page say both nodes."""
    import junitparser

    import lab.network.sandbox as sandbox

    filter_cases = [c for c in fxprun.load("fxp") if c.picture == "fxp-filter"]
    unseen = filter_cases[-1].id

    def ran(file, function, topology, cases, size, timeout):
        client = {"outcome": "failed", "stage": "data-connect", "code": 425, "transcript": ["[dst] < 425 timed out"],
                  "reason": "src: Can't open data connection: nothing connected. (dst: 425 timed out)"}
        syn = {"ts": 1.0, "device": "fw", "type": "drop", "proto": "tcp", "src": "192.0.2.10", "sport": 20,
               "dst": "203.0.113.10", "dport": 60043, "flags": "S", "reason": "no pinhole"}
        return {c["id"]: {"client": client, "copied": False, "events": [] if c["id"] == unseen else [syn],
                          "exit_code": 5, "stderr": ""} for c in cases}

    monkeypatch.setattr(sandbox, "call_in_sandbox", ran)
    args = build_parser().parse_args(["matrix", "--scenarios", "fxp", "--topologies", "fxp-filter"])
    assert fxprun.main(args, lambda: tmp_path) == 1
    doc = json.loads((tmp_path / fxp.FILE).read_text())
    by_id = {c["id"]: c for c in doc["cases"]}
    seen = by_id[filter_cases[0].id]
    assert seen["as_predicted"] and seen["observed"]["device"] == "fw" and seen["observed"]["drop"]["dport"] == 60043
    assert not by_id[unseen]["as_predicted"] and by_id[unseen]["observed"]["device"] is None
    page = (tmp_path / "index.html").read_text()
    assert "names no device" not in page and "names the device that" in page
    assert "fail at data-connect by fw</b>: fw dropped tcp 192.0.2.10:20 -&gt; 203.0.113.10:60043 [S]" in page
    assert "fw drop proto=tcp src=192.0.2.10 sport=20" in page                  # the events, per case
    xml = junitparser.JUnitXml.fromfile(str(tmp_path / "junit.xml"))
    cases = {f"{s.name}/{c.name}": c for s in xml for c in s}
    failed = cases[unseen].result[0]
    assert "fail at data-connect (fw)" in failed.text and "observed fail at data-connect:" in failed.text
    assert cases[filter_cases[0].id].system_out.startswith("fail (data-connect by fw): fw dropped")
