"""Grading an exercise: the constraints on the student's files, and the goals on real cells.

    result = check(exercise, folder)       # runs the cells the goals need, on the student's files
    print("\n".join(result.lines()))
    result.solved

The goals run on the lab's own engine (lab.matrix.runner.run_matrix, the same as `ftlab run` and
`ftlab matrix`), on the network composed from the picture and the student's files
(lab.course.workspace), with the throughput phase off: every cell the goals name, once. A goal that
is not met is explained with what the run observed - the outcome, the stage, the device that
decided, the packet it dropped and the rule that dropped it (the verdict's reason) - and with what
the lab's model says of the cell (the path walk's reason names the rule that decides).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lab.course import workspace
from lab.course.exercise import METHOD, Constraint, Exercise, Goal
from lab.errors import InputError, LabError, Problem
from lab.ftps.modes import ENCRYPTED_CONTROL
from lab.matrix import scenario, targets

RUN = "run"


@dataclass
class Item:
    """One graded goal or constraint."""
    kind: str                    # goal | constraint
    number: int
    words: str
    ok: bool
    details: list[str] = field(default_factory=list)


@dataclass
class Result:
    exercise: Exercise
    items: list[Item] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)     # the student's files do not load
    cells: list[str] = field(default_factory=list)
    lab_errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    report: Path | None = None

    @property
    def solved(self) -> bool:
        return not self.problems and not self.lab_errors and bool(self.items) and all(i.ok for i in self.items)

    def counts(self) -> dict:
        goals = [i for i in self.items if i.kind == "goal"]
        cons = [i for i in self.items if i.kind == "constraint"]
        return {"goals": len(self.exercise.goals), "goals_met": sum(i.ok for i in goals),
                "constraints": len(self.exercise.constraints), "constraints_met": sum(i.ok for i in cons)}

    def lines(self) -> list[str]:
        out = []
        for p in self.problems:
            out.append(f"  {p}")
        for item in self.items:
            label = "ok  " if item.ok else "FAIL"
            out.append(f"  {label} {item.kind} {item.number}: {item.words}")
            out += [f"       {d}" for d in item.details]
        for e in self.lab_errors:
            out.append(f"  LAB ERROR {e}")
        n = self.counts()
        if self.problems:
            out.append(f"not solved: your files have {len(self.problems)} problem(s); fix them and check again")
        else:
            kept = f", {n['constraints_met']} of {n['constraints']} constraints kept" if n["constraints"] else ""
            out.append(f"{'solved' if self.solved else 'not solved'}: {n['goals_met']} of {n['goals']} goals met{kept}")
        return out


def check(ex: Exercise, folder: Path, *, say=lambda line: print(line, file=sys.stderr),
          report: bool = False) -> Result:
    """Grade the files in `folder` (a student's folder, or one holding the reference solution)."""
    import time

    t0 = time.monotonic()
    result = Result(ex)
    work = folder / workspace.WORK
    try:
        files = workspace.read(ex, folder)
        network = workspace.compose(ex, files, work)
        where = targets.target(str(network), "network")
        targets.deep_check(where, warn=lambda line: None)
    except InputError as exc:
        result.problems = list(exc.problems)
        return result
    model = where.model
    for n, c in enumerate(ex.constraints, 1):
        ok, details = constraint(c, files, model)
        result.items.append(Item("constraint", n, constraint_words(c), ok, details))
    cells = [resolve(cell, files) for cell in ex.cells()]
    wanted = [c for c in cells if c is not None]
    three_way = list(dict.fromkeys(g.three_way for g in ex.goals if g.three_way))
    observed: dict[str, dict] = {}
    side = None
    if three_way:        # in a sandbox of its own, beside the two-party cells'
        import threading

        def three() -> None:
            try:
                observed.update(run_three_way(ex, three_way, network, files, work, result, say=say))
            except (InputError, LabError) as exc:
                result.lab_errors.append(f"three-way transfers: {str(exc).splitlines()[0] if str(exc) else exc}")

        side = threading.Thread(target=three, daemon=True)
        side.start()
    try:
        if wanted:
            observed.update(run_cells(ex, wanted, str(network), work / RUN, result, say=say, report=report))
    finally:            # the three-way transfers' sandbox ends by itself; never leave it behind a failure here
        if side is not None:
            side.join()
    for n, g in enumerate(ex.goals, 1):
        ok, details = goal(g, files, observed)
        result.items.append(Item("goal", n, g.words(), ok, details))
    result.items.sort(key=lambda i: (i.kind != "goal", i.number))
    result.duration_s = round(time.monotonic() - t0, 1)
    return result


def resolve(cell: str, files: workspace.Files) -> str | None:
    """A goal's cell without its topology: `method+v6` -> `tls/epsv+v6` (None: no method given)."""
    base, _, options = cell.partition("+")
    if base == METHOD:
        if files.method is None:
            return None
        base = "/".join(files.method)
    return base + (f"+{options}" if options else "")


def run_cells(ex: Exercise, cells: list[str], network: str, out: Path, result: Result, *, say,
              report: bool) -> dict[str, dict]:
    """Run the cells on the student's network with the lab's engine; {cell without topology: entry}."""
    from lab.matrix.runner import run_matrix

    scen = scenario.load("default")
    chosen = []
    for text in dict.fromkeys(cells):
        cell = scenario.parse_cell_id(f"{ex.id}/{text}")
        if cell.options:
            scen.spec(cell)                  # an unknown variation: InputError
        if not scen.supported(cell):
            result.lab_errors.append(f"{text}: the lab's client or server does not support this cell")
            continue
        chosen.append(cell)
    paths = {ex.id: network}
    chosen = targets.with_overrides(chosen, scen, paths, say=lambda line: None)
    if not chosen:
        return {}
    if out.exists():
        shutil.rmtree(out)
    result.cells = [c.id.split("/", 1)[1] for c in chosen]
    say(f"running {len(chosen)} cell(s) on your files: {', '.join(result.cells)} ...")
    doc = run_matrix(chosen, scen, out, jobs=2, progress=False, command=f"ftlab course check ({ex.id})",
                     topology_paths=paths, throughput="off", reports=report)
    result.report = out / ("index.html" if report else "results.json")
    result.lab_errors += list(doc.get("lab_errors") or [])
    seen = {}
    for s in doc["scenarios"]:
        key = s["id"].split("/", 1)[1]
        seen[key] = s
        if s["outcome"] == "error":
            result.lab_errors.append(f"{key}: {s['reason']}")
    return seen


# -- goals -------------------------------------------------------------------------------------------

def run_three_way(ex: Exercise, wanted: list[str], network: Path, files: workspace.Files, work: Path,
                  result: Result, *, say) -> dict[str, dict]:
    """Three-way transfers (lab.matrix.fxprun's cases) on the student's network, both servers with
    the student's server FTP.DATA; {"3way:<goal's three_way>": observed}."""
    import yaml

    from lab.matrix import fxprun

    statements = {k: " ".join(v) if isinstance(v, list) else str(v) for k, v in (files.server_statements or {}).items()}
    cases = []
    for text in wanted:
        head, *tags = text.split("+")
        security, data = head.split("/")
        case = {"picture": ex.id, "security": security, "data": data}
        for tag in tags:
            key, _, side = tag.partition("-")
            case[key] = side
        cases.append(case)
    doc = {"kind": "fxp", "description": f"three-way transfers of the exercise {ex.id}",
           "pictures": {ex.id: {"topology": str(network.resolve()), "servers": ex.three_way, "statements": statements}},
           "cases": cases}
    path = work / "three-way.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = fxprun.load(str(path))
    say(f"running {len(loaded)} three-way transfer(s) on your files: {', '.join(wanted)} ...")
    result.cells += [f"three-way {w}" for w in wanted]
    lab_errors: list[str] = []
    observed = fxprun.run_cases(loaded, lab_errors)
    if lab_errors:
        result.lab_errors.append(f"three-way transfers: {lab_errors[0].splitlines()[0]}")
        return {}
    out = {}
    for text, c in zip(wanted, loaded, strict=True):
        obs = observed[c.id]
        obs.setdefault("reason", "")
        obs["expected_reason"] = fxprun.predict(c).reason
        out[f"3way:{text}"] = obs
    return out


def goal(g: Goal, files: workspace.Files, observed: dict[str, dict]) -> tuple[bool, list[str]]:
    if g.answer:
        return answer(g, files, observed)
    if g.three_way:
        s = observed.get(f"3way:{g.three_way}")
        if s is None:
            return False, [f"the three-way transfer {g.three_way} did not run"]
        ok = s["outcome"] == g.outcome and (g.stage is None or s.get("stage") == g.stage) and \
            (g.device is None or s.get("device") == g.device)
        return ok, [f"observed: {observed_words(s)}"] if ok else explain(s)
    key = resolve(g.cell, files)
    if key is None:
        return False, ["no method: your method file says none"]
    s = observed.get(key)
    if s is None:
        return False, [f"{key} did not run"]
    if s["outcome"] == "error":
        return False, [f"{key}: the lab itself failed ({s['reason']}); check again"]
    if g.transcript:
        pattern = re.compile(g.transcript)
        hit = next((line for line in s.get("transcript") or [] if pattern.search(line)), None)
        if hit is None:
            return False, [f"{key}: no line of the control channel matches /{g.transcript}/", *explain(s)]
        if g.outcome is None:
            return True, [f"{key}: {hit}"]
    ok = s["outcome"] == g.outcome and (g.stage is None or s.get("stage") == g.stage) and \
        (g.device is None or s.get("device") == g.device)
    if ok:
        return True, [f"{key}: {observed_words(s)}"] if g.cell.startswith(METHOD) else []
    return False, explain(s)


def answer(g: Goal, files: workspace.Files, observed: dict[str, dict]) -> tuple[bool, list[str]]:
    given = files.answers.get(g.answer)
    if given is None or str(given).strip() in ("", "?"):
        return False, [f"answers.{g.answer}: not answered yet"]
    if g.from_cell:
        key = resolve(g.from_cell, files)
        s = observed.get(key or "")
        if s is None or s["outcome"] == "error":
            return False, [f"{g.from_cell} did not run; check again"]
        right = [s.get(g.field)]
    else:
        right = g.equals if isinstance(g.equals, list) else [g.equals]
    if _norm(given) in {_norm(r) for r in right}:
        return True, []
    return False, [f"answers.{g.answer}: {str(given)[:60]!r} is not right"]


def _norm(value) -> str:
    return re.sub(r"\s+", " ", str(value).strip().lower())


def observed_words(s: dict) -> str:
    said = s["outcome"] + (f" at {s['stage']}" if s.get("stage") else "") + (f" by {s['device']}" if s.get("device") else "")
    return f"{said}: {s['reason']}"


def explain(s: dict) -> list[str]:
    """Why a cell did what it did: the run's verdict (device, packet, rule), the control channel's
    last replies, and the lab's model's reason."""
    out = [f"observed: {observed_words(s)}"]
    drop = s.get("drop") or {}
    if drop.get("reason") and drop["reason"] not in s["reason"]:
        out.append(f"the drop: {drop['reason']}")
    replies = [line for line in s.get("transcript") or [] if re.match(r"client <? ?\d{3}[ -]|client < \d{3}", line)]
    if s["outcome"] == "fail" and replies:
        out.append(f"last reply: {replies[-1].split(' ', 1)[1].lstrip('< ')[:100]}")
    if s.get("expected_reason"):
        out.append(f"the lab's model: {s['expected_reason']}")
    return out


# -- constraints -------------------------------------------------------------------------------------

def constraint_words(c: Constraint) -> str:
    if c.text:
        return c.text
    s = c.spec
    return {
        "control-encrypted": "the control channel stays encrypted for the whole session (tls, implicit, implicit-zos)",
        "data-protected": "the data is protected (no plain FTP)",
        "alg-off": "no ALG: no NAT device reads the control channel",
        "max-open-ports": f"{s.get('device')} admits new connections {s.get('src')} -> {s.get('dst')} on at most "
                          f"{s.get('max')} ports (besides {', '.join(map(str, s.get('except', [21, 990])))})",
        "statement": f"{s.get('side')} FTP.DATA says {s.get('name')} {s.get('value')}",
        "method-not": f"your method is none of {', '.join(s.get('methods', []))}",
    }.get(c.kind, c.kind)


def constraint(c: Constraint, files: workspace.Files, model) -> tuple[bool, list[str]]:
    s = c.spec
    method = "/".join(files.method) if files.method else None
    if c.kind == "control-encrypted":
        ok = files.method is not None and files.method[0] in ENCRYPTED_CONTROL
        return ok, [] if ok else [f"your method {method} puts the control channel in clear"
                                  + (" after login (CCC)" if files.method and files.method[0].endswith("ccc") else "")]
    if c.kind == "data-protected":
        ok = files.method is not None and files.method[0] != "plain"
        return ok, [] if ok else [f"your method {method}: user, password and data cross in clear"]
    if c.kind == "method-not":
        hit = [m for m in s["methods"] if method and (fnmatch.fnmatch(method, m) or method.split("/")[0] == m)]
        return not hit, [f"your method {method} is {hit[0]}"] if hit else []
    if c.kind == "alg-off":
        on = [n.name for n in model.nodes.values() if n.nat is not None and n.nat.alg != "off"]
        return not on, [f"{', '.join(on)}: ALG on"] if on else []
    if c.kind == "statement":
        given = (files.server_statements if s["side"] == "server" else files.client_statements) or {}
        value = given.get(s["name"])
        ok = value is not None and _norm(value).replace(" ", "") == _norm(s["value"]).replace(" ", "")
        return ok, [] if ok else [f"{s['side']} FTP.DATA: {s['name']} is {value if value is not None else 'not set'}"]
    if c.kind == "max-open-ports":
        return open_ports(c, model)
    return False, [f"unknown constraint {c.kind}"]


def open_ports(c: Constraint, model) -> tuple[bool, list[str]]:
    """Count the TCP ports on which the firewall's own model admits a new connection src -> dst."""
    from firewall import static
    from lab.devkit.types import Flow, Unreadable

    s = c.spec
    node = model.nodes.get(s["device"])
    if node is None or node.firewall is None or node.firewall.mode != "static":
        return False, [f"{s['device']} is not a static filter"]
    fw = node.firewall
    flow = dict(proto="tcp", src=ipaddress.ip_address(s["src"]), dst=ipaddress.ip_address(s["dst"]),
                in_interface=s.get("in_interface"), out_interface=s.get("out_interface"))
    skip = set(s.get("except", [21, 990]))
    edges = sorted({1, 65536, *(p for p in static.port_edges(fw) if 1 <= p <= 65536), *skip, *(p + 1 for p in skip)})
    admitted: list[tuple[int, int]] = []
    try:
        for low, high in zip(edges, edges[1:], strict=False):
            if low in skip:
                continue
            action, _ = static.decide(fw, Flow(dport=low, **flow))
            if action in ("accept", "pass"):
                admitted.append((low, high - 1))
    except Unreadable as exc:
        return False, [f"the lab's model cannot read the ruleset: {exc}"]
    count = sum(h - lo + 1 for lo, h in admitted)
    shown = ", ".join(f"{lo}-{h}" if h > lo else str(lo) for lo, h in admitted[:6]) + (" ..." if len(admitted) > 6 else "")
    words = f"{s['device']} admits {count} port(s)" + (f": {shown}" if admitted else "")
    return count <= s["max"], [words]


def clean(folder: Path) -> None:
    """Remove what a check made in a folder."""
    shutil.rmtree(folder / workspace.WORK, ignore_errors=True)

