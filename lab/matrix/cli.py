"""`ftlab matrix`, `ftlab run`, `ftlab recommend`, `ftlab report merge`, `ftlab bench`.

    ftlab matrix                                  # the 160 cells of scenarios/default.yaml
    ftlab matrix --topologies server-nat --security tls tls-ccc --variants ignore-pasv-address
    ftlab matrix --baseline reports/20260101-000000   # exit 1 when any outcome changed
    ftlab matrix --topologies my-net.yaml --expect my-net.expect.yaml   # exit 1 when the design does not
    ftlab run server-nat/tls/pasv --verbose       # one cell, with its transcript and device events
    ftlab recommend static-filter-nat             # which method to use here, then checked for real
    ftlab report merge reports/shard1 reports/shard2 --out reports/all
    ftlab bench client-nat                        # throughput side by side on one picture

Exit codes of matrix/run/recommend: 0 everything as predicted - outcome, stage and deciding device
(or, with --baseline / --expect, as in the baseline and as the expectations file states); 1 some
cell differs; 2 bad usage or input; 3 the lab itself failed somewhere; 130 Ctrl-C (the report of
the cells that ran is written, the others marked not run).

Report folders: --out DIR, else ./reports/<run-id>/ in the current directory. A run holds its folder
alone (a lock file in it): a second run with the same --out is refused, naming the first.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import sys
import time
from pathlib import Path

from lab.errors import InputError, LabError, Problem
from lab.ftps.modes import KERBEROS_MODES
from lab.matrix import expect, scenario, targets
from lab.matrix.recommend import recommend
from lab.report import merge as merge_mod
from lab.report import results, write_all
from lab.report.claims import check
from lab.report.works import works_here


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matrix", help="run the decision matrix and write a report",
                       description="Run every FTP method on every picture and compare with the slides.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[-1])
    p.add_argument("--scenarios", default="default", metavar="NAME|FILE", help="scenario file (default: default)")
    p.add_argument("--topologies", nargs="+", metavar="NAME", help="only these pictures")
    p.add_argument("--security", nargs="+", choices=scenario.SECURITY_MODES, help="only these security modes")
    p.add_argument("--data", nargs="+", choices=scenario.DATA_MODES, help="only these data modes")
    p.add_argument("--variants", nargs="+", metavar="NAME",
                   help="add variation cells (names from the scenario file, `a+b` combinations, or `all`)")
    p.add_argument("--only-variants", action="store_true", help="run the variation cells without the base matrix")
    p.add_argument("--client", metavar="NAME", help="client for every cell: builtin, curl, lftp")
    p.add_argument("--server", metavar="NAME", help="server for every cell: builtin, vsftpd, proftpd")
    p.add_argument("--size", default=None, help="bytes per transfer (default from the scenario file: 2MiB)")
    p.add_argument("--jobs", type=int, default=2, help="networks run at once (default 2)")
    p.add_argument("--timeout", type=float, default=None, help="hard limit per cell in seconds (default 20)")
    p.add_argument("--out", type=Path, help="report folder (default ./reports/<run-id>)")
    p.add_argument("--list-variants", action="store_true",
                   help="list the scenario file's variations (what each changes, where it is run) and exit")
    p.add_argument("--baseline", type=Path, metavar="FILE|DIR", help="compare outcomes with an earlier run")
    p.add_argument("--expect", type=Path, metavar="FILE",
                   help="what the design must do (`tls/epsv: pass`, `plain/*: fail`; scenarios/README.md): "
                        "exit 1 when a cell does otherwise")
    p.add_argument("--allow-unknown", action="store_true",
                   help="exit 0 even when the lab's model could not predict some cells (default: exit 1, "
                        "naming them: \"cannot predict: FILE:LINE uses X\")")
    p.add_argument("--pcap", nargs="?", const="cells", choices=("cells", "all"), default=False,
                   help="capture packets on every device interface: `--pcap` (= cells) the verdict cells, "
                        "whole packets; `--pcap all` the throughput phase too, in its own files, headers "
                        "only (128 bytes a packet, at most 200000 packets per interface)")
    p.add_argument("--throughput", choices=("off", "quick", "full"), default="quick",
                   help="after the verdicts, measure each data-path class beside iperf3, one network at a "
                        "time, within time budgets (quick: 7 x 0.25 s per class, full: 5 x 2 s; default quick)")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N (CI); merge with `ftlab report merge`")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_matrix)

    r = sub.add_parser("run", help="run one cell and show its transcript and device events")
    r.add_argument("id", help="<topology>/<security>/<data>[+variation...], e.g. server-nat/tls/pasv")
    r.add_argument("--scenarios", default="default", metavar="NAME|FILE", help="scenario file (default: default)")
    r.add_argument("--size", default=None, help="bytes to transfer (default from the scenario file)")
    r.add_argument("--verbose", "-v", action="store_true", help="also the server log and every device event")
    r.add_argument("--pcap", action="store_true", help="capture packets on every device interface")
    r.add_argument("--out", type=Path, help="report folder (default ./reports/run-<run-id>)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("recommend", help="the slides' four steps for a picture, then checked for real")
    c.add_argument("topology", metavar="NAME|FILE", help="a shipped picture or a topology file")
    c.add_argument("--scenarios", default="default", metavar="NAME|FILE", help="scenario file (default: default)")
    c.add_argument("--no-run", action="store_true", help="only print the recommendation")
    c.add_argument("--json", action="store_true",
                   help="the recommendation (and, after the run, what the run changed) as one JSON object on stdout")
    c.add_argument("--out", type=Path, help="report folder for the check (default ./reports/recommend-<run-id>)")
    c.set_defaults(func=cmd_recommend)

    rep = sub.add_parser("report", help="report folders: merge shards")
    rsub = rep.add_subparsers(dest="report_op", metavar="merge", required=True)
    m = rsub.add_parser("merge", help="merge results.json of several runs (CI shards) into one report")
    m.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="report folders (each with results.json)")
    m.add_argument("--out", type=Path, help="report folder (default ./reports/merged-<time>)")
    m.add_argument("--allow-partial", action="store_true",
                   help="merge an incomplete or doubled shard set anyway; the report is marked partial")
    m.set_defaults(func=cmd_report_merge)

    b = sub.add_parser("bench", help="throughput on a network's data path: ftlab plain/PROT P, curl+vsftpd, iperf3")
    b.add_argument("topology", nargs="?", default="client-nat", metavar="NAME|FILE",
                   help="network whose client->server path is measured, any topology file (default client-nat)")
    b.add_argument("--size", default="256MiB", help="bytes per transfer (default 256MiB)")
    b.add_argument("--runs", type=int, default=7, help="runs of each measurement, interleaved; the median counts (default 7)")
    b.add_argument("--out", type=Path, help="folder for bench.json (default ./reports/bench-<time>)")
    b.set_defaults(func=cmd_bench)

    from lab.matrix import selftest  # `ftlab selftest`: the model against the runtime on generated designs
    selftest.register(sub)


# -- helpers ------------------------------------------------------------------------------------------

def _out_dir(out: Path | None, prefix: str = "") -> Path:
    """--out as given, else a new folder in ./reports/ of the current directory named after the time;
    two runs started in the same second each get their own (the folder is claimed by creating it:
    -2, -3, ...). Either way the folder is this process's alone until it exits (_claim)."""
    if out is not None:
        _check_out(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _out_problem(out, exc) from None
        _claim(out)
        return out
    reports = Path.cwd() / "reports"
    base = reports / (prefix + results.new_run_id())
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot make the report folder {reports} ({exc.strerror}): give --out DIR") from None
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        _claim(candidate)
        return candidate
    raise LabError(f"no free report folder named {base.name}-N in {reports}")


def _check_out(out: Path | None) -> None:
    """--out names a folder, or nothing yet: one line, exit 2, before anything runs."""
    if out is None:
        return
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise InputError([Problem(f"--out {out}", 0, "", "not a directory" if p == out else
                                          f"{p} is not a directory")])
            return


def _out_problem(out: Path, exc: OSError) -> InputError:
    why = "not a directory" if isinstance(exc, FileExistsError | NotADirectoryError) else exc.strerror or str(exc)
    return InputError([Problem(f"--out {out}", 0, "", why)])


LOCK_FILE = ".ftlab.lock"
_held: dict[Path, int] = {}       # report folder -> the open lock file this process holds


def _claim(out: Path) -> None:
    """An exclusive lock (flock) on `out`'s lock file, held while this process lives (the open file
    is not inherited by the programs the run starts); the file says who holds it. A folder another
    live run holds is an InputError naming that run."""
    key = out.resolve()
    if key in _held:
        return
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise _out_problem(out, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise InputError([Problem(f"--out {out}", 0, "", f"in use by another run ({holder}); wait for it to "
                                                           "end or give another --out")]) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "started": results.now_iso(),
                             "command": shlex.join(["ftlab", *sys.argv[1:]])}).encode() + b"\n")
    _held[key] = fd


