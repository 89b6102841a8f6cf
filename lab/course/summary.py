"""A class summary from students' folders: one row per folder, as CSV and as JUnit XML.

    rows([Path("class/alice"), Path("class")])   # a folder of students' folders counts each of them

JUnit: one <testsuite> per exercise, one <testcase classname="course.<exercise>" name="<folder>"> per
student, a <failure> when not solved (with the last check's failed goals), so CI dashboards show a
class like a test run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.course import progress
from lab.errors import InputError, Problem

COLUMNS = ["folder", "exercise", "seed", "solved", "solved_at", "checks", "hints_shown", "goals_met", "goals",
           "constraints_met", "constraints", "last_check", "failed"]


def folders(given: list[Path]) -> list[Path]:
    """The exercise folders among `given`: each one itself, or the exercise folders inside it."""
    found: list[Path] = []
    for d in given:
        if progress.is_exercise_folder(d):
            found.append(d)
        elif d.is_dir():
            inside = sorted(p for p in d.iterdir() if p.is_dir() and progress.is_exercise_folder(p))
            if not inside:
                raise InputError([Problem("DIR", 0, "", f"{d}: neither an exercise folder nor a folder of them")])
            found += inside
        else:
            raise InputError([Problem("DIR", 0, "", f"{d}: no such folder")])
    return list(dict.fromkeys(found))


def rows(given: list[Path]) -> list[dict]:
    out = []
    for d in folders(given):
        st = progress.load(d)
        last = st.checks[-1] if st.checks else {}
        out.append({"folder": str(d), "exercise": st.exercise, "seed": st.seed or "", "solved": st.solved,
                    "solved_at": st.solved_at or "", "checks": len(st.checks), "hints_shown": st.hints_shown,
                    "goals_met": last.get("goals_met", ""), "goals": last.get("goals", ""),
                    "constraints_met": last.get("constraints_met", ""), "constraints": last.get("constraints", ""),
                    "last_check": last.get("at", ""), "failed": "; ".join(last.get("failed", []))})
    return out


def csv_text(table: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in table:
        w.writerow({k: ("yes" if v is True else "no" if v is False else v) for k, v in r.items()})
    return buf.getvalue()


def junit_text(table: list[dict]) -> str:
    root = ET.Element("testsuites", name="ftlab course", tests=str(len(table)),
                      failures=str(sum(not r["solved"] for r in table)))
    for ex in dict.fromkeys(r["exercise"] for r in table):
        mine = [r for r in table if r["exercise"] == ex]
        suite = ET.SubElement(root, "testsuite", name=f"course.{ex}", tests=str(len(mine)),
                              failures=str(sum(not r["solved"] for r in mine)))
        for r in mine:
            case = ET.SubElement(suite, "testcase", classname=f"course.{ex}", name=Path(r["folder"]).name)
            ET.SubElement(case, "properties")
            for key in ("checks", "hints_shown", "seed"):
                ET.SubElement(case.find("properties"), "property", name=key, value=str(r[key]))
            if not r["solved"]:
                what = "never checked" if not r["checks"] else \
                    f"{r['goals_met']}/{r['goals']} goals, {r['constraints_met']}/{r['constraints']} constraints"
                fail = ET.SubElement(case, "failure", message=f"not solved: {what}")
                fail.text = r["failed"]
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
