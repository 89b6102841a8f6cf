"""The matrix runner: plan the cells, run each network in its own sandbox, assemble the report.

    doc = run_matrix(cells, scenarios, out_dir, jobs=2)

Cells are grouped by network (picture + ALG mode): each group is brought up once, in its own
sandbox (lab.network.sandbox: its own PID, network and mount namespaces), by `python -m lab.matrix.worker`.
Up to `jobs` groups run at once - they cannot disturb each other, and a drop event in a group's
event file can only belong to that group's current cell. The parent needs no namespace itself:
it follows the groups' result files for a live progress bar and writes the report at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import InputError, LabError, Problem
from lab.matrix import predict, scenario
from lab.report import results, write_all
from lab.topology import loader as topo

MiB = 1 << 20
DEFAULT_SIZE = 2 * MiB


def parse_size(text: str) -> int:
    """`2MiB`, `512KiB`, `1M`, `4096` -> bytes."""
    t = str(text).strip()
    units = {"gib": 1 << 30, "mib": MiB, "kib": 1 << 10, "g": 1 << 30, "m": MiB, "k": 1 << 10,
             "gb": 10**9, "mb": 10**6, "kb": 10**3, "b": 1, "": 1}
    num = t.rstrip("bBiIkKmMgG")
    unit = t[len(num):].lower()
    try:
        value = float(num)
    except ValueError:
        value = -1
    if unit not in units or value < 0:
        raise InputError([Problem("--size", 0, "", f"{text!r} is not a size (e.g. 2MiB, 512KiB, 4096)")])
    return int(value * units[unit])


@dataclass
class GroupPlan:
    topology: str            # name of a shipped picture, or a path to a user's file
    alg: str | None
    cells: list[scenario.Cell]

    @property
    def label(self) -> str:
        return Path(self.topology).stem + (f" (alg {self.alg})" if self.alg else "")


def plan_groups(cells: list[scenario.Cell], scen: scenario.Scenarios,
                topology_paths: dict[str, str] | None = None) -> list[GroupPlan]:
    """One group per (picture, ALG mode), in the order the cells come; the biggest start first."""
    groups: dict[tuple, GroupPlan] = {}
    for c in cells:
        spec = scen.spec(c)
        key = (c.topology, spec.alg)
        where = (topology_paths or {}).get(c.topology, c.topology)
        groups.setdefault(key, GroupPlan(where, spec.alg, [])).cells.append(c)
    return sorted(groups.values(), key=lambda g: -len(g.cells))


def make_pki(directory: Path, topologies: list[str]) -> Path:
    """The run's CA and one server certificate valid for every address a client dials."""
    from lab.ftps import pki

    ips = set()
    for name in topologies:
        t = topo.load(name)
        ips.update({str(t.ftp.server_address), str(t.address_of(t.ftp.server))})
    pki.init_ca(directory)
    pki.issue_server(directory, "server", ips=sorted(ips), dns=["server"])
    return directory


# -- progress ---------------------------------------------------------------------------------------

class Progress:
    """A one-line live progress bar on stderr: cells done, pass/fail/error, differing, elapsed."""

    def __init__(self, total: int, stream=sys.stderr, enabled: bool = True):
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self.t0 = time.monotonic()
        self.last = ""
        self.done = 0
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def update(self, entries: list[dict], note: str = "") -> None:
        if not self.enabled:
            return
        n = len(entries)
        c = {k: sum(e["outcome"] == k for e in entries) for k in ("pass", "fail", "error")}
        differ = sum(not e["matches"] and e["outcome"] != "error" for e in entries)
        width = 30
        filled = int(width * n / self.total) if self.total else width
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {n}/{self.total}  pass {c['pass']}  "
                f"fail {c['fail']}  error {c['error']}  differ {differ}")
        if self.tty:
            line = f"\r{text}  {time.monotonic() - self.t0:4.0f} s  {note[:40]:40}"
        elif n != self.done and (n - self.done >= 20 or n == self.total):
            line = f"{text}  {time.monotonic() - self.t0:.0f} s\n"     # a log, not an animation
            self.done = n
        else:
            return
        if line != self.last:
            self.stream.write(line)
            self.stream.flush()
            self.last = line

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -- the run ------------------------------------------------------------------------------------------

def _read_entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _group_dir(out: Path, index: int, g: GroupPlan) -> Path:
    label = Path(g.topology).stem + (f"-alg-{g.alg}" if g.alg else "")
    return out / "work" / f"{index:02d}-{label}"


