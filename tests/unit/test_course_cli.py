"""`ftlab course` without a network: list, start, hint, status, reset, new, summary and the errors (exit 2)."""

from __future__ import annotations

import csv
import io
import json
from xml.etree import ElementTree as ET

import pytest

from lab.cli import main
from lab.course import exercise, progress


def ftlab_course(capsys, *argv) -> tuple[int, str, str]:
    code = main(["course", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_ids(capsys):
    code, out, _ = ftlab_course(capsys, "list", "--ids")
    assert code == 0 and out.split() == exercise.ids()
    code, out, _ = ftlab_course(capsys, "list")
    assert code == 0 and " 1. two-connections" in out and "The two connections of FTP" in out


def test_start_copies_the_files_and_a_state(capsys, tmp_path):
    d = tmp_path / "alice"
    code, out, _ = ftlab_course(capsys, "start", "passive-ports", d, "--seed", "alice")
    assert code == 0
    assert {p.name for p in d.iterdir()} == {"server.ftpdata", "fw.rules", progress.STATE_FILE, ".course"}
    assert (d / ".course" / "network.yaml").is_file()
    state = json.loads((d / progress.STATE_FILE).read_text())
    assert state["exercise"] == "passive-ports" and state["seed"] == "alice" and state["hints_shown"] == 0
    ex = exercise.load("passive-ports", seed="alice")
    assert f"reserved the ports {ex.params['low']}-{ex.params['high']}" in " ".join(out.split())
    assert "you may edit:" in out and "goals:" in out and f"ftlab course check {d}" in out
    # the same seed, the same variant; a folder that is one already, or not empty: exit 2
    code, _, err = ftlab_course(capsys, "start", "passive-ports", d)
    assert code == 2 and "already an exercise folder" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, _, err = ftlab_course(capsys, "start", "ipv6", tmp_path / "full")
    assert code == 2 and "is not empty" in err


def test_unknown_ids_and_folders_that_are_not_exercises(capsys, tmp_path):
    code, _, err = ftlab_course(capsys, "start", "no-such", tmp_path / "x")
    assert code == 2 and "no exercise 'no-such'" in err and not (tmp_path / "x").exists()
    for op in ("check", "hint", "status", "reset"):
        code, _, err = ftlab_course(capsys, op, tmp_path)
        assert code == 2 and "is not an exercise folder" in err, op
    code, _, err = ftlab_course(capsys, "check", "--reference", "no-such")
    assert code == 2 and "no exercise" in err
    code, _, err = ftlab_course(capsys, "check")
    assert code == 2


def test_hints_count_and_stop_at_the_last(capsys, tmp_path):
    d = tmp_path / "s"
    ftlab_course(capsys, "start", "double-nat", d)
    n = len(exercise.load("double-nat").hints)
    for i in range(1, n + 1):
        code, out, _ = ftlab_course(capsys, "hint", d)
        assert code == 0 and out.startswith(f"hint {i} of {n}:")
    code, out, _ = ftlab_course(capsys, "hint", d)
    assert out.startswith(f"no more hints: all {n} shown") and progress.load(d).hints_shown == n
    code, out, _ = ftlab_course(capsys, "status", d)
    assert code == 0 and f"hints shown: {n} of {n}" in out and "changed: none yet" in out


def test_reset_puts_the_start_back_and_clears_progress(capsys, tmp_path):
    d = tmp_path / "s"
    ftlab_course(capsys, "start", "client-nat-pasv", d, "--seed", "7")
    (d / "method.yaml").write_text("method: tls/pasv\n")
    ftlab_course(capsys, "hint", d)
    code, out, _ = ftlab_course(capsys, "status", d)
    assert "changed: method.yaml" in out
    code, out, _ = ftlab_course(capsys, "reset", d)
    assert code == 0 and (d / "method.yaml").read_text() == "method: tls/port\n"
    st = progress.load(d)
    assert st.hints_shown == 0 and st.seed == "7" and not st.checks


def test_check_of_a_broken_file_is_not_solved_and_names_the_line(capsys, tmp_path):
    d = tmp_path / "s"
    ftlab_course(capsys, "start", "ipv6", d)
    (d / "method.yaml").write_text("# my choice\nmethod: tls/epsvv\n")
    code, out, _ = ftlab_course(capsys, "check", d)
    assert code == 1
    assert f"{d}/method.yaml:2: method: 'epsvv' is not a data mode" in out
    assert "not solved: your files have 1 problem(s)" in out
    st = progress.load(d)
    assert len(st.checks) == 1 and st.checks[0]["problems"] == 1 and not st.solved


def test_summary_csv_and_junit(capsys, tmp_path):
    for name in ("alice", "bob"):
        ftlab_course(capsys, "start", "ipv6", tmp_path / "class" / name, "--seed", name)
    st = progress.load(tmp_path / "class" / "bob")
    st.solved, st.solved_at, st.checks = True, "2026-01-01T00:00:00+00:00", [
        {"at": "2026-01-01T00:00:00+00:00", "solved": True, "goals": 3, "goals_met": 3, "constraints": 1,
         "constraints_met": 1, "failed": []}]
    progress.save(tmp_path / "class" / "bob", st)
    junit = tmp_path / "class.xml"
    code, out, err = ftlab_course(capsys, "summary", tmp_path / "class", "--junit", junit)
    assert code == 0 and "2 folder(s), 1 solved" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["exercise"], r["seed"], r["solved"]) for r in rows] == [("ipv6", "alice", "no"), ("ipv6", "bob", "yes")]
    root = ET.parse(junit).getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["alice", "bob"]
    assert cases[0].find("failure").get("message") == "not solved: never checked"
    assert cases[1].find("failure") is None
    code, _, err = ftlab_course(capsys, "summary", tmp_path / "nothing")
    assert code == 2


def test_new_makes_an_exercise_that_loads(capsys, tmp_path):
    d = tmp_path / "my-exercise"
    code, out, _ = ftlab_course(capsys, "new", "client-nat", d)
    assert code == 0 and f"ftlab course check --reference {d}" in out
    ex = exercise.load(str(d))
    assert ex.picture == "client-nat" and ex.goals[0].cell == "method"
    assert ex.files("solution")["method.yaml"] == "method: tls/epsv\n"
    assert [g.cell for g in ex.goals[1:]] == ["tls/port", "tls/eprt"]
    code, _, err = ftlab_course(capsys, "new", "client-nat", d)
    assert code == 2 and "not an empty folder" in err
    code, _, err = ftlab_course(capsys, "new", "client-nat", tmp_path / "Bad_Name")
    assert code == 2


@pytest.mark.parametrize("option", ["--seed"])
def test_seed_is_for_reference_only(capsys, tmp_path, option):
    d = tmp_path / "s"
    ftlab_course(capsys, "start", "ipv6", d)
    code, _, err = ftlab_course(capsys, "check", d, option, "x")
    assert code == 2 and "only with --reference" in err