def _holder(fd: int) -> str:
    """`pid 123, started 2026-12-07T23:40:01+00:00: ftlab matrix ...`, from the lock file."""
    for _ in range(20):            # the holder writes who it is just after it took the lock
        try:
            who = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            who = None
        if isinstance(who, dict):
            return f"pid {who.get('pid')}, started {who.get('started')}: {str(who.get('command'))[:120]}"
        time.sleep(0.01)
    return "a run that does not say which"


def _release(out: Path) -> None:
    """Give a folder's lock up before this process ends (tests, a command that runs twice)."""
    fd = _held.pop(out.resolve(), None)
    if fd is not None:
        os.close(fd)


def _load_baseline(path: Path | None) -> dict | None:
    return results.load(path) if path is not None else None


def _select(args: argparse.Namespace, scen: scenario.Scenarios) -> tuple[list[scenario.Cell], dict[str, str]]:
    """The cells the arguments ask for, and {topology name: what a worker loads}. --topologies takes
    shipped names and users' files alike (lab.matrix.targets)."""
    chosen = [_target(t, "--topologies") for t in args.topologies or []]
    paths = targets.sources(chosen)
    for t in chosen:
        targets.deep_check(t)
    names = [t.name for t in chosen] or None
    users = [t.name for t in chosen if not t.shipped]
    cells: list[scenario.Cell] = []
    if not args.only_variants:
        cells = scen.default_cells(names, args.security, args.data)
    if args.variants:
        cells += _variant_cells(args, scen, names, users)
    if args.client or args.server:
        cells = scen.with_endpoints(cells, args.client, args.server)
    seen: set[str] = set()
    unique = []
    for c in cells:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    for name in {c.topology for c in unique} - set(paths):
        paths[name] = name
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        print(line, file=sys.stderr)
    kept = targets.with_overrides(unique, scen, paths, say=say)
    if args.variants and not kept and unique:
        # every cell asked for was a variation that changes nothing there: say why in the refusal
        why = "; ".join(line.removeprefix("ftlab: ") for line in said if "changes nothing" in line)
        raise InputError([Problem(f"--variants {' '.join(args.variants)}", 0, "",
                                  f"no cell to run: {why or 'the variations change nothing on the cells asked for'}")])
    return kept, paths


