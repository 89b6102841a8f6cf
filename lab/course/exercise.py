"""The exercise format and its loader.

An exercise is a folder (course/<id>/) with `exercise.yaml` (schema: course/exercise.schema.json),
the files a student starts with (`start/`), the reference solution (`solution/`: files that replace
the student's) and, unless it names a shipped picture, its picture as a topology file. The file is
read as hostile input through the lab's YAML reader (lab.topology.yamlfile, which keeps lines),
checked against the schema, then its names are checked against each other and against the picture;
every problem is a `file:line: field: problem` (lab.errors.Problem), and nothing is half-loaded.

Per-student variants: `params:` lists alternatives (each a mapping of names to values); a seed picks
one, reproducibly (`pick`), and every `{{name}}` in exercise.yaml, the picture in the folder and the
start and solution files is replaced by its value before anything is read.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import TOPOLOGY_DIR
from lab.course import COURSE_DIR
from lab.errors import InputError, Problem, read_input
from lab.ftps.modes import DATA_MODES, SECURITY_MODES
from lab.topology.yamlfile import MAX_BYTES, Mapping, not_ours, read_yaml, schema_problems

SCHEMA_FILE = COURSE_DIR / "exercise.schema.json"
EXERCISE_FILE = "exercise.yaml"
TOP_KEYS = {"schema", "id", "order", "title", "slide", "picture", "task", "editable", "constraints", "goals",
            "hints", "start", "solution", "params", "three_way"}
KINDS = ("server-ftpdata", "client-ftpdata", "iptables-save", "method", "answers")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\s*\}\}")
#: `method` in a goal: the student's method.yaml, then optional +variations
METHOD = "method"


@dataclass(frozen=True)
class Editable:
    file: str
    kind: str
    device: str | None = None
    about: str = ""


@dataclass(frozen=True)
class Constraint:
    kind: str
    line: int
    text: str = ""
    spec: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Goal:
    line: int
    text: str = ""
    cell: str | None = None          # `tls/epsv`, `plain/port+alg-off`, `method`, `method+v6`
    outcome: str | None = None
    stage: str | None = None
    device: str | None = None
    transcript: str | None = None
    answer: str | None = None
    equals: Any = None
    from_cell: str | None = None
    field: str = "device"
    three_way: str | None = None     # `plain/pasv+passive-dst`: a three-way transfer (lab.matrix.fxprun)

    def words(self) -> str:
        """The goal in plain words (its `text:` when the exercise gives one)."""
        if self.text:
            return self.text
        if self.answer:
            return f"answers.{self.answer} is right"
        if self.three_way:
            return f"the three-way transfer {self.three_way} {'passes' if self.outcome == 'pass' else 'is refused'}"
        what = "your method" if self.cell and self.cell.split("+")[0] == METHOD else self.cell
        if self.transcript:
            return f"{what}: the control channel shows /{self.transcript}/"
        said = f"{what} {'passes' if self.outcome == 'pass' else 'fails'}"
        if self.stage:
            said += f" at {self.stage}"
        if self.device:
            said += f" (decided by {self.device})"
        return said


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    task: str
    picture: str                     # as written: a file in the folder or a shipped name
    picture_path: Path               # the topology file
    picture_text: str                # its text, placeholders replaced
    folder: Path
    source: Path                     # exercise.yaml
    editable: tuple[Editable, ...]
    constraints: tuple[Constraint, ...]
    goals: tuple[Goal, ...]
    hints: tuple[str, ...]
    start_dir: Path
    solution_dir: Path
    slide: str = ""
    order: int = 0
    params: dict = field(default_factory=dict, hash=False, compare=False)   # the alternative chosen
    alternatives: int = 0
    variant: int = 0                 # its index among the alternatives
    three_way: dict = field(default_factory=dict, hash=False, compare=False)   # {src, dst: {node, address}}

    def editable_file(self, kind: str) -> Editable | None:
        return next((e for e in self.editable if e.kind == kind), None)

    def files(self, which: str = "start") -> dict[str, str]:
        """{file name: text} of the start or the solution files, placeholders replaced. The solution
        replaces only the files it has: the others stay as they start."""
        out = {}
        for e in self.editable:
            for folder in ((self.solution_dir, self.start_dir) if which == "solution" else (self.start_dir,)):
                path = folder / e.file
                if path.is_file():
                    out[e.file] = substitute(read_input(path, "exercise file"), self.params, str(path))[0]
                    break
        return out

    def cells(self) -> list[str]:
        """The cells the goals run (`method` unresolved), in order, once each."""
        wanted = [g.cell for g in self.goals if g.cell] + [g.from_cell for g in self.goals if g.from_cell]
        return list(dict.fromkeys(wanted))


# -- finding exercises --------------------------------------------------------------------------------

def ids(course: Path = COURSE_DIR) -> list[str]:
    """The exercises of a course folder, in their order (then by id)."""
    found = []
    for d in sorted(p for p in course.iterdir() if (p / EXERCISE_FILE).is_file()) if course.is_dir() else []:
        try:
            raw, _ = read_yaml(read_input(d / EXERCISE_FILE, "exercise file", MAX_BYTES), str(d))
            order = raw.get("order", 9999) if isinstance(raw, dict) else 9999
        except InputError:
            order = 9999
        found.append((order if isinstance(order, int) else 9999, d.name))
    return [name for _, name in sorted(found)]


def folder_of(name: str, course: Path = COURSE_DIR) -> Path:
    """The folder of an exercise: a shipped id, or a path to a folder with exercise.yaml."""
    if re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) and (course / name / EXERCISE_FILE).is_file():
        return (course / name).resolve()
    path = Path(name)
    if path.is_dir() and (path / EXERCISE_FILE).is_file():
        return path.resolve()
    if path.name == EXERCISE_FILE and path.is_file():
        return path.parent.resolve()
    known = ids(course)
    close = [k for k in known if name in k or k in name]
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InputError([Problem("ID", 0, "", f"no exercise {name!r}{hint}; `ftlab course list --ids` lists them: "
                                           f"{', '.join(known)}")])


# -- variants -----------------------------------------------------------------------------------------

def pick(exercise_id: str, alternatives: list, seed: str | int | None) -> tuple[int, dict]:
    """The alternative a seed picks (the first one without a seed): the same seed, the same variant."""
    if not alternatives:
        return 0, {}
    if seed is None or str(seed) == "":
        return 0, dict(alternatives[0])
    digest = hashlib.sha256(f"{exercise_id}:{seed}".encode()).digest()
    index = int.from_bytes(digest[:8], "big") % len(alternatives)
    return index, dict(alternatives[index])


def substitute(text: str, params: dict, file: str) -> tuple[str, list[Problem]]:
    """Replace every {{name}}; a name no parameter gives is a problem at its line."""
    problems = []

    def value(m: re.Match) -> str:
        if m.group(1) in params:
            return str(params[m.group(1)])
        line = text.count("\n", 0, m.start()) + 1
        problems.append(Problem(file, line, m.group(1), f"{{{{{m.group(1)}}}}}: no such parameter"
                                                        f"{' (params: ' + ', '.join(params) + ')' if params else ''}"))
        return m.group(0)

    return PLACEHOLDER.sub(value, text), problems


# -- loading ------------------------------------------------------------------------------------------

def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def load(name: str | Path, seed: str | int | None = None, course: Path = COURSE_DIR) -> Exercise:
    """The exercise `name` (an id or a folder) with the variant `seed` picks; InputError listing
    every problem as file:line: field: problem."""
    folder = folder_of(str(name), course)
    source = folder / EXERCISE_FILE
    where = str(source)
    text = read_input(source, "exercise file", MAX_BYTES)
    raw, problems = read_yaml(text, where)
    if raw is None and not problems:
        problems = [Problem(where, 1, "", "the file is empty")]
    if problems:
        raise InputError(problems)
    if foreign := not_ours(where, raw, TOP_KEYS, "exercise file"):
        raise foreign
    alternatives = raw.get("params") if isinstance(raw.get("params"), list) else []
    index, params = pick(str(raw.get("id", folder.name)), alternatives, seed)
    if params:
        text, problems = substitute(text, params, where)
        if problems:
            raise InputError(problems)
        raw, problems = read_yaml(text, where)
        if problems:
            raise InputError(problems)
    else:
        _, problems = substitute(text, {}, where)      # a placeholder without any params
        if problems:
            raise InputError(problems)
    problems = schema_problems(raw, schema(), where)
    if problems:
        raise InputError(problems)
    return _build(raw, folder, source, params, len(alternatives), index)


def _build(raw: Mapping, folder: Path, source: Path, params: dict, alternatives: int, index: int) -> Exercise:
    where = str(source)
    problems: list[Problem] = []

    def bad(line: int, fieldname: str, message: str) -> None:
        problems.append(Problem(where, line, fieldname, message))

    if raw["id"] != folder.name:
        bad(raw.line_of("id"), "id", f"{raw['id']!r} is not the folder's name {folder.name!r}")
    picture_path, picture_text = _picture(raw, folder, params, bad)
    nodes = _node_names(picture_text, str(picture_path)) if picture_text else set()

    editable = []
    seen_files: dict[str, int] = {}
    seen_kinds: dict[str, int] = {}
    start_dir = folder / str(raw.get("start", "start"))
    solution_dir = folder / str(raw.get("solution", "solution"))
    for i, e in enumerate(raw["editable"]):
        line = raw["editable"].line_of(i)
        item = Editable(e["file"], e["kind"], e.get("device"), e.get("about", ""))
        if item.file in seen_files:
            bad(line, f"editable[{i}].file", f"{item.file!r} is listed twice (also line {seen_files[item.file]})")
        seen_files[item.file] = line
        if item.kind in seen_kinds:
            bad(line, f"editable[{i}].kind", f"a second {item.kind} file (also line {seen_kinds[item.kind]})")
        seen_kinds[item.kind] = line
        if item.kind == "iptables-save" and not item.device:
            bad(line, f"editable[{i}].device", "an iptables-save file needs the firewall's node (device: fw)")
        if item.device and nodes and item.device not in nodes:
            bad(line, f"editable[{i}].device", f"{item.device!r} is no node of the picture ({', '.join(sorted(nodes))})")
        if not (start_dir / item.file).is_file():
            bad(line, f"editable[{i}].file", f"{item.file!r} is not in {start_dir.name}/")
        editable.append(item)
    if not solution_dir.is_dir():
        bad(raw.line_of("solution") if "solution" in raw else raw.line, "solution",
            f"no reference solution: {solution_dir.name}/ is missing")
    else:
        for extra in sorted(p.name for p in solution_dir.iterdir() if p.name not in seen_files):
            bad(raw.line_of("editable"), "solution", f"{solution_dir.name}/{extra} is not an editable file")
    kinds = set(seen_kinds)

    constraints = []
    for i, c in enumerate(raw.get("constraints") or []):
        line = raw["constraints"].line_of(i)
        kind = c["kind"]
        need = {"max-open-ports": ("device", "max", "src", "dst"), "statement": ("side", "name", "value"),
                "method-not": ("methods",)}.get(kind, ())
        missing = [k for k in need if k not in c]
        if missing:
            bad(line, f"constraints[{i}]", f"{kind} needs {', '.join(missing)}")
        if kind in ("control-encrypted", "data-protected", "method-not") and "method" not in kinds:
            bad(line, f"constraints[{i}].kind", f"{kind} is about the student's method: no method file is editable")
        if kind == "max-open-ports" and c.get("device") and nodes and c["device"] not in nodes:
            bad(line, f"constraints[{i}].device", f"{c['device']!r} is no node of the picture")
        constraints.append(Constraint(kind, line, c.get("text", ""), {k: v for k, v in c.items()}))

    goals = []
    for i, g in enumerate(raw["goals"]):
        line = raw["goals"].line_of(i)
        goal = Goal(line, g.get("text", ""), g.get("cell"), g.get("outcome"), g.get("stage"), g.get("device"),
                    g.get("transcript"), g.get("answer"), g.get("equals"), g.get("from_cell"), g.get("field", "device"),
                    g.get("three_way"))
        for key in ("cell", "from_cell"):
            value = getattr(goal, key)
            if value is not None and (msg := cell_problem(value, "method" in kinds)):
                bad(line, f"goals[{i}].{key}", msg)
        if goal.cell and goal.outcome is None and goal.transcript is None:
            bad(line, f"goals[{i}]", "a cell goal needs an outcome or a transcript")
        if goal.transcript:
            try:
                re.compile(goal.transcript)
            except re.error as exc:
                bad(line, f"goals[{i}].transcript", f"not a regular expression: {exc}")
        if goal.answer:
            if "answers" not in kinds:
                bad(line, f"goals[{i}].answer", "no answers file is editable")
            if (goal.equals is None) == (goal.from_cell is None):
                bad(line, f"goals[{i}]", "an answer goal needs exactly one of equals or from_cell")
        if goal.three_way:
            if "three_way" not in raw:
                bad(line, f"goals[{i}].three_way", "a three-way goal needs the exercise's three_way: servers")
            if goal.outcome is None:
                bad(line, f"goals[{i}]", "a three-way goal needs an outcome")
            security, _, rest = goal.three_way.partition("/")
            if security not in SECURITY_MODES or rest.split("+")[0] not in ("pasv", "epsv"):
                bad(line, f"goals[{i}].three_way", f"{goal.three_way!r}: expected <security>/<pasv|epsv>+passive-...")
        if goal.device and nodes and goal.device not in nodes:
            bad(line, f"goals[{i}].device", f"{goal.device!r} is no node of the picture")
        goals.append(goal)
    three_way = {side: dict(v) for side, v in (raw.get("three_way") or {}).items()}
    for side, v in three_way.items():
        if nodes and v["node"] not in nodes:
            bad(raw["three_way"].line_of(side), f"three_way.{side}.node", f"{v['node']!r} is no node of the picture")
    if problems:
        raise InputError(problems)
    return Exercise(id=raw["id"], title=raw["title"], task=raw["task"], picture=raw["picture"],
                    picture_path=picture_path, picture_text=picture_text, folder=folder, source=source,
                    editable=tuple(editable), constraints=tuple(constraints), goals=tuple(goals),
                    hints=tuple(raw["hints"]), start_dir=start_dir, solution_dir=solution_dir,
                    slide=raw.get("slide", ""), order=raw.get("order", 0), params=params, alternatives=alternatives,
                    variant=index, three_way=three_way)


def cell_problem(text: str, method_editable: bool) -> str | None:
    """Why a goal's cell is malformed (`<security>/<data>[+variation]` or `method[+variation]`), or None."""
    base, *options = text.split("+")
    if any(not o for o in options):
        return f"{text!r}: an empty variation"
    if base == METHOD:
        return None if method_editable else f"{text!r}: no method file is editable"
    security, _, data = base.partition("/")
    if security not in SECURITY_MODES:
        return f"{text!r}: {security!r} is not a security mode ({', '.join(SECURITY_MODES)})"
    if data not in DATA_MODES:
        return f"{text!r}: {data!r} is not a data mode ({', '.join(DATA_MODES)})"
    return None


def _picture(raw: Mapping, folder: Path, params: dict, bad) -> tuple[Path, str]:
    """The picture's file and text: a file in the exercise folder (placeholders replaced), or a
    shipped picture by name."""
    name = raw["picture"]
    line = raw.line_of("picture")
    inside = folder / name
    if "/" not in name and inside.is_file():
        text = read_input(inside, "topology file", MAX_BYTES)
        text, problems = substitute(text, params, str(inside))
        for p in problems:
            bad(line, "picture", f"{p.file}:{p.line}: {p.message}")
        return inside, text
    shipped = TOPOLOGY_DIR / f"{name}.yaml"
    if re.fullmatch(r"[a-z0-9-]+", name) and shipped.is_file():
        return shipped, read_input(shipped, "topology file", MAX_BYTES)
    bad(line, "picture", f"{name!r} is neither a file in {folder.name}/ nor a shipped picture "
                         f"(`ftlab topo list`)")
    return inside, ""


def _node_names(text: str, file: str) -> set[str]:
    raw, problems = read_yaml(text, file)
    if problems or not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        return set()
    return {str(n) for n in raw["nodes"]}
