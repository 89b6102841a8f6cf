"""The course's exercise format, loader, student files, progress and grading rules (no root, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from lab.course import COURSE_DIR, checker, exercise, progress, workspace
from lab.errors import InputError
from lab.topology import loader

IDS = exercise.ids()


def problems_of(fn, *args, **kw) -> list[str]:
    with pytest.raises(InputError) as exc:
        fn(*args, **kw)
    return [str(p) for p in exc.value.problems]


def copy_exercise(tmp_path: Path, name: str = "passive-ports") -> Path:
    target = tmp_path / "course" / name
    shutil.copytree(COURSE_DIR / name, target, ignore=shutil.ignore_patterns(".course"))
    return target


# -- the shipped course ------------------------------------------------------------------------------

def test_the_course_has_the_slides_exercises_in_order():
    assert len(IDS) >= 10
    assert IDS[:2] == ["two-connections", "client-nat-pasv"]
    for topic in ("server-nat-epsv", "passive-ports", "dynamic-ccc", "double-nat", "repair-ruleset", "ipv6",
                  "who-dropped", "three-way-refused", "idle-keepalive"):
        assert topic in IDS


def test_the_schema_is_a_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(exercise.SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("name", IDS)
def test_every_exercise_loads_with_every_variant(name):
    ex = exercise.load(name)
    assert ex.id == name and ex.hints and ex.goals and ex.task.strip()
    assert ex.solution_dir.is_dir() and ex.picture_path.is_file()
    assert set(ex.files("start")) == {e.file for e in ex.editable}
    assert set(ex.files("solution")) == set(ex.files("start"))
    assert ex.files("solution") != ex.files("start"), "the reference solution changes something"
    for seed in range(max(ex.alternatives, 1) * 3):
        v = exercise.load(name, seed=str(seed))
        for text in (*v.files("start").values(), *v.files("solution").values(), v.task, v.picture_text):
            assert "{{" not in text


@pytest.mark.parametrize("name", IDS)
def test_every_reference_network_loads(name, tmp_path):
    """The network a check composes from the reference solution is a valid topology file."""
    ex = exercise.load(name)
    for file, text in ex.files("solution").items():
        (tmp_path / file).write_text(text)
    path = workspace.compose(ex, workspace.read(ex, tmp_path), tmp_path / workspace.WORK)
    model = loader.load(path)
    assert model.name == name


# -- errors: file:line: field: problem ---------------------------------------------------------------

def test_an_unknown_key_and_a_bad_kind_are_named_at_their_lines(tmp_path):
    folder = copy_exercise(tmp_path)
    path = folder / "exercise.yaml"
    text = path.read_text().replace("title: PASSIVEDATAPORTS", "colour: blue\ntitle: PASSIVEDATAPORTS")
    text = text.replace("kind: iptables-save", "kind: iptables")
    path.write_text(text)
    lines = text.splitlines()
    found = problems_of(exercise.load, str(folder))
    colour = next(i for i, line in enumerate(lines, 1) if line.startswith("colour:"))
    kind = next(i for i, line in enumerate(lines, 1) if "kind: iptables}" in line or "kind: iptables," in line)
    assert f"{path}:{colour}: colour: unknown key; allowed: " in found[0] or \
        any(p.startswith(f"{path}:{colour}: colour: unknown key") for p in found)
    assert any(p.startswith(f"{path}:{kind}: editable[1].kind: 'iptables' is not one of") for p in found)


def test_names_that_point_nowhere_are_problems(tmp_path):
    folder = copy_exercise(tmp_path)
    path = folder / "exercise.yaml"
    text = path.read_text()
    text = text.replace("- {cell: tls/epsv, outcome: pass}", "- {cell: tlz/epsv, outcome: pass}")
    text = text.replace("device: fw, about", "device: fw9, about")
    text = text.replace("id: passive-ports", "id: passive-portz")
    path.write_text(text)
    (folder / "start" / "fw.rules").unlink()
    found = problems_of(exercise.load, str(folder))
    joined = "\n".join(found)
    assert "id: 'passive-portz' is not the folder's name 'passive-ports'" in joined
    assert "goals[1].cell: 'tlz/epsv': 'tlz' is not a security mode" in joined
    assert "editable[1].device: 'fw9' is no node of the picture" in joined
    assert "editable[1].file: 'fw.rules' is not in start/" in joined
    assert all(p.startswith(f"{path}:") and p.split(":")[1].isdigit() and int(p.split(":")[1]) > 0 for p in found)


def test_a_placeholder_without_a_parameter_is_named(tmp_path):
    folder = copy_exercise(tmp_path, "client-nat-pasv")
    path = folder / "exercise.yaml"
    path.write_text(path.read_text().replace("(method tls/port)", "(method {{speed}})"))
    found = problems_of(exercise.load, str(folder))
    assert len(found) == 1 and "speed: {{speed}}: no such parameter" in found[0]


def test_a_missing_solution_and_an_unknown_picture(tmp_path):
    folder = copy_exercise(tmp_path, "client-nat-pasv")
    shutil.rmtree(folder / "solution")
    path = folder / "exercise.yaml"
    path.write_text(path.read_text().replace("picture: client-nat", "picture: client-nap"))
    joined = "\n".join(problems_of(exercise.load, str(folder)))
    assert "picture: 'client-nap' is neither a file in client-nat-pasv/ nor a shipped picture" in joined
    assert "no reference solution: solution/ is missing" in joined


def test_not_an_exercise_file_and_an_unknown_id(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "exercise.yaml").write_text("- a list\n")
    assert "not a exercise file" in problems_of(exercise.load, str(tmp_path / "x"))[0]
    found = problems_of(exercise.load, "passive-port")
    assert "no exercise 'passive-port' (did you mean passive-ports?)" in found[0]


# -- variants ----------------------------------------------------------------------------------------

def test_a_seed_picks_the_same_variant_every_time():
    alternatives = [{"n": i} for i in range(5)]
    assert exercise.pick("x", alternatives, None) == (0, {"n": 0})
    assert exercise.pick("x", alternatives, "alice") == exercise.pick("x", alternatives, "alice")
    picked = {exercise.pick("x", alternatives, f"student{i}")[0] for i in range(40)}
    assert len(picked) == 5
    a = exercise.load("passive-ports", seed="carol")
    assert f"PASSIVEDATAPORTS ({a.params['low']},{a.params['high']})" in a.files("solution")["server.ftpdata"]
    assert f"--dport {a.params['low']}:{a.params['high']}" in a.files("solution")["fw.rules"]


# -- the student's files -----------------------------------------------------------------------------

def test_ftpdata_statements_repeat_as_lists_and_bad_ones_are_named(tmp_path):
    good = tmp_path / "server.ftpdata"
    good.write_text("; comment\nPASSIVEDATAPORTS (60000,60100) ; range\nCIPHERSUITE SSL_AES_128_SHA\n"
                    "CIPHERSUITE\tSSL_AES_256_SHA\n")
    assert workspace.ftpdata_statements(good, "server") == {
        "PASSIVEDATAPORTS": "(60000,60100)", "CIPHERSUITE": ["SSL_AES_128_SHA", "SSL_AES_256_SHA"]}
    bad = tmp_path / "bad.ftpdata"
    bad.write_text("\nPASSIVEDATAPORT (1,2)\n")
    found = problems_of(workspace.ftpdata_statements, bad, "server")
    assert found[0].startswith(f"{bad}:2: PASSIVEDATAPORT:") and "PASSIVEDATAPORTS" in found[0]


def test_a_method_file(tmp_path):
    path = tmp_path / "method.yaml"
    path.write_text("method: tls/epsv\n")
    assert workspace.read_method(path) == ("tls", "epsv")
    path.write_text("# mine\nmethod: tls/epsx\n")
    assert problems_of(workspace.read_method, path) == [f"{path}:2: method: 'epsx' is not a data mode: "
                                                        "pasv, epsv, port, eprt"]
    path.write_text("methd: tls/epsv\n")
    assert "expected `method: <security>/<data>`" in problems_of(workspace.read_method, path)[0]


def test_the_network_carries_the_students_ruleset_and_statements(tmp_path):
    ex = exercise.load("passive-ports")
    for file, text in ex.files("solution").items():
        (tmp_path / file).write_text(text)
    path = workspace.compose(ex, workspace.read(ex, tmp_path), tmp_path / ".course")
    model = loader.load(path)
    assert str(model.nodes["fw"].firewall.iptables_save) == str((tmp_path / "fw.rules").resolve())
    assert model.ftp.server_statements["PASSIVEDATAPORTS"] == "(60000,60100)"
    assert model.nodes["fw"].firewall.rules == []


def test_a_missing_file_is_a_problem(tmp_path):
    ex = exercise.load("passive-ports")
    (tmp_path / "server.ftpdata").write_text("")
    assert "missing: the exercise's iptables-save file" in problems_of(workspace.read, ex, tmp_path)[0]


# -- progress ----------------------------------------------------------------------------------------

def test_progress_round_trip_and_not_an_exercise_folder(tmp_path):
    assert "is not an exercise folder" in problems_of(progress.load, tmp_path)[0]
    assert "no such folder" in problems_of(progress.load, tmp_path / "nope")[0]
    st = progress.State(exercise="ipv6", seed="s1")
    progress.save(tmp_path, st)
    back = progress.load(tmp_path)
    assert (back.exercise, back.seed, back.hints_shown, back.solved) == ("ipv6", "s1", 0, False)
    (tmp_path / progress.STATE_FILE).write_text('{"schema": "other"}')
    assert "not a course state file" in problems_of(progress.load, tmp_path)[0]
    (tmp_path / progress.STATE_FILE).write_text("garbage")
    assert "not a course state file" in problems_of(progress.load, tmp_path)[0]


def test_progress_records_checks_and_the_first_solve():
    ex = exercise.load("ipv6")
    st = progress.State(exercise="ipv6")
    failing = checker.Result(ex, items=[checker.Item("goal", 1, "x", False)])
    for _ in range(progress.MAX_CHECKS + 5):
        st.record(failing)
    assert len(st.checks) == progress.MAX_CHECKS and not st.solved
    passing = checker.Result(ex, items=[checker.Item("goal", n, "x", True) for n in (1, 2, 3)])
    first = st.record(passing)["at"]
    st.record(failing)
    assert st.solved and st.solved_at == first


# -- grading rules (the cells' results given) ----------------------------------------------------------

def files(**kw) -> workspace.Files:
    return workspace.Files(Path("."), **kw)


def test_cell_goals_are_graded_and_explained():
    ex = exercise.load("repair-ruleset")
    g = ex.goals[0]                                         # tls/epsv passes
    dropped = {"outcome": "fail", "stage": "data-connect", "device": "fw",
               "reason": "fw dropped tcp 198.51.100.10:4 -> 10.1.1.10:60001 [S] (dropped by fw.rules:10: -A FORWARD ...)",
               "transcript": ["client > EPSV", "client < 229 Entering Extended Passive Mode (|||60001|)"],
               "expected_reason": "fw's filter drops it (fw.rules:10)"}
    ok, details = checker.goal(g, files(), {"tls/epsv": dropped})
    assert not ok
    assert details[0] == f"observed: fail at data-connect by fw: {dropped['reason']}"
    assert "last reply: 229 Entering Extended Passive Mode (|||60001|)" in details
    assert "the lab's model: fw's filter drops it (fw.rules:10)" in details
    assert checker.goal(g, files(), {"tls/epsv": {"outcome": "pass", "reason": "ok"}})[0]
    wrong_device = ex.goals[2]                              # tls/pasv fails at data-connect by internet
    assert not checker.goal(wrong_device, files(), {"tls/pasv": dropped})[0]


def test_method_goals_and_answers():
    ex = exercise.load("ipv6")
    method = files(method=("tls", "epsv"))
    assert checker.resolve("method+v6", method) == "tls/epsv+v6"
    assert checker.resolve("method", files()) is None
    assert checker.goal(ex.goals[0], method, {"tls/epsv+v6": {"outcome": "pass", "reason": "ok"}})[0]
    who = exercise.load("who-dropped")
    seen = {"plain/port": {"outcome": "fail", "stage": "data-connect", "device": "fw-c", "reason": "x"}}
    assert checker.goal(who.goals[0], files(answers={"port_dropped_by": " FW-C "}), seen)[0]
    ok, details = checker.goal(who.goals[0], files(answers={"port_dropped_by": "fw-s"}), seen)
    assert not ok and "is not right" in details[0]
    assert "not answered yet" in checker.goal(who.goals[0], files(answers={"port_dropped_by": None}), seen)[1][0]
    two = exercise.load("two-connections")
    assert checker.goal(two.goals[3], files(answers={"control_port": 21}), {})[0]


def test_constraints_on_the_method_and_statements():
    ex = exercise.load("server-nat-epsv")
    encrypted, passive = ex.constraints
    assert checker.constraint(encrypted, files(method=("tls", "epsv")), None)[0]
    ok, why = checker.constraint(encrypted, files(method=("tls-ccc", "pasv")), None)
    assert not ok and "after login (CCC)" in why[0]
    assert not checker.constraint(passive, files(method=("tls", "eprt")), None)[0]
    three = exercise.load("three-way-refused")
    c = three.constraints[0]
    assert checker.constraint(c, files(server_statements={"PASSIVEDATACONN": "noredirect"}), None)[0]
    assert not checker.constraint(c, files(server_statements={}), None)[0]


def test_open_ports_are_counted_with_the_filters_own_model(tmp_path):
    ex = exercise.load("passive-ports")
    limit = ex.constraints[0]
    # one folder each: firewall.static reads a ruleset once per path (lru_cache)
    for which, expected in (("start", 0), ("solution", 101)):
        folder = tmp_path / which
        folder.mkdir()
        for file, text in ex.files(which).items():
            (folder / file).write_text(text)
        model = loader.load(workspace.compose(ex, workspace.read(ex, folder), folder / ".course"))
        ok, details = checker.constraint(limit, files(), model)
        assert ok and details[0].startswith(f"fw admits {expected} port(s)")
    wide = tmp_path / "wide"
    shutil.copytree(tmp_path / "solution", wide)
    (wide / "fw.rules").write_text(ex.files("solution")["fw.rules"].replace("--dport 60000:60100", "--dport 1024:65535"))
    model = loader.load(workspace.compose(ex, workspace.read(ex, wide), wide / ".course"))
    ok, details = checker.constraint(limit, files(), model)
    assert not ok and details[0] == "fw admits 64512 port(s): 1024-65535"


# -- the students' shell (without a network) ----------------------------------------------------------

def test_events_in_words_and_read_as_they_come(tmp_path):
    from lab.devkit import events  # the one wording: both shells and the live page

    drop = {"ts": 1.0, "device": "fw", "type": "drop", "proto": "tcp", "src": "198.51.100.10", "sport": 4,
            "dst": "203.0.113.10", "dport": 60001, "flags": "S", "reason": "dropped by fw.rules:9: -A FORWARD -j DROP"}
    assert events.describe(drop) == ("fw dropped tcp 198.51.100.10:4 -> 203.0.113.10:60001 [S] "
                                        "(dropped by fw.rules:9: -A FORWARD -j DROP)")
    assert events.describe({"device": "fw", "type": "pinhole-open", "src": "a", "dport": 7}) == \
        "fw opened a pinhole: src=a, dport=7"                          # fields it does not know: listed
    assert events.describe({"device": "fw", "type": "pinhole-open", "src": "203.0.113.10", "dst": "198.51.100.10",
                            "dport": 5000, "conn": "c1", "lifetime": 30.0}) == \
        "fw opened a pinhole: 203.0.113.10 -> 198.51.100.10:5000 for 30 s, announced on the control connection c1"
    assert events.describe({"device": "fw", "type": "pinhole-open", "src": "203.0.113.10", "dst": "198.51.100.10",
                            "dport": 5000, "conn": "c1", "lifetime": 30.0, "line": "PORT 198,51,100,10,19,136"}) == \
        ("fw opened a pinhole: 203.0.113.10 -> 198.51.100.10:5000 for 30 s, announced in "
         "'PORT 198,51,100,10,19,136' on the control connection c1")          # the command it saw
    assert events.describe({"device": "fw", "type": "pinhole-used", "src": "a", "sport": 20, "dst": "b",
                            "dport": 5000}) == "fw let a connection through its pinhole: a:20 -> b:5000"
    assert events.describe({"device": "nat", "type": "rewrite", "conn": "c1", "before": "PORT 10,0,0,1,1,2\r\n",
                            "after": "PORT 192,0,2,1,3,4"}) == \
        "nat saw 'PORT 10,0,0,1,1,2' and rewrote it: 'PORT 192,0,2,1,3,4' (control connection c1)"
    assert events.describe({"device": "nat", "type": "mapping-open", "public": "192.0.2.1:40000",
                            "private": "10.0.0.1:258", "peer": "203.0.113.10"}) == \
        "nat opened a NAT mapping: 192.0.2.1:40000 -> 10.0.0.1:258 for 203.0.113.10"
    assert events.describe({"device": "fw", "type": "drop", "src": "a", "sport": 1, "dst": "b", "dport": 2,
                            "rule": "FTLAB-DYN NFQUEUE 22"}).endswith("(FTLAB-DYN NFQUEUE 22)")   # no reason: the rule
    assert "cannot read it any more" in events.describe({"device": "fw", "type": "tls-detected", "direction": "c2s"})
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(drop) + "\n" + '{"ts": 2, "device"')       # a line still being written
    found, offset = events.read(path)
    assert found == [drop]
    with open(path, "a") as f:
        f.write(': "nat", "type": "ready"}\n')
    more, _ = events.read(path, offset)
    assert more == [{"ts": 2, "device": "nat", "type": "ready"}]
    assert events.read(tmp_path / "none") == ([], 0)