def _target(text: str, where: str) -> targets.Target:
    """targets.target, with the argument named in a problem that does not name it (a missing file)."""
    try:
        return targets.target(text, where)
    except InputError as exc:
        if all(p.file != where or text in p.message for p in exc.problems):
            raise
        raise InputError([Problem(f"{where} {text}" if p.file == where and text not in p.message else p.file,
                                  p.line, p.field, p.message) for p in exc.problems]) from None


def _variant_cells(args: argparse.Namespace, scen: scenario.Scenarios, names: list[str] | None,
                   users: list[str]) -> list[scenario.Cell]:
    """The variation cells asked for. Where the scenario file lists a variation, its listed cells;
    on a shipped picture named in --topologies that the file does not list for it (or whose listed
    cells the filters leave out), the variation on the cells asked for there: the engineer named
    both, so both are run - and told that the file does not list it there."""
    cells = scen.variant_cells(args.variants, names, args.security, args.data, users=users)
    if not names or "all" in args.variants:
        return cells
    listed = {vc["variant"] for vc in scen.variation_cells}
    for name in dict.fromkeys(n for n in args.variants if n in listed):
        options = tuple(name.split("+"))
        for t in names:
            if t in users or any(c.topology == t and c.options == options for c in cells):
                continue
            extra = [scenario.Cell(t, c.security, c.data, options)
                     for c in scen.default_cells([t], args.security, args.data)]
            extra = [c for c in extra if scen.supported(c)]
            if extra:
                where = next(vc for vc in scen.variation_cells if vc["variant"] == name)
                print(f"ftlab: +{name}: {Path(scen.source or 'the scenario file').name} lists it for "
                      f"{', '.join(where['topologies'])} ({'/'.join(where['security'])} x {'/'.join(where['data'])}); "
                      f"on {t} it runs on the {len(extra)} cell(s) asked for", file=sys.stderr)
                cells += extra
    return cells


