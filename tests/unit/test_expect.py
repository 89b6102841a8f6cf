"""Expectations files (`--expect FILE`): validated with file:line problems, the most specific
pattern governs a cell, and the matrix exits 0/1 on them beside --baseline."""

from __future__ import annotations

import pytest

from lab.cli import main
from lab.errors import InputError
from lab.matrix import expect
from lab.report import results


def write(tmp_path, text: str):
    p = tmp_path / "design.expect.yaml"
    p.write_text(text)
    return p


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(InputError) as err:
        expect.load(write(tmp_path, text))
    return [str(p) for p in err.value.problems]


def cell(cid: str, outcome: str, **extra) -> dict:
    topology, security, rest = cid.split("/")
    data, _, variant = rest.partition("+")
    return {"id": cid, "topology": topology, "security": security, "data": data, "variant": variant,
            "outcome": outcome, "matches": True, "expected": outcome, "reason": "as observed", **extra}


def test_patterns_and_the_most_specific_wins(tmp_path):
    e = expect.load(write(tmp_path, "expect:\n  '*/*': fail\n  tls/epsv: pass\n  my-net/tls/*: pass\n"
                                    "  implicit*/pasv: pass\n  tls/pasv+alg-off: fail\n"))
    assert e.stated("lab/plain/pasv").outcome == "fail"
    assert e.stated("lab/tls/epsv").outcome == "pass"
    assert e.stated("my-net/tls/port").outcome == "pass" and e.stated("other/tls/port").outcome == "fail"
    assert e.stated("lab/implicit-zos/pasv").line == 5
    assert e.stated("lab/tls/pasv+alg-off").outcome == "fail"
    assert e.stated("lab/tls/epsv+alg-off") is None             # a variation cell only by a +pattern
    assert e.stated("/abs/my.yaml/tls/epsv").outcome == "pass"  # a network named by its file


def test_two_equally_specific_patterns_that_disagree_are_named_at_both_lines(tmp_path):
    e = expect.load(write(tmp_path, "expect:\n  plain/*: fail\n  '*/port': pass\n"))
    with pytest.raises(InputError) as err:
        e.stated("lan/plain/port")
    text = str(err.value)
    assert ":2: expect.plain/*:" in text and ":3: expect.*/port:" in text


@pytest.mark.parametrize("body, where, message", [
    ("expect:\n  tls/epsv: maybe\n", ":2: expect.tls/epsv", "'maybe' is not an outcome"),
    ("expect:\n  ssl/epsv: pass\n", ":2: expect.ssl/epsv", "'ssl' is not a security mode"),
    ("expect:\n  tls/active: pass\n", ":2: expect.tls/active", "'active' is not a data mode"),
    ("expect:\n  tls: pass\n", ":2: expect.tls", "expected <security>/<data>"),
    ("expect:\n  tls/epsv+: pass\n", ":2: expect.tls/epsv+", "an empty variation"),
    ("expect:\n  tls/epsv: pass\n  '*/tls/epsv': fail\n", ":3: expect.*/tls/epsv", "the same cells as line 2"),
    ("expect: []\n", ":1: expect", "a mapping of patterns to outcomes"),
    ("expect:\n  tls/epsv: pass\nexpected: 1\n", ":3: expected", "unknown key"),
    ("schema: ftlab.expect/9\nexpect:\n  tls/epsv: pass\n", ":1: schema", "expected ftlab.expect/1"),
])
def test_each_problem_at_its_line(tmp_path, body, where, message):
    found = problems(tmp_path, body)
    assert any(where in p and message in p for p in found), found


def test_not_an_expectations_file(tmp_path):
    assert problems(tmp_path, "user: alice\n") == [
        f"{tmp_path / 'design.expect.yaml'}:1: not a file of expectations: expected a mapping with description, "
        "expect, schema; found a mapping without any of them"]


