"""The course: exercises that follow the slides, a checker that grades them with real cells.

    exercise.py   the exercise format (course/<id>/exercise.yaml, course/exercise.schema.json) and its loader
    workspace.py  a student's folder: the editable files, composed with the exercise's picture into a topology
    checker.py    grading: the constraints on the files, the goals on real cells (lab.matrix's engine)
    progress.py   what a student's folder remembers: the exercise, the seed, hints shown, checks done
    summary.py    a class summary (CSV, JUnit XML) from students' folders
    skeleton.py   `ftlab course new`: a skeleton exercise from a topology
    cli.py        `ftlab course ...`
"""

from lab import ROOT

#: The course shipped with the lab: one folder per exercise.
COURSE_DIR = ROOT / "course"