def _list_variants(scen: scenario.Scenarios) -> None:
    """`ftlab matrix --list-variants`: each variation, what it changes, and where the file runs it."""
    where = {vc["variant"]: vc for vc in scen.variation_cells}
    width = max(map(len, [*scen.variations, *where]), default=10)

    def cells(vc: dict) -> str:
        return f"{', '.join(vc['topologies'])} x {'/'.join(vc['security'])} x {'/'.join(vc['data'])}"
    print(f"variations of {scen.source} (--variants NAME ...; a+b combines them; all = every listed one):")
    for name, v in scen.variations.items():
        print(f"{name:{width}}  {v.what}")
        print(f"{'':{width}}  " + (f"runs on {cells(where[name])}; on another picture named in --topologies, "
                                   "on the cells asked for" if name in where else
                                   "listed nowhere: runs on the cells asked for"))
    for name in (n for n in where if n not in scen.variations):
        print(f"{name:{width}}  (a combination) runs on {cells(where[name])}")


def _summary(doc: dict, baseline: dict | None, out: Path) -> None:
    n = results.counts(doc)
    not_run = [s for s in doc["scenarios"] if s.get("not_run")]
    errors = sum(s["outcome"] == "error" and not s.get("not_run") for s in doc["scenarios"])
    print(f"{n['cells']} cells in {doc.get('duration_s', 0):.0f} s: {n['pass']} pass, {n['fail']} fail, "
          f"{errors} lab errors" + (f", {len(not_run)} not run (interrupted)" if not_run else "")
          + f"; {n['matches']} of {n['cells']} match {results.prediction_source(doc)}")
    for name in dict.fromkeys(s["topology"] for s in doc["scenarios"]):
        ran = [s for s in doc["scenarios"] if s["topology"] == name and not s.get("not_run")]
        skipped = sum(s["topology"] == name for s in not_run)
        works = works_here(ran).lines() if ran else []
        print(f"  {name}: " + "; ".join(works + ([f"{skipped} not run"] if skipped else [])))
    for s in doc["scenarios"]:
        if s.get("not_run"):
            continue
        if s["outcome"] == "error":
            print(f"  ERROR   {s['id']}: {s['reason']}")
        elif s.get("expected") == "unknown":
            print(f"  UNPREDICTED {s['id']}: observed {s['outcome']}; {s.get('expected_reason')}")
        elif not s["matches"]:
            print(f"  DIFFERS {s['id']}: predicted {_decided(s['expected'], s.get('expected_stage'), s.get('expected_device'))}, "
                  f"observed {_decided(s['outcome'], s['stage'], s.get('device'))}: {s['reason']}")
    for err in doc.get("lab_errors") or []:
        print(f"  LAB     {err}")
    skipped = {s["id"] for s in not_run}
    for claim, holds, ids in check(results.shipped_only(doc)):
        if holds is None and ids and set(ids) <= skipped:
            print(f"  UNKNOWN {claim.text} (not run: {', '.join(ids)})")
        elif holds is None and ids:
            print(f"  UNKNOWN {claim.text} (lab errors in {', '.join(ids)})")
        elif holds is not None:
            print(f"  {'holds  ' if holds else 'FAILS  '} {claim.text}" + (f" ({', '.join(ids)})" if ids else ""))
    if baseline is not None:
        changes = results.baseline_changes(doc, baseline)
        print(f"{len(changes)} cells changed since baseline {baseline['run_id']}")
        for ch in changes:
            print(f"  CHANGED {ch}")
    if doc.get("expect_file"):
        stated = [s for s in doc["scenarios"] if s.get("expect")]
        unmet = expect.unmet(doc)
        print(f"{len(stated) - len(unmet)} of {len(stated)} cells do what {doc['expect_file']} states")
        for s in unmet:
            e = s["expect"]
            print(f"  UNMET   {s['id']}: {doc['expect_file']}:{e['line']} ({e['pattern']}) says {e['outcome']}, "
                  f"observed {_decided(s['outcome'], s['stage'], s.get('device'))}: {s['reason']}")
    print(f"report: {out}/index.html")