def run_matrix(cells: list[scenario.Cell], scen: scenario.Scenarios, out: Path, *, size: int = DEFAULT_SIZE,
               jobs: int = 2, pcap: bool = False, timeout: float = 20.0, baseline: dict | None = None,
               progress: bool = True, command: str = "", shard: str | None = None,
               topology_paths: dict[str, str] | None = None, reports: bool = True) -> dict:
    """Run the cells and write the report folder; returns the results document."""
    from lab.network.sandbox import require_root, run_sandboxed, sigterm_as_exit, stop_sandboxes_of

    if not cells:
        raise InputError("no cells to run (the filters left nothing)")
    require_root("ftlab matrix")
    started = time.time()
    out = Path(out)
    (out / "work").mkdir(parents=True, exist_ok=True)
    groups = plan_groups(cells, scen, topology_paths)
    pki_dir = make_pki(out / "work" / "pki", sorted({g.topology for g in groups}))
    plan = {"out": str(out.resolve()), "size": size, "heartbeat": str((out / "work" / "heartbeat").resolve()), "timeout": timeout, "pcap": pcap,
            "scenario_file": str(scen.source), "pki": str(pki_dir.resolve()),
            "groups": [{"topology": g.topology, "alg": g.alg, "cells": [c.id for c in g.cells]} for g in groups]}
    plan_path = out / "work" / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))

    bar = Progress(len(cells), enabled=progress)
    lab_errors: list[str] = []
    pending = list(range(len(groups)))
    running: dict[int, threading.Thread] = {}
    lock = threading.Lock()

    def worker(i: int) -> None:
        g = groups[i]
        # A group's budget: bring-up, baseline and every cell's hard timeout in the worst case.
        budget = 60 + len(g.cells) * (timeout + 2)
        try:
            done = run_sandboxed([sys.executable, "-m", "lab.matrix.worker", str(plan_path), str(i)],
                                 capture=True, timeout=budget)
            if done.returncode != 0:
                with lock:
                    lab_errors.append(f"{g.label}: worker exited {done.returncode}: "
                                      f"{(done.stderr or '').strip().splitlines()[-1:] or ''}")
        except LabError as exc:
            with lock:
                lab_errors.append(f"{g.label}: {str(exc).splitlines()[0]}")

    heartbeat = out / "work" / "heartbeat"
    heartbeat.touch()
    # SIGTERM to this process alone (`kill PID`, a service manager) reaches none of the sandboxes:
    # stop them here instead of leaving them to run on until the heartbeat goes stale.
    previous = sigterm_as_exit()
    try:
        while pending or running:
            heartbeat.touch()   # the workers stop by themselves when this goes stale (runner killed)
            while pending and len(running) < max(1, jobs):
                i = pending.pop(0)
                t = threading.Thread(target=worker, args=(i,), daemon=True)
                running[i] = t
                t.start()
            for i, t in list(running.items()):
                if not t.is_alive():
                    running.pop(i)
            entries = [e for i in range(len(groups)) for e in _read_entries(_group_dir(out, i, groups[i]) /
                                                                            "cells.jsonl")]
            bar.update(entries, ", ".join(groups[i].label for i in running))
            time.sleep(0.2)
    except KeyboardInterrupt:
        # The sandboxes got the same SIGINT and tear down by themselves: wait for them (bounded).
        for t in running.values():
            t.join(timeout=15)
        raise
    except SystemExit:
        deadline = time.monotonic() + 15
        while any(t.is_alive() for t in running.values()) and time.monotonic() < deadline:
            stop_sandboxes_of(os.getpid())   # again: a worker may have been starting its sandbox
            for t in running.values():
                t.join(timeout=0.2)
        raise
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    doc = results.new_run(run_id=out.name if out.name else None, started=started, command=command,
                          scenario_file=str(scen.source), size=size, shard=shard)
    by_id: dict[str, dict] = {}
    for i, g in enumerate(groups):
        gdir = _group_dir(out, i, g)
        info_path = gdir / "topology.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        devices: set[str] = set()
        if info.get("pcaps"):
            try:
                model = topo.load(g.topology)
                devices = {n.name for n in model.nodes.values() if n.is_device}
            except InputError:
                pass
        for e in _read_entries(gdir / "cells.jsonl"):
            e["pcaps"] = info.get("pcaps", [])
            if e["pcaps"] and e.get("ended") and e.get("duration_s") is not None:
                from lab.report.wire import seen
                e["wire"] = seen([out / p for p in e["pcaps"]], devices,
                                 e["ended"] - e["duration_s"] - 0.2, e["ended"] + 0.2)
            by_id[e["id"]] = e
        name = Path(g.topology).stem if g.topology.endswith((".yaml", ".yml")) else g.topology
        if info.get("lab_error"):
            lab_errors.append(f"{g.label}: {info['lab_error']}")
        entry = doc["topologies"].setdefault(name, {})
        entry.update({k: v for k, v in info.items() if k in ("description", "baseline_mbps", "baseline_error",
                                                                 "up_s")})
        picture = None if g.topology.endswith((".yaml", ".yml")) else scen.pictures.get(name)
        if picture is None:
            try:
                picture = predict.picture_of(topo.load(g.topology))[0]
            except InputError:
                picture = None
        if picture is not None:
            rec = predict.recommend(picture)
            entry["recommendation"] = f"{rec.method} (step {rec.step}): {rec.why}"
            entry["reasoning"] = picture.reasoning or None
    # A cell the worker never reported (it died): the lab failed there.
    from lab.matrix.verdict import Verdict
    for c in cells:
        if c.id not in by_id:
            picture = scen.pictures.get(c.topology)
            pred = predict.predict(scen, c, picture) if picture else predict.Prediction("fail", None, "unknown")
            by_id[c.id] = results.scenario_entry(
                cell=c, spec=scen.spec(c), prediction=pred,
                verdict=Verdict("error", None, "lab: the cell was never run (its network's worker failed: "
                                               f"{'; '.join(lab_errors)[:200] or 'no report'})"), duration_s=0.0)
    doc["scenarios"] = [by_id[c.id] for c in cells]
    if baseline is not None:
        before = {s["id"]: s["outcome"] for s in baseline["scenarios"]}
        for s in doc["scenarios"]:
            s["baseline_outcome"] = before.get(s["id"])
    doc["lab_errors"] = lab_errors
    doc["finished"] = results.now_iso()
    doc["duration_s"] = round(time.time() - started, 1)
    if reports:
        write_all(doc, out, scenarios=scen, baseline=baseline)
    else:
        results.write(doc, out)
    return doc
