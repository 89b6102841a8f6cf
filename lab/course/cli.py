"""`ftlab course`: exercises that follow the slides, checked with real packets.

    ftlab course list [--ids]                  # the exercises, in the course's order
    ftlab course start ID DIR [--seed S]       # copy the exercise's files into DIR (a variant per seed)
    ftlab course check DIR [--report]          # run the cells on your files: exit 0 solved, 1 not yet
    ftlab course hint DIR                      # the next hint
    ftlab course status DIR                    # the task, your progress
    ftlab course reset DIR                     # the starting files back, progress cleared (the seed stays)
    ftlab course shell DIR                     # your network up with its FTP server; `events` says what devices saw
    ftlab course check --reference ID [--seed S]   # grade the shipped solution
    ftlab course new TOPOLOGY DIR              # instructors: a skeleton exercise from a topology
    ftlab course summary DIR... [--csv F] [--junit F]   # a class's progress from students' folders

Exit codes: 0 solved (or done), 1 not solved, 2 bad usage or input (not an exercise folder, an
unknown ID), 3 the lab itself failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

from lab.course import exercise, progress
from lab.errors import InputError, Problem


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("course", help="the course: exercises on the slides' pictures, checked with real cells",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    cs = p.add_subparsers(dest="course_op", metavar="list|start|check|hint|status|reset|shell|new|summary", required=True)

    x = cs.add_parser("list", help="the exercises")
    x.add_argument("--ids", action="store_true", help="only the ids, one a line")
    x.set_defaults(func=cmd_list)

    x = cs.add_parser("start", help="copy an exercise's files into DIR")
    x.add_argument("id", metavar="ID", help="an exercise id (`ftlab course list --ids`) or an exercise folder")
    x.add_argument("dir", metavar="DIR", type=Path, help="your folder for it (new or empty)")
    x.add_argument("--seed", help="a student's variant: the same seed gives the same variant")
    x.set_defaults(func=cmd_start)

    x = cs.add_parser("check", help="run real cells on your files and grade every goal and constraint")
    x.add_argument("dir", metavar="DIR", type=Path, nargs="?", help="your exercise folder")
    x.add_argument("--reference", metavar="ID", help="grade the exercise's shipped solution instead")
    x.add_argument("--seed", help="with --reference: the variant of this seed")
    x.add_argument("--report", action="store_true", help="also write the run's index.html (slower)")
    x.add_argument("--watch", action="store_true", help="a live page on 127.0.0.1 while the cells run: the picture "
                                                       "and each device's events as they happen")
    x.set_defaults(func=cmd_check)

    for name, func, what in (("hint", cmd_hint, "the next hint"), ("status", cmd_status, "the task and your progress"),
                             ("reset", cmd_reset, "put the starting files back and clear the progress")):
        x = cs.add_parser(name, help=what)
        x.add_argument("dir", metavar="DIR", type=Path, help="your exercise folder")
        x.set_defaults(func=func)

    x = cs.add_parser("shell", help="your network up, its FTP server running, a CLI where `client ftlab client ...` "
                                    "works and `events` says what each device saw")
    x.add_argument("dir", metavar="DIR", type=Path, help="your exercise folder")
    x.add_argument("--watch", action="store_true", help="also a live page on 127.0.0.1: the picture and each device's "
                                                       "events as they happen")
    x.add_argument("--port", type=int, default=0, help="the live page's port (default: a free one)")
    x.set_defaults(func=cmd_shell)

    x = cs.add_parser("new", help="instructors: a skeleton exercise from a topology")
    x.add_argument("topology", metavar="TOPOLOGY", help="a shipped picture's name or a topology file")
    x.add_argument("dir", metavar="DIR", type=Path, help="the new exercise's folder (its name is the id)")
    x.set_defaults(func=cmd_new)

    x = cs.add_parser("summary", help="instructors: a class's progress as CSV and JUnit XML")
    x.add_argument("dirs", metavar="DIR", type=Path, nargs="+", help="students' folders (or folders of them)")
    x.add_argument("--csv", type=Path, metavar="FILE", help="write the CSV here (default: print it)")
    x.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    x.set_defaults(func=cmd_summary)


# -- commands -----------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    names = exercise.ids()
    if args.ids:
        print("\n".join(names))
        return 0
    for n, name in enumerate(names, 1):
        try:
            ex = exercise.load(name)
            print(f"{n:2}. {name:22} {ex.title}")
        except InputError as exc:
            print(f"{n:2}. {name:22} (broken: {exc.problems[0] if exc.problems else exc})")
    print(f"\nstart one: ftlab course start ID DIR    (e.g. ftlab course start {names[0] if names else 'ID'} ~/ex1)")
    return 0


def cmd_start(args) -> int:
    ex = exercise.load(args.id, seed=args.seed)
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        raise InputError([Problem("DIR", 0, "", f"{folder} exists and is not a folder")])
    if progress.is_exercise_folder(folder):
        raise InputError([Problem("DIR", 0, "", f"{folder} is already an exercise folder "
                                                f"({progress.load(folder).exercise}); `ftlab course reset {folder}` "
                                                f"starts it again")])
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError([Problem("DIR", 0, "", f"{folder} is not empty; give a new folder")])
    folder.mkdir(parents=True, exist_ok=True)
    write_files(folder, ex.files("start"))
    network = _network(ex, folder)
    shipped = ex.folder == (exercise.COURSE_DIR / ex.id).resolve()
    state = progress.State(exercise=ex.id, seed=args.seed, variant=ex.variant,
                           source=None if shipped else str(ex.folder))
    progress.save(folder, state)
    print(f"{ex.id}: {ex.title}" + (f"  (variant {state.variant + 1} of {ex.alternatives}, seed {args.seed})"
                                    if args.seed is not None and ex.alternatives > 1 else ""))
    print(_task(ex))
    print(_files(ex, folder))
    if network is not None:
        print(f"the network with your files (made again by every check): {network}\n"
              f"  try a cell yourself: ftlab run {network}/tls/pasv --verbose")
    print(f"\nthen: ftlab course check {folder}     (a hint: ftlab course hint {folder})")
    return 0


def cmd_check(args) -> int:
    from lab.course import checker

    if args.reference:
        if args.dir is not None:
            raise InputError([Problem("DIR", 0, "", "give either DIR or --reference ID, not both")])
        ex = exercise.load(args.reference, seed=args.seed)
        with tempfile.TemporaryDirectory(prefix=f"ftlab-course-{ex.id}-") as tmp:
            folder = Path(tmp)
            write_files(folder, ex.files("solution"))
            print(f"{ex.id}: {ex.title} - the reference solution")
            result = checker.check(ex, folder, report=False)
            print("\n".join(result.lines()))
        return _code(result)
    if args.dir is None:
        raise InputError([Problem("DIR", 0, "", "give your exercise folder (or --reference ID)")])
    if args.seed is not None:
        raise InputError([Problem("--seed", 0, "", "only with --reference: your folder keeps its own seed")])
    folder = args.dir
    state = progress.load(folder)
    ex = exercise.load(state.exercise_ref, seed=state.seed)
    print(f"{ex.id}: {ex.title}")
    view = _watch(ex, folder) if args.watch else None
    try:
        result = checker.check(ex, folder, report=args.report)
    finally:
        if view is not None:
            view.stop()
    print("\n".join(result.lines()))
    state.record(result)
    if not result.solved and state.hints_shown < len(ex.hints):
        print(f"stuck? ftlab course hint {folder}   ({state.hints_shown} of {len(ex.hints)} hints shown)")
    if result.report is not None and args.report:
        print(f"report: {result.report}")
    progress.save(folder, state)
    return _code(result)


def _watch(ex, folder: Path):
    """The live view of a check's cells: the events files of the run's networks, as they appear."""
    from lab.course import workspace
    from lab.course.checker import RUN
    from lab.network.live import LiveView
    from lab.topology import loader

    network = _network(ex, folder)
    if network is None:
        return None
    run = folder.resolve() / workspace.WORK / RUN
    view = LiveView(loader.load(network), lambda: sorted(run.glob("work/**/events.jsonl")), title=f"{ex.id}: check")
    print(f"live view: {view.start()}  (while the check runs)", file=sys.stderr)
    return view


def _code(result) -> int:
    if result.lab_errors and not result.problems:
        return 3
    return 0 if result.solved else 1


def cmd_hint(args) -> int:
    state = progress.load(args.dir)
    ex = exercise.load(state.exercise_ref, seed=state.seed)
    if state.hints_shown >= len(ex.hints):
        print(f"no more hints: all {len(ex.hints)} shown. The last one again:")
        n = len(ex.hints)
    else:
        state.hints_shown += 1
        n = state.hints_shown
        progress.save(args.dir, state)
    print(f"hint {n} of {len(ex.hints)}:")
    print(textwrap.indent(textwrap.fill(ex.hints[n - 1].strip(), 96), "  "))
    return 0


def cmd_status(args) -> int:
    state = progress.load(args.dir)
    ex = exercise.load(state.exercise_ref, seed=state.seed)
    print(f"{ex.id}: {ex.title}" + (f"  (seed {state.seed})" if state.seed is not None else ""))
    print(_task(ex))
    start = ex.files("start")
    changed = [name for name, text in start.items()
               if not (args.dir / name).is_file() or (args.dir / name).read_text(errors="replace") != text]
    print(f"\nyour files: {', '.join(start)}; changed: {', '.join(changed) or 'none yet'}")
    print(f"hints shown: {state.hints_shown} of {len(ex.hints)}")
    last = state.checks[-1] if state.checks else None
    print(f"checks: {len(state.checks)}" + (f"; last {last['at']}: {'solved' if last['solved'] else 'not solved'}, "
                                            f"{last['goals_met']}/{last['goals']} goals, "
                                            f"{last['constraints_met']}/{last['constraints']} constraints" if last else ""))
    print(f"solved: {'yes, ' + state.solved_at if state.solved else 'not yet'}")
    return 0


def cmd_reset(args) -> int:
    from lab.course import checker

    state = progress.load(args.dir)
    ex = exercise.load(state.exercise_ref, seed=state.seed)
    write_files(args.dir, ex.files("start"))
    checker.clean(args.dir)
    _network(ex, args.dir)
    progress.save(args.dir, progress.State(exercise=state.exercise, seed=state.seed, variant=state.variant,
                                           source=state.source))
    print(f"{args.dir}: the starting files of {ex.id} are back; progress cleared")
    return 0


def cmd_shell(args) -> int:
    from lab.course import shell

    return shell.run(args.dir, watch=args.watch, port=args.port)


def cmd_new(args) -> int:
    from lab.course import skeleton

    path = skeleton.new(args.topology, args.dir)
    print(f"a skeleton exercise in {args.dir}: edit {path.name} (task, goals, hints), start/ and solution/,")
    print(f"then: ftlab course check --reference {args.dir}")
    return 0


def cmd_summary(args) -> int:
    from lab.course import summary

    rows = summary.rows(args.dirs)
    text = summary.csv_text(rows)
    if args.csv:
        args.csv.write_text(text)
    else:
        sys.stdout.write(text)
    if args.junit:
        args.junit.write_text(summary.junit_text(rows))
    solved = sum(r["solved"] for r in rows)
    print(f"{len(rows)} folder(s), {solved} solved", file=sys.stderr)
    return 0


# -- helpers ------------------------------------------------------------------------------------------

def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)


def _network(ex, folder: Path) -> Path | None:
    """The network of the files in `folder` (DIR/.course/network.yaml), for the student's own runs."""
    from lab.course import workspace

    try:
        return workspace.compose(ex, workspace.read(ex, folder), folder / workspace.WORK)
    except InputError:
        return None


def _task(ex) -> str:
    text = "\n\n".join(textwrap.fill(p, 96) if not p.startswith("  ") else p for p in ex.task.strip().split("\n\n"))
    picture = ex.picture if ex.picture_path.parent != ex.folder else f"{ex.picture} (in the exercise)"
    return f"picture: {picture}" + (f"; slide: {ex.slide}" if ex.slide else "") + "\n\n" + text


def _files(ex, folder: Path) -> str:
    lines = ["\nyou may edit:"]
    for e in ex.editable:
        lines.append(f"  {folder / e.file}  ({e.kind}{', ' + e.device if e.device else ''})"
                     + (f": {e.about}" if e.about else ""))
    if ex.constraints:
        from lab.course.checker import constraint_words

        lines.append("constraints:")
        lines += [f"  - {constraint_words(c)}" for c in ex.constraints]
    lines.append("goals:")
    lines += [f"  - {g.words()}" for g in ex.goals]
    return "\n".join(lines)