def _decided(outcome: str, stage: str | None, device: str | None) -> str:
    """`fail at data-connect by fw`."""
    return outcome + (f" at {stage}" if stage else "") + (f" by {device}" if device else "")


def _scenarios(name: str) -> scenario.Scenarios:
    return scenario.load(name)


# -- commands -----------------------------------------------------------------------------------------

def cmd_matrix(args: argparse.Namespace) -> int:
    from lab.matrix import fxprun
    from lab.matrix.runner import DEFAULT_SIZE, parse_size, run_matrix

    _check_out(args.out)
    if fxprun.is_fxp(args.scenarios):         # three-way transfers: a file of another kind
        return fxprun.main(args, lambda: _out_dir(args.out, "fxp-"))
    scen = _scenarios(args.scenarios)
    if args.list_variants:
        _list_variants(scen)
        return 0
    cells, paths = _select(args, scen)
    shard = None
    if args.shard:
        k, n = merge_mod.parse_shard(args.shard)
        cells = merge_mod.shard(cells, k, n, group=lambda c: (c.topology, scen.spec(c).alg))
        shard = args.shard
    if args.jobs < 1:
        raise InputError([Problem("--jobs", 0, "", "must be at least 1")])
    baseline = _load_baseline(args.baseline)
    expected = expect.load(args.expect) if args.expect is not None else None
    size = parse_size(args.size or scen.defaults.get("size") or DEFAULT_SIZE)
    timeout = args.timeout or float(scen.defaults.get("timeout_s", 20))
    if expected is not None:
        for c in cells:                  # two patterns that disagree on a cell: said before the run
            expected.stated(c.id)
    out = _out_dir(args.out)
    doc = run_matrix(cells, scen, out, size=size, jobs=args.jobs, pcap=args.pcap, timeout=timeout,
                     baseline=baseline, progress=not args.quiet, command=shlex.join(["ftlab", *sys.argv[1:]]),
                     shard=shard, topology_paths=paths, throughput=args.throughput, expect=expected,
                     run_id=_run_id(args.out, out))
    _summary(doc, baseline, out)
    code = _interrupted(doc, out) or results.exit_code(doc, baseline)
    unknown = [s for s in doc["scenarios"] if s.get("expected") == "unknown" and not results.is_not_run(s)]
    if code == 0 and unknown and not args.allow_unknown:
        print(f"{len(unknown)} cell(s) the lab's model could not predict, e.g. {unknown[0]['id']}: "
              f"{unknown[0].get('expected_reason')}; --allow-unknown accepts that", file=sys.stderr)
        return 1
    return code


def _run_id(given: Path | None, out: Path) -> str | None:
    """A folder the run named after itself (reports/<run-id>) carries its id; --out DIR does not
    (None: the runner's own id, from its start time)."""
    return out.name if given is None else None


def _interrupted(doc: dict, out: Path) -> int:
    """130 after Ctrl-C (the report of what ran is written), said in one line; 0 otherwise."""
    stop = doc.get("interrupted")
    if not stop:
        return 0
    print(f"ftlab: interrupted after {stop['after_s']} s ({stop['phase']}): {stop['cells_run']} cells ran, "
          f"{stop['cells_not_run']} not run; report: {out}/index.html", file=sys.stderr)
    return 130


