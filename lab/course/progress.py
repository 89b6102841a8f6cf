"""What a student's folder remembers: `.ftlab-course.json`.

    {"schema": "ftlab.course-state/1", "exercise": "static-rules", "seed": "alice", "variant": 2,
     "started": ISO, "hints_shown": 1, "checks": [{"at", "solved", "goals_met", "goals",
     "constraints_met", "constraints", "failed"}], "solved": false, "solved_at": null}

The file is small and ours; it is still read as input (a folder whose state file is not one is
"not an exercise folder", exit 2). Only the last MAX_CHECKS checks are kept.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.errors import InputError, Problem, read_input
from lab.report.results import now_iso

STATE_FILE = ".ftlab-course.json"
SCHEMA = "ftlab.course-state/1"
MAX_CHECKS = 50


@dataclass
class State:
    exercise: str
    seed: str | None = None
    variant: int = 0
    source: str | None = None            # an instructor's exercise folder (None: the shipped course)
    started: str = field(default_factory=now_iso)
    hints_shown: int = 0
    checks: list[dict] = field(default_factory=list)
    solved: bool = False
    solved_at: str | None = None

    def to_json(self) -> dict:
        return {"schema": SCHEMA, **asdict(self)}

    @property
    def exercise_ref(self) -> str:
        """What lab.course.exercise.load takes: the shipped id, or the folder."""
        return self.source or self.exercise

    def record(self, result) -> dict:
        n = result.counts()
        entry = {"at": now_iso(), "solved": result.solved, **n,
                 "failed": [f"{i.kind} {i.number}: {i.words}" for i in result.items if not i.ok][:20],
                 "problems": len(result.problems), "duration_s": result.duration_s}
        self.checks = [*self.checks, entry][-MAX_CHECKS:]
        if result.solved and not self.solved:
            self.solved, self.solved_at = True, entry["at"]
        return entry


def is_exercise_folder(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def load(folder: Path) -> State:
    """The state of a student's folder; InputError (exit 2) when the folder is not one."""
    path = folder / STATE_FILE
    if not folder.is_dir():
        raise InputError([Problem("DIR", 0, "", f"{folder}: no such folder")])
    if not path.is_file():
        raise InputError([Problem("DIR", 0, "", f"{folder} is not an exercise folder (no {STATE_FILE}); "
                                                f"start one with `ftlab course start ID {folder}`")])
    try:
        doc = json.loads(read_input(path, "course state file", 1 << 20))
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("exercise"), str):
        raise InputError([Problem(str(path), 1, "", "not a course state file (made by `ftlab course start`)")])
    known = {k: doc[k] for k in State.__dataclass_fields__ if k in doc}
    try:
        state = State(**known)
    except TypeError as exc:
        raise InputError([Problem(str(path), 1, "", f"not a course state file: {exc}")]) from None
    if not isinstance(state.hints_shown, int) or not isinstance(state.checks, list):
        raise InputError([Problem(str(path), 1, "", "not a course state file (bad hints_shown or checks)")])
    return state


def save(folder: Path, state: State) -> Path:
    """Write the state atomically (a check interrupted halfway leaves the old file)."""
    path = folder / STATE_FILE
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ftlab-course.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(state.to_json(), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return path