def test_a_run_is_judged_by_the_file_beside_its_predictions(tmp_path):
    e = expect.load(write(tmp_path, "expect:\n  tls/*: pass\n  plain/pasv: fail\n"))
    doc = {"scenarios": [cell("net/tls/pasv", "pass"), cell("net/tls/port", "fail", matches=False),
                         cell("net/plain/pasv", "fail"), cell("net/plain/port", "pass")]}
    expect.annotate(doc, e)
    assert [s["expect_met"] for s in doc["scenarios"]] == [True, False, True, None]
    assert [s["id"] for s in expect.unmet(doc)] == ["net/tls/port"]
    assert results.exit_code(doc) == 1
    doc["scenarios"][1]["outcome"] = "pass"
    expect.annotate(doc, e)
    # the expectations decide, not the prediction (which this cell missed)
    assert results.exit_code(doc) == 0
    assert results.exit_code(doc, baseline={"scenarios": [cell("net/tls/pasv", "fail")], "run_id": "x"}) == 1
    e = expect.load(write(tmp_path, "expect:\n  tls/*: pass\n  other-net/tls/*: fail\n"))
    expect.annotate(doc, e)
    assert [st.pattern for st in expect.unused(doc, e)] == ["other-net/tls/*"]


def test_a_cell_an_interrupted_run_did_not_run_is_no_unmet_expectation(tmp_path):
    e = expect.load(write(tmp_path, "expect:\n  tls/*: pass\n"))
    doc = {"scenarios": [cell("net/tls/pasv", "pass"), cell("net/tls/port", "not-run", not_run=True)]}
    expect.annotate(doc, e)
    assert [s["expect_met"] for s in doc["scenarios"]] == [True, None]
    assert expect.unmet(doc) == []


def test_exit_code_without_expectations_counts_stage_and_device():
    same = cell("net/tls/port", "fail", expected_stage="data-connect", expected_device="fw",
                stage="data-connect", device="fw")
    same["matches"] = results.agrees("fail", "data-connect", "fw", "fail", "data-connect", "fw")
    other = dict(same, id="net/tls/eprt", matches=results.agrees("fail", "data-connect", "fw",
                                                                 "fail", "data-connect", "internet"))
    assert same["matches"] and not other["matches"]
    assert results.exit_code({"scenarios": [same]}) == 0
    assert results.exit_code({"scenarios": [same, other]}) == 1
    # a cell the model could not predict counts against nothing but an expectation
    unknown = cell("net/plain/pasv", "pass", expected="unknown", matches=False)
    assert results.exit_code({"scenarios": [same, unknown]}) == 0
    assert results.agrees("pass", None, None, "pass", None, None)
    assert not results.agrees("fail", "login", "zos", "fail", "tls", "zos")
    assert not results.agrees("unknown", None, None, "pass", None, None)


def test_the_cli_refuses_a_bad_file_before_any_network(tmp_path, capsys):
    bad = write(tmp_path, "expect:\n  tls/epsv: maybe\n")
    assert main(["matrix", "--topologies", "lan", "--expect", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: expect.tls/epsv: 'maybe' is not an outcome" in err
    assert not (tmp_path / "r").exists()


def test_junit_counts_what_the_exit_code_counts(tmp_path):
    from lab.report import junit

    unknown = cell("net/plain/pasv", "pass", expected="unknown", matches=False,
                   expected_reason="cannot predict: fw.rules:12 uses -m limit (on fw)")
    differs = cell("net/tls/port", "fail", matches=False, expected="pass")
    root = junit.build({"run_id": "r", "host": "h", "started": "t", "scenarios": [unknown, differs]})
    assert root.get("failures") == "1" and root.find(".//skipped").get("message").startswith("not predicted")
    e = expect.load(write(tmp_path, "expect:\n  tls/*: fail\n  plain/*: fail\n"))
    doc = {"run_id": "r", "host": "h", "started": "t", "scenarios": [unknown, differs]}
    expect.annotate(doc, e)
    root = junit.build(doc)
    failure = root.find(".//failure")
    assert root.get("failures") == "1" and failure.get("type") == "expectation-unmet"
    assert ":3 (plain/*) states fail, observed pass" in failure.get("message")