def cmd_run(args: argparse.Namespace) -> int:
    from lab.matrix.runner import DEFAULT_SIZE, parse_size, run_matrix

    _check_out(args.out)
    scen = _scenarios(args.scenarios)
    given = scenario.parse_cell_id(args.id)
    where = _target(given.topology, "ID")      # a shipped name or any topology file
    targets.deep_check(where)
    cell = scenario.Cell(where.name, given.security, given.data, given.options)
    if cell.options:
        scen.spec(cell)   # unknown variations: InputError
    if not scen.supported(cell):
        raise InputError([Problem("ID", 0, "", f"{cell.id}: the client or server does not support this cell")])
    paths = targets.sources([where])
    if not targets.with_overrides([cell], scen, paths):
        raise InputError([Problem("ID", 0, "variation", f"{cell.id}: the variation changes nothing on {cell.topology}")])
    size = parse_size(args.size or scen.defaults.get("size") or DEFAULT_SIZE)
    out = _out_dir(args.out, "run-")
    doc = run_matrix([cell], scen, out, size=size, jobs=1, pcap=args.pcap, progress=False,
                     command=shlex.join(["ftlab", *sys.argv[1:]]), topology_paths=paths,
                     run_id=_run_id(args.out, out))
    if doc.get("interrupted"):
        return _interrupted(doc, out)
    s = doc["scenarios"][0]
    print(f"{s['id']}  (client {s['client']}, server {s['server']}, alg {s.get('alg') or 'as the picture says'})")
    lines = s.get("transcript") or []
    for side in ("client", "server"):
        print(f"\n-- control channel, as the {side} saw it " + "-" * (40 - len(side)))
        shown = [x[len(side) + 1:] for x in lines if x.startswith(side + " ")]
        for line in shown if args.verbose or side == "client" else shown[-40:]:
            print("  " + line)
        if not shown:
            print("  (nothing recorded)")
    print("\n-- what the devices saw " + "-" * 56)
    for item in s.get("firewall_saw") or []:
        print(f"  {item['device']:10} {item['kind']:10} {item['text']}")
    if not s.get("firewall_saw"):
        print("  (no device on the path inspected the control channel)")
    for item in s.get("wire") or []:
        print(f"  {item['device']:22} {item['kind']:10} {item['text']}")
    if args.verbose:
        print("\n-- device events " + "-" * 62)
        for e in s.get("events") or []:
            print("  " + json.dumps(e, default=str))
    print("\n-- verdict " + "-" * 68)
    print(f"  observed:  {_decided(s['outcome'], s.get('stage'), s.get('device'))}: {s['reason']}")
    print(f"  predicted: {_decided(s['expected'], s.get('expected_stage'), s.get('expected_device'))}: "
          f"{s.get('expected_reason')}")
    if s.get("throughput_mbps"):
        print(f"  {s['bytes']} bytes, {s['throughput_mbps']} MB/s; iperf3 baseline {s['baseline_mbps']} MB/s "
              f"(ratio {s['ratio']})")
    print(f"  {'as predicted' if s['matches'] else 'DIFFERS from the prediction'}; report: {out}/index.html")
    return results.exit_code(doc)


