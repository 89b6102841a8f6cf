"""`ftlab selftest`: the lab's model against its own runtime, on generated designs (issue 19, item 3).

    ftlab selftest --designs 20 --seed 1 --out reports/selftest   # 4 cells per design (a sample)
    ftlab selftest --designs 200 --seed 1 --cells all              # every security x data cell

Each design of `lab.matrix.designgen` is written to DIR/designs/, its cells are predicted and run
by the engine's own path (`lab.matrix.runner.run_matrix` on the written files, throughput off, a
small transfer), and the accuracy is printed: outcome, stage and deciding-device agreement, per
device kind/mode and overall. Each difference is shrunk to a minimal design that still shows it
(drop a device, a rule, a statement, the second address family, one at a time, while the cell still
differs) and written to DIR/minimal-K.yaml with the cell it names.

The cells of a design are a sample of security x data (the same sample for a seed every run);
`--cells all` runs them all. Exit 0 all agree, 1 some differ, 2 bad input, 3 a lab error.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.errors import InputError, LabError, Problem
from lab.matrix import designgen, scenario, targets

SECURITY = ("plain", "tls", "tls-ccc", "implicit", "implicit-zos")
DATA = ("pasv", "epsv", "port", "eprt")
DEFAULT_SIZE = 64 * 1024


# -- which cells ------------------------------------------------------------------------------------

def cells_for(spec: dict, count: int | None) -> list[tuple[str, str, tuple[str, ...]]]:
    """(security, data, options) of a design: `count` drawn from security x data (None: all), the
    same for a seed every time; on a dual-stack design one EPSV/EPRT cell is run over IPv6 too."""
    every = [(s, d) for s in SECURITY for d in DATA]
    r = random.Random(f"ftlab-selftest/{spec['seed']}/{spec['index']}")
    chosen = every if count is None or count >= len(every) else r.sample(every, count)
    out = [(s, d, ()) for s, d in chosen]
    if spec["dual_stack"] and "server_address6" in _ftp(spec):
        s, d = r.choice([c for c in every if c[1] in ("epsv", "eprt")])
        out.append((s, d, ("v6",)))
    return out


def _ftp(spec: dict) -> dict:
    import yaml
    text = designgen.render(spec)[f"{spec['name']}.yaml"]
    return yaml.safe_load(text)["ftp"]


# -- comparing --------------------------------------------------------------------------------------

def judge(s: dict) -> dict:
    """One cell of a results document: what was predicted, what was observed, which parts agree."""
    pred = (s.get("expected"), s.get("expected_stage"), s.get("expected_device"))
    obs = (s.get("outcome"), s.get("stage"), s.get("device"))
    outcome = pred[0] == obs[0]
    both_pass = outcome and obs[0] == "pass"
    return {"id": s["id"], "predicted": pred, "observed": obs, "error": obs[0] == "error",
            "unknown": pred[0] == "unknown", "outcome": outcome,
            "stage": both_pass or (pred[1] == obs[1]), "device": both_pass or (pred[2] == obs[2]),
            "agrees": bool(s.get("matches")), "reason": s.get("reason", "")}


def table(rows: list[tuple[list[str], dict]]) -> list[str]:
    """The accuracy table: rows (the design's device kinds/modes, judged cell)."""
    groups: dict[str, list[dict]] = {}
    for kinds, j in rows:
        for k in ["overall", *sorted(set(kinds))]:
            groups.setdefault(k, []).append(j)
    width = max([len(k) for k in groups] + [12])
    lines = [f"{'device kind/mode':{width}}  cells  outcome        stage          device         all agree  "
             "errors  unpredicted"]

    def pct(n: int, d: int) -> str:
        return f"{n:>4}/{d:<4} {100 * n / d:5.1f}%" if d else f"{'-':>15}"
    order = ["overall", *sorted(k for k in groups if k != "overall")]
    for k in order:
        js = [j for j in groups[k] if not j["error"] and not j["unknown"]]
        n = len(js)
        errors = sum(j["error"] for j in groups[k])
        lines.append(f"{k:{width}}  {len(groups[k]):5}  {pct(sum(j['outcome'] for j in js), n)}  "
                     f"{pct(sum(j['stage'] for j in js), n)}  {pct(sum(j['device'] for j in js), n)}  "
                     f"{pct(sum(j['agrees'] for j in js), n)}  {errors:6}  {len(groups[k]) - n - errors:11}")
    return lines


# -- shrinking --------------------------------------------------------------------------------------

def reductions(spec: dict) -> list[tuple[str, dict]]:
    """Each design one step smaller: (what was dropped, the smaller spec)."""
    out: list[tuple[str, dict]] = []
    devs = spec["devices"]
    for i in range(len(devs)):
        if len(devs) > 1:
            s = copy.deepcopy(spec)
            del s["devices"][i]
            if s["internet_at"] is not None:
                if s["internet_at"] > i:
                    s["internet_at"] -= 1
                if not any("nat" in d for d in s["devices"]):
                    s["internet_at"] = None
            out.append((f"device r{i + 1}", s))
        d = devs[i]
        if "nat" in d and "filter" in d:
            for part in ("nat", "filter"):
                s = copy.deepcopy(spec)
                del s["devices"][i][part]
                if part == "nat" and not any("nat" in x for x in s["devices"]):
                    s["internet_at"] = None
                out.append((f"r{i + 1}'s {part}", s))
        rules = (d.get("filter") or {}).get("rules") or []
        for k in range(len(rules)):
            s = copy.deepcopy(spec)
            del s["devices"][i]["filter"]["rules"][k]
            out.append((f"r{i + 1}'s rule {k + 1}", s))
        for key in ("idle_timeout", "helper", "log", "pinhole_lifetime"):
            if (d.get("filter") or {}).get(key):
                s = copy.deepcopy(spec)
                s["devices"][i]["filter"][key] = False if key in ("helper", "log") else None
                out.append((f"r{i + 1}'s filter {key}", s))
        if (d.get("nat") or {}).get("idle_timeout"):
            s = copy.deepcopy(spec)
            s["devices"][i]["nat"]["idle_timeout"] = None
            out.append((f"r{i + 1}'s nat idle_timeout", s))
    for end in ("server", "client"):
        for key in spec[end]:
            s = copy.deepcopy(spec)
            del s[end][key]
            out.append((f"{end} {key}", s))
    return out


def shrink(spec: dict, differs: Callable[[dict], bool], loads: Callable[[dict], bool] = lambda s: True,
           budget: float | None = None, say=lambda line: None) -> tuple[dict, list[str]]:
    """The smallest design reached by dropping one part at a time while `differs` stays true (and
    the design still loads); (spec, what was dropped). `budget` seconds bound the search."""
    start = time.monotonic()
    dropped: list[str] = []
    progress = True
    while progress:
        progress = False
        for what, smaller in reductions(spec):
            if budget is not None and time.monotonic() - start > budget:
                say(f"  shrink: budget of {budget:.0f} s spent")
                return spec, dropped
            if not loads(smaller):
                continue
            if differs(smaller):
                spec = smaller
                dropped.append(what)
                say(f"  shrink: without {what} it still differs")
                progress = True
                break
    return spec, dropped


# -- running ----------------------------------------------------------------------------------------

def run_cells(paths: list[Path], cells: dict[str, list[tuple[str, str, tuple[str, ...]]]], out: Path, *,
              size: int, jobs: int, timeout: float, progress: bool) -> dict:
    """Predict and run the cells on the written designs, the way `ftlab matrix --topologies FILE`
    does; the results document."""
    from lab.matrix.runner import run_matrix

    scen = scenario.load("default")
    chosen = [targets.target(str(p), "--designs") for p in paths]
    srcs = targets.sources(chosen)
    for t in chosen:
        targets.deep_check(t, warn=lambda line: None)
    by_file = {str(p.resolve()): t.name for p, t in zip(paths, chosen, strict=True)}
    wanted = []
    for p in paths:
        name = by_file[str(p.resolve())]
        for sec, data, opts in cells[name]:
            wanted.append(scenario.Cell(name, sec, data, opts))
    wanted = targets.with_overrides(wanted, scen, srcs, say=lambda line: None)
    return run_matrix(wanted, scen, out, size=size, jobs=jobs, timeout=timeout, progress=progress,
                      command="ftlab selftest", topology_paths=srcs, throughput="off")


def _one_cell_differs(cell: tuple[str, str, tuple[str, ...]], base: dict, work: Path, size: int,
                      timeout: float, counter: list[int]) -> Callable[[dict], bool]:
    sig = (base["predicted"], base["observed"])

    def differs(spec: dict) -> bool:
        counter[0] += 1
        s = copy.deepcopy(spec)
        s["name"] = f"{spec['name'].split('-s')[0]}-s{counter[0]}"
        folder = work / s["name"]
        path = designgen.write(s, folder / "design")
        try:
            doc = run_cells([path], {s["name"]: [cell]}, folder / "run", size=size, jobs=1, timeout=timeout,
                            progress=False)
        except (InputError, LabError):      # the cell does not exist there (no IPv6 address to dial)
            return False
        cells = doc["scenarios"]
        if not cells:
            return False
        j = judge(cells[0])
        # the same difference: not agreeing, with the same observed outcome and the same prediction
        return (not j["agrees"] and not j["error"]
                and (j["predicted"][0], j["observed"][0]) == (sig[0][0], sig[1][0]))
    return differs


def _parse_cells(text: str | None) -> int | None:
    if text in (None, ""):
        return 4
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError([Problem("--cells", 0, "", f"{text!r}: a number of cells per design (1-20) or 'all'")])
    return n


def cmd_selftest(args: argparse.Namespace) -> int:
    from lab.matrix.runner import parse_size

    if args.designs < 1:
        raise InputError([Problem("--designs", 0, "", "must be at least 1")])
    count = _parse_cells(args.cells)
    size = parse_size(args.size)
    out = Path(args.out or f"reports/selftest-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    folder = out / "designs"
    specs, paths, refusals = [], [], 0
    for i in range(args.designs):
        d = designgen.design(args.seed, args.first + i, folder)
        refusals += len(d.refusals)
        specs.append(d.spec)
        paths.append(d.path)
    print(f"selftest: {len(specs)} designs (seed {args.seed}) written to {folder}; "
          f"{refusals} refused by the loader and repaired", flush=True)
    cells = {s["name"]: cells_for(s, count) for s in specs}
    total = sum(map(len, cells.values()))
    print(f"selftest: {total} cells ({'all' if count is None else count} per design"
          f"{', +1 over IPv6 on dual-stack designs' if total > len(specs) * (count or 20) else ''}), "
          f"size {size} B, jobs {args.jobs}", flush=True)
    doc = run_cells(paths, cells, out / "run", size=size, jobs=args.jobs, timeout=args.timeout,
                    progress=not args.quiet)
    kinds = {s["name"]: [m for _, m in designgen.device_kinds(s)] for s in specs}
    spec_of = {s["name"]: s for s in specs}
    rows = []
    judged = []
    for s in doc["scenarios"]:
        j = judge(s)
        judged.append((s, j))
        rows.append((kinds.get(s["topology"], []), j))
    ran = time.monotonic() - started
    lines = table(rows)
    print(f"\naccuracy on {len(specs)} designs, seed {args.seed}, {len(rows)} cells, {ran:.0f} s:")
    print("\n".join(lines))
    diffs = [(s, j) for s, j in judged if not j["agrees"] and not j["error"] and not j["unknown"]]
    errors = [(s, j) for s, j in judged if j["error"]]
    unknown = [(s, j) for s, j in judged if j["unknown"]]
    for _s, j in errors:
        print(f"  ERROR   {j['id']}: {j['reason']}")
    for s, j in unknown:
        print(f"  UNPREDICTED {j['id']}: observed {j['observed'][0]}: {s.get('expected_reason')}")
    (out / "selftest.txt").write_text("\n".join(lines) + "\n")
    minimal = []
    shrunk_designs: set[str] = set()
    for k, (s, j) in enumerate(diffs, 1):
        print(f"  DIFFERS {j['id']}: predicted {_said(j['predicted'])}, observed {_said(j['observed'])}: "
              f"{j['reason'][:200]}", flush=True)
        name = s["topology"]
        entry = {"k": k, "cell": j["id"], "predicted": j["predicted"], "observed": j["observed"],
                 "reason": j["reason"], "design": str(folder / f"{name}.yaml")}
        if args.shrink and name not in shrunk_designs and len(shrunk_designs) < args.shrink_max:
            shrunk_designs.add(name)
            cell = (s["security"], s["data"], tuple(o for o in (s.get("variant") or "").split("+") if o))
            work = out / "shrink" / f"{k}"
            counter = [0]
            small, dropped = shrink(spec_of[name], _one_cell_differs(cell, j, work, size, args.timeout, counter),
                                    loads=lambda sp, w=work: designgen.loads_spec(sp, w / "probe"),
                                    budget=args.shrink_budget, say=lambda line: print(line, flush=True))
            small = copy.deepcopy(small)
            small["name"] = f"minimal-{k}"
            files = designgen.render(small)
            for fname, text in files.items():
                target = out / (f"minimal-{k}.yaml" if fname.endswith(".yaml") else fname)
                if fname.endswith(".yaml"):
                    text = (f"# selftest difference {k}: cell {small['name']}/{cell[0]}/{cell[1]}"
                            f"{''.join('+' + o for o in cell[2])} (was {j['id']}): predicted "
                            f"{_said(j['predicted'])}, observed {_said(j['observed'])}\n" + text)
                target.write_text(text)
            entry.update(minimal=str(out / f"minimal-{k}.yaml"), dropped=dropped, runs=counter[0],
                         minimal_cell=f"minimal-{k}/{cell[0]}/{cell[1]}{''.join('+' + o for o in cell[2])}")
            print(f"  minimal design: {out / f'minimal-{k}.yaml'} ({len(dropped)} parts dropped, "
                  f"{counter[0]} runs)", flush=True)
        minimal.append(entry)
    summary = {"seed": args.seed, "designs": len(specs), "cells": len(rows), "refusals": refusals,
               "seconds": round(time.monotonic() - started, 1), "run_seconds": round(ran, 1),
               "table": lines, "differences": minimal, "errors": [j["id"] for _, j in errors],
               "unknown": [j["id"] for _, j in unknown],
               "accuracy": _accuracy(rows)}
    (out / "selftest.json").write_text(json.dumps(summary, indent=1, default=list) + "\n")
    (out / "selftest.txt").write_text("\n".join(lines) + "\n")
    print(f"selftest: {time.monotonic() - started:.0f} s; report {out}/selftest.json, run {out}/run/index.html")
    if errors or doc.get("lab_errors"):
        for e in doc.get("lab_errors") or []:
            print(f"  LAB     {e}")
        return 3
    return 1 if diffs or unknown else 0


def _accuracy(rows) -> dict:
    js = [j for _, j in rows if not j["error"] and not j["unknown"]]
    n = len(js) or 1
    return {k: round(sum(j[k] for j in js) / n, 4) for k in ("outcome", "stage", "device", "agrees")}


def _said(t) -> str:
    outcome, stage, device = t
    return str(outcome) + (f" at {stage}" if stage else "") + (f" by {device}" if device else "")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("selftest", help="the model against the runtime on generated designs",
                       description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--designs", type=int, default=20, help="how many designs (default 20)")
    p.add_argument("--seed", type=int, default=1, help="the generator's seed (default 1)")
    p.add_argument("--first", type=int, default=0, help="the first design's index (default 0)")
    p.add_argument("--out", type=Path, help="folder (default reports/selftest-<seed>-<time>)")
    p.add_argument("--cells", default=None, help="cells per design: N (default 4) or all")
    p.add_argument("--size", default="64KiB", help="bytes per transfer (default 64KiB)")
    p.add_argument("--jobs", type=int, default=2, help="networks at once (default 2)")
    p.add_argument("--timeout", type=float, default=20.0, help="hard limit per cell in seconds (default 20)")
    p.add_argument("--no-shrink", dest="shrink", action="store_false", help="do not shrink the differences")
    p.add_argument("--shrink-max", type=int, default=5, help="designs whose difference is shrunk (default 5)")
    p.add_argument("--shrink-budget", type=float, default=240.0, help="seconds per shrink (default 240)")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress")
    p.set_defaults(func=cmd_selftest)


if __name__ == "__main__":          # pragma: no cover
    sys.exit(0)