def cmd_recommend(args: argparse.Namespace) -> int:
    """The recommendation, then (unless --no-run) the network's cells run and the answer given again.
    Exit 0 when the run confirms the prediction (same method, every cell as predicted), 1 when it
    does not, 3 a lab error, 130 Ctrl-C. --json: one JSON object on stdout, nothing else there."""
    from lab.matrix import runner

    _check_out(args.out)
    scen = _scenarios(args.scenarios)
    where = _target(args.topology, "TOPOLOGY")
    model = where.model
    before = recommend(model, scen)
    say = (lambda *a, **k: None) if args.json else print
    devices = [f"{n.name} ({'+'.join(n.device_kinds())})" for n in model.devices_on_path()]
    say(f"{model.name}: {model.description}")
    say(f"devices on the path: {', '.join(devices) or 'none'}")
    _print_recommendation(before, say)
    found = {"topology": model.name, "description": model.description, "devices_on_path": devices,
             "recommended": before.to_dict(), "text": before.text(), "after_run": None}
    if args.no_run:
        if args.json:
            print(json.dumps(found, indent=1))
        return 0
    cells = [scenario.Cell(model.name, *m.split("/")) for m in
             (f"{s}/{d}" for s in scenario.SECURITY_MODES if s not in KERBEROS_MODES for d in scenario.DATA_MODES)]
    cells = [c for c in cells if scen.supported(c)]
    out = _out_dir(args.out, "recommend-")
    paths = {} if where.shipped else {model.name: where.source}
    doc = runner.run_matrix(cells, scen, out, jobs=1, command=shlex.join(["ftlab", *sys.argv[1:]]),
                            topology_paths=paths, throughput="off", progress=not args.json,
                            run_id=_run_id(args.out, out))
    if doc.get("interrupted"):
        return _interrupted(doc, out)
    after = recommend(model, scen, {f"{s['security']}/{s['data']}": s["outcome"] for s in doc["scenarios"]
                                    if s["outcome"] in ("pass", "fail")})
    say("\nafter the run (the same recommendation as results.json and the report):")
    _print_recommendation(after, say)
    passing = [f"{s['security']}/{s['data']}" for s in doc["scenarios"] if s["outcome"] == "pass"]
    say(f"methods that passed for real: {', '.join(passing) or 'none'}")
    agree = after.method == before.method
    differ = [s for s in doc["scenarios"] if not s["matches"] and s["outcome"] != "error"
              and s.get("expected") != "unknown"]
    say("the run confirms the recommendation" if agree else
        f"the run changes the recommendation: {before.method or 'nothing'} -> {after.method or 'nothing'}")
    if differ:
        say(f"{len(differ)} cell(s) differ from the prediction the recommendation rests on:")
        for s in differ:
            say(f"  DIFFERS {s['id']}: predicted {_decided(s['expected'], s.get('expected_stage'), s.get('expected_device'))}, "
                f"observed {_decided(s['outcome'], s['stage'], s.get('device'))}: {s['reason']}")
    say(f"report: {out}/index.html")
    code = results.exit_code(doc)
    code = code if code == 3 else (0 if agree and not differ else 1)
    if args.json:
        found.update({"after_run": after.to_dict(), "after_text": after.text(), "passed": passing,
                      "confirms": agree, "differing_cells": [s["id"] for s in differ],
                      "report": f"{out}/index.html", "exit_code": code})
        print(json.dumps(found, indent=1))
    return code


def _print_recommendation(rec, say=print) -> None:
    say(f"recommended: {rec.method or 'no secure method gets through'}")
    say(f"why: {rec.why}")
    for side, st in rec.settings.items():
        say(f"  {side}: " + ", ".join(f"{k} {v}" for k, v in st.items()))
    if rec.predicted is not None:
        p = rec.predicted
        say(f"{'observed' if rec.observed else 'predicted'} for {rec.method}: {rec.observed or p.outcome}"
            + ("" if rec.observed else f" - {p.reason}"))
    say(f"other secure methods that pass: {', '.join(rec.alternatives) or 'none'}")


def cmd_report_merge(args: argparse.Namespace) -> int:
    _check_out(args.out)
    doc = merge_mod.merge_dirs(args.dirs, allow_partial=args.allow_partial)
    out = _out_dir(args.out, "merged-")
    write_all(doc, out)
    n = results.counts(doc)
    print(f"merged {len(args.dirs)} runs: {n['cells']} cells, {n['pass']} pass, {n['fail']} fail, "
          f"{n['error']} errors" + (f", {n['not_run']} not run" if n["not_run"] else "")
          + f", {n['matches']} as predicted; report: {out}/index.html")
    if (doc.get("partial") or {}).get("reason"):
        print(f"partial: {doc['partial']['reason']}")
    return results.exit_code(doc)


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.matrix.runner import parse_size
    from lab.network.sandbox import ensure_sandbox, in_sandbox

    _check_out(args.out)
    size = parse_size(args.size)
    if args.runs < 1:
        raise InputError([Problem("--runs", 0, "", "must be at least 1")])
    if not in_sandbox():      # bad input is said at once and once, before the command re-runs in its sandbox
        where = _target(args.topology, "TOPOLOGY")
        targets.deep_check(where)
        from lab.endpoints.bench import choose_ports

        choose_ports(where.model)         # a path the filters' models say blocks it: one line, no sandbox
    ensure_sandbox()
    from lab.endpoints.bench import bench_topology

    out = _out_dir(args.out, "bench-")
    result = bench_topology(args.topology, size, args.runs, out)
    print(result)
    return 0
