"""The matrix runner: plan the cells, run each network in its own sandbox, assemble the report.

    doc = run_matrix(cells, scenarios, out_dir, jobs=2)

Cells are grouped by network (picture + ALG mode): each group is brought up once, in its own
sandbox (lab.network.sandbox: its own PID, network and mount namespaces), by `python -m lab.matrix.worker`.
Up to `jobs` groups run at once - they cannot disturb each other, and a drop event in a group's
event file can only belong to that group's current cell. The parent needs no namespace itself:
it follows the groups' result files for a live progress bar and writes the report at the end.

Ctrl-C (SIGINT, to the whole foreground group as a terminal sends it, or to the runner alone) stops
the run: no new network starts, the running sandboxes are killed (the kernel reaps everything in
them), and the report is written of the cells that ended before the signal; every other cell is
marked not run (NOT_RUN) and the document says `interrupted`. What a worker wrote after the signal
is not believed: Ctrl-C kills the lab's own programs in it, and their deaths read as lab errors.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.errors import InputError, LabError, Problem
from lab.ftps import pki
from lab.matrix import expect as expect_mod
from lab.matrix import facts, predict, scenario, speed
from lab.matrix.jsonl import JsonLines, read_all
from lab.matrix.plan import GroupPlan, RunPlan
from lab.matrix.recommend import recommend
from lab.matrix.verdict import Verdict
from lab.matrix.worker import GO, RUNNING, VERDICTS_DONE, WAITING
from lab.network.net import pcap_cap_line, pcap_scope
from lab.network.sandbox import require_root, run_sandboxed, sigterm_as_exit, stop_sandboxes_of
from lab.report import results, write_all
from lab.topology import loader as topo
from lab.topology.model import Topology

MiB = 1 << 20
DEFAULT_SIZE = 2 * MiB

#: The outcome of a cell an interrupted run did not run (`not_run: true` marks it too).
NOT_RUN = "not-run"
#: After Ctrl-C: how long the sandboxes get to end by themselves before they are killed (none:
#: killing a sandbox is its teardown, the kernel reaps all in it), and the longest the runner waits
#: for them in all (the report must be out within 2 s of the signal).
STOP_GRACE = 0.0
STOP_LIMIT = 1.5


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
    if int(value * units[unit]) < 1:   # nothing to move proves nothing ("0 bytes, SHA-256 verified")
        raise InputError([Problem("--size", 0, "", f"{text!r}: a transfer needs at least 1 byte (e.g. 2MiB)")])
    return int(value * units[unit])


def plan_groups(cells: list[scenario.Cell], scen: scenario.Scenarios,
                topology_paths: dict[str, str] | None = None) -> list[GroupPlan]:
    """One group per (picture, ALG mode, timing), in the order the cells come; the biggest start first."""
    groups: dict[tuple, tuple[str, str | None, list[str], object]] = {}
    for c in cells:
        spec = scen.spec(c)
        where = (topology_paths or {}).get(c.topology, c.topology)
        groups.setdefault((c.topology, spec.alg, spec.timing), (where, spec.alg, [], spec.timing))[2].append(c.id)
    return sorted((GroupPlan(where, alg, tuple(ids), timing) for where, alg, ids, timing in groups.values()),
                  key=lambda g: -len(g.cells))


def make_pki(directory: Path, topologies: list[str]) -> Path:
    """The run's CA and one server certificate valid for every address a client dials."""
    ips = set()
    for name in topologies:
        t = topo.load(name)
        ips.update({str(t.ftp.server_address), str(t.address_of(t.ftp.server))})
        ips.update(str(a) for a in (t.ftp.server_address6, *(x.ip for x in t.nodes[t.ftp.server].interfaces[0].addresses))
                   if a is not None)
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

    def update(self, entries: list[dict], note: str = "", running: list[tuple[str, float]] | None = None) -> None:
        """`running`: the cells being judged now and for how long (seconds): the bar says them, and
        a log (not a terminal) gets a line every LOG_EVERY_S for a cell running longer than 2 s."""
        if not self.enabled:
            return
        running = running or []
        if running:
            note = ", ".join(f"{cid} {age:.0f} s" for cid, age in running)
        if not self.tty and running:
            self._log_running(running)
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

    LOG_EVERY_S = 5.0

    def _log_running(self, running: list[tuple[str, float]]) -> None:
        now = time.monotonic()
        if now - getattr(self, "_logged", 0.0) < self.LOG_EVERY_S:
            return
        slow = [(cid, age) for cid, age in running if age >= 2]
        if slow:
            self._logged = now
            self.stream.write("".join(f"  running {cid}: {age:.0f} s\n" for cid, age in slow))
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


THROUGHPUT_PCAP = ".throughput.pcap"     # --pcap all: the throughput phase's captures (lab.network.net)


# -- the run ------------------------------------------------------------------------------------------

def run_matrix(cells: list[scenario.Cell], scen: scenario.Scenarios, out: Path, *, size: int = DEFAULT_SIZE,
               jobs: int = 2, pcap: bool | str = False, timeout: float = 20.0, baseline: dict | None = None,
               progress: bool = True, command: str = "", shard: str | None = None,
               topology_paths: dict[str, str] | None = None, reports: bool = True,
               throughput: str = "off", expect=None, run_id: str | None = None) -> dict:
    """Run the cells and write the report folder; returns the results document. The run id is
    `run_id`, else the start time: never the folder's name (the folder is only where it is written).
    After Ctrl-C the document has `interrupted` and the cells that did not run are NOT_RUN."""
    if not cells:
        raise InputError("no cells to run (the filters left nothing)")
    require_root("ftlab matrix")
    started = time.time()
    out = Path(out)
    work = out.resolve() / "work"
    work.mkdir(parents=True, exist_ok=True)
    groups = plan_groups(cells, scen, topology_paths)
    plan = RunPlan(out=out.resolve(), size=size, timeout=timeout, pcap=pcap,
                   scenario_file=Path(scen.source).resolve(),
                   pki=make_pki(work / "pki", sorted({g.topology for g in groups})),
                   heartbeat=work / "heartbeat", groups=tuple(groups), throughput=throughput)
    plan_path = plan.write(work / "plan.json")
    if capture := pcap_cap_line(pcap, throughput):
        print(capture, file=sys.stderr, flush=True)        # the captures' scope and cap, one line
    prepared = Prepared(plan, scen, reports)
    prepared.start()
    lab_errors, phases, stop = run_groups(plan, plan_path, jobs, Progress(len(cells), enabled=progress),
                                          busy=prepared.is_alive)
    reported = time.monotonic()
    prepared.join()

    doc = results.new_run(run_id=run_id, started=started, command=command,
                          scenario_file=str(scen.source), size=size, shard=shard)
    collect(doc, plan, cells, scen, lab_errors, stop, prepared.found)
    if stop is not None:
        doc["interrupted"] = stop.summary(doc["scenarios"], started)
    if baseline is not None:
        before = {s["id"]: s["outcome"] for s in baseline["scenarios"]}
        for s in doc["scenarios"]:
            s["baseline_outcome"] = before.get(s["id"])
    doc["lab_errors"] = lab_errors
    if expect is not None:       # lab.matrix.expect: what the engineer states the design must do
        expect_mod.annotate(doc, expect)
    doc["throughput_mode"] = throughput
    doc["phases"] = phases
    if capture:
        doc["pcap"] = {"scope": pcap_scope(pcap), "cap": capture}
    for line in (x for name, t in doc["topologies"].items() for x in speed.note_lines(name, t.get("throughput"))):
        print(line, file=sys.stderr, flush=True)    # what the throughput phase cut short or skipped, and why
    if reports:
        write_all(doc, out, baseline=baseline)
    phases["report_s"] = round(time.monotonic() - reported, 1)
    doc["finished"] = results.now_iso()
    doc["duration_s"] = round(time.time() - started, 1)
    results.write(doc, out)
    return doc


class Stop:
    """Ctrl-C during a run: when it came, what had been read of the workers' cells by then, and
    which of the workers' lab errors came before it (only those are believed)."""

    def __init__(self, at: float, trusted: set[str], lab_errors: int, phase: str):
        self.at = at                      # wall clock of the signal (the workers' `ended` is wall clock)
        self.trusted = trusted            # ids of cells reported before the signal
        self.lab_errors = lab_errors      # how many of the run's lab errors came before it
        self.phase = phase                # "verdicts" or "throughput"

    def believes(self, entry: dict) -> bool:
        """A cell's entry is the cell's own result: read before the signal, or a verdict whose client
        ended before it. A lab error written after it is the signal's doing (it killed a program)."""
        if entry.get("id") in self.trusted:
            return True
        ended = entry.get("ended")
        return entry.get("outcome") in ("pass", "fail") and isinstance(ended, int | float) and ended < self.at

    def summary(self, scenarios: list[dict], started: float) -> dict:
        not_run = sum(bool(s.get("not_run")) for s in scenarios)
        return {"signal": "SIGINT", "at": results.now_iso(self.at), "after_s": round(self.at - started, 1),
                "phase": self.phase, "cells_run": len(scenarios) - not_run, "cells_not_run": not_run}


class Prepared(threading.Thread):
    """What the report says of each network apart from its cells (its facts and diagram), worked
    out while the cells run, and the report writers imported: after Ctrl-C the report is out
    within the 2 s a user waits. {group index: (model, facts)}; collect() does any that is missing."""

    def __init__(self, plan: RunPlan, scen: scenario.Scenarios, reports: bool = True):
        super().__init__(name="report-facts", daemon=True)
        self.plan, self.scen, self.reports = plan, scen, reports
        self.found: dict[int, tuple[Topology, dict]] = {}

    def run(self) -> None:
        if self.reports:
            from lab.report import charts, html, junit  # noqa: F401  (matplotlib, Jinja2: ~0.5 s)
        for i, g in enumerate(self.plan.groups):
            try:
                model = _model(g.topology)
                if model is not None:
                    self.found[i] = (model, {**facts.topology_facts(model, shipped=topo.is_shipped(model)),
                                             **picture_facts(g, model, self.scen)})
            except Exception:        # noqa: BLE001 - collect() works it out again and says what is wrong
                continue


#: The report's own work (Prepared: diagrams, matplotlib) would share the CPUs with the first
#: networks' throughput measurement: the phase waits for it, at most this long.
QUIET_WAIT_S = 15.0


def _running_cells(plan: RunPlan, groups: list[int]) -> list[tuple[str, float]]:
    """(cell id, seconds it has run) of the cell each of these groups' workers is judging now."""
    found = []
    for i in groups:
        try:
            now = json.loads((plan.group_dir(i) / RUNNING).read_text())
            found.append((str(now["id"]), max(0.0, time.time() - float(now["since"]))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def run_groups(plan: RunPlan, plan_path: Path, jobs: int, bar: Progress,
               busy: Callable[[], bool] = lambda: False) -> tuple[list[str], dict, Stop | None]:
    """Each group in its own sandbox, `jobs` at once, with a live progress bar; the lab errors of
    the workers that failed, the phases' durations, and the Stop if Ctrl-C ended the run.

    Verdicts first: `jobs` networks judge their cells at once. A network done with its verdicts
    frees its place and, when the run measures throughput, waits (up, idle) for its turn; once
    every verdict is in, the networks measure one at a time, so nothing else runs meanwhile: the
    first turn waits while `busy()` (the report's facts being worked out), at most QUIET_WAIT_S."""
    lab_errors: list[str] = []
    pending = list(range(len(plan.groups)))
    running: dict[int, threading.Thread] = {}
    reported = [JsonLines(plan.group_dir(i) / "cells.jsonl", from_start=True) for i in range(len(plan.groups))]
    entries: list[dict] = []
    t0 = time.monotonic()
    verdicts_end: float | None = None
    turn: int | None = None
    stopping = threading.Event()
    signalled: list[tuple[float, int]] = []     # Ctrl-C: (wall clock, lab errors so far), in the handler
    stop: Stop | None = None
    phase_deadline: float | None = None

    def on_sigint() -> None:
        if not signalled:
            signalled.append((time.time(), len(lab_errors)))
        stopping.set()

    def worker(i: int) -> None:
        if stopping.is_set():
            return
        if error := run_worker(plan, plan_path, i):
            lab_errors.append(error)     # list.append is atomic: no lock needed

    def flag(i: int, name: str) -> bool:
        return (plan.group_dir(i) / name).exists()

    for i in pending:                # a report folder used before keeps the flags of its last run
        for name in (VERDICTS_DONE, WAITING, GO):
            (plan.group_dir(i) / name).unlink(missing_ok=True)

    plan.heartbeat.touch()
    # SIGTERM to this process alone (`kill PID`, a service manager) reaches none of the sandboxes:
    # stop them here instead of leaving them to run on until the heartbeat goes stale.
    previous = sigterm_as_exit()
    # Ctrl-C is a flag the loop looks at, never an exception in the middle of its bookkeeping.
    previous_int = _sigint_as_flag(on_sigint)
    try:
        while (pending or running) and not stopping.is_set():
            plan.heartbeat.touch()   # the workers stop by themselves when this goes stale (runner killed)
            for i, t in list(running.items()):
                if not t.is_alive():
                    running.pop(i)
            judging = [i for i in running if not flag(i, VERDICTS_DONE)]
            while pending and len(judging) < max(1, jobs):
                i = pending.pop(0)
                plan.group_dir(i).mkdir(parents=True, exist_ok=True)
                running[i] = threading.Thread(target=worker, args=(i,), daemon=True)
                running[i].start()
                judging.append(i)
            if verdicts_end is None and not pending and not judging:
                verdicts_end = time.monotonic()
            quiet = turn is not None or not busy() or time.monotonic() - verdicts_end >= QUIET_WAIT_S \
                if verdicts_end is not None else False
            if verdicts_end is not None and quiet and (turn is None or turn not in running):
                waiting = [i for i in running if flag(i, WAITING)]
                if waiting:
                    turn = min(waiting)
                    # the run's throughput budget counts from the first turn (lab.matrix.speed)
                    phase_deadline = phase_deadline or speed.run_deadline(plan.throughput)
                    (plan.group_dir(turn) / GO).write_text(speed.turn_text(phase_deadline))
            fresh = [e for cells in reported for e in cells.read()]
            if stopping.is_set():
                break        # lines read as the signal came: judged by what they say (Stop.believes)
            entries += fresh
            note = f"throughput: {plan.groups[turn].label}" if turn in running else \
                ", ".join(plan.groups[i].label for i in judging)
            bar.update(entries, note, [] if turn in running else _running_cells(plan, judging))
            stopping.wait(0.05)
        if stopping.is_set():
            at, errors_before = signalled[0] if signalled else (time.time(), len(lab_errors))
            stop = Stop(at, {e["id"] for e in entries if "id" in e}, errors_before,
                        "verdicts" if verdicts_end is None else "throughput")
            bar.close()
            print(f"ftlab: interrupted: stopping {len(running)} network(s); the report of what ran follows",
                  file=sys.stderr, flush=True)
            stop_all(running)                     # (another Ctrl-C meanwhile changes nothing)
            _restore_sigint(previous_int)         # one during the report: no report (KeyboardInterrupt)
            previous_int = None
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
        _restore_sigint(previous_int)
    end = time.monotonic()
    verdicts_end = verdicts_end or end
    # after Ctrl-C the workers' deaths of the signal are no lab errors: only those from before it
    errors = list(lab_errors if stop is None else lab_errors[:stop.lab_errors])
    return errors, {"verdicts_s": round(verdicts_end - t0, 1), "throughput_s": round(end - verdicts_end, 1)}, stop


def stop_all(running: dict[int, threading.Thread]) -> None:
    """After Ctrl-C: the sandboxes that got the terminal's SIGINT tear down by themselves; give them
    STOP_GRACE, then kill what is left (SIGKILL to a sandbox: the kernel reaps every process,
    namespace and link in it) until every worker thread has returned, at most STOP_LIMIT."""
    started = time.monotonic()
    while any(t.is_alive() for t in running.values()) and time.monotonic() - started < STOP_LIMIT:
        if time.monotonic() - started >= STOP_GRACE:
            stop_sandboxes_of(os.getpid())   # again and again: a worker may be starting its sandbox
        for t in running.values():
            t.join(timeout=0.02)


def _sigint_as_flag(handler) -> tuple | None:
    """SIGINT calls `handler()` while the run goes on (main thread only); what _restore_sigint needs.
    A run started with SIGINT ignored (a background job, `nohup`) keeps ignoring it, as Python does."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return None
    return (signal.signal(signal.SIGINT, lambda signum, frame: handler()),)


def _restore_sigint(previous: tuple | None) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous[0] is None else previous[0])


def run_worker(plan: RunPlan, plan_path: Path, index: int) -> str | None:
    """`python -m lab.matrix.worker PLAN INDEX` in a sandbox of its own; a lab error, or None."""
    g = plan.groups[index]
    # A group's budget in the worst case: bring-up, every cell's hard timeout, then waiting for
    # every other group's verdicts and throughput phase, and its own.
    cells = sum(len(x.cells) for x in plan.groups)
    budget = 60 + cells * (plan.timeout + 2) + len(plan.groups) * speed.budget(plan.throughput)
    try:
        done = run_sandboxed([sys.executable, "-m", "lab.matrix.worker", str(plan_path), str(index)],
                             capture=True, timeout=budget)
    except LabError as exc:
        return f"{g.label}: {str(exc).splitlines()[0]}"
    if done.returncode != 0:
        return f"{g.label}: worker exited {done.returncode}: {(done.stderr or '').strip().splitlines()[-1:] or ''}"
    return None


# -- the results document ---------------------------------------------------------------------------

def collect(doc: dict, plan: RunPlan, cells: list[scenario.Cell], scen: scenario.Scenarios,
            lab_errors: list[str], stop: Stop | None = None,
            prepared: dict[int, tuple[Topology, dict]] | None = None) -> None:
    """The groups' cells and facts into the document, in the order the cells were asked for; a
    cell no worker reported is a lab error. Adds the groups' own lab errors to `lab_errors`.
    After Ctrl-C (`stop`), only what stop believes is taken; every other cell is not run."""
    by_id: dict[str, dict] = {}
    models: dict[str, Topology] = {}
    for i, g in enumerate(plan.groups):
        gdir = plan.group_dir(i)
        info = json.loads((gdir / "topology.json").read_text()) if (gdir / "topology.json").exists() else {}
        model, known = (prepared or {}).get(i) or (_model(g.topology), None)
        # one key per network throughout the document: its name, as its cells' ids say it
        name = scenario.parse_cell_id(g.cells[0]).topology if g.cells else g.name
        if model is not None:
            models.setdefault(name, model)
        for e in read_all(gdir / "cells.jsonl"):
            if stop is not None and not stop.believes(e):
                continue
            e["pcaps"] = [p for p in info.get("pcaps", []) if not p.endswith(THROUGHPUT_PCAP)]
            by_id[e["id"]] = e
        believed_error = any(by_id.get(c, {}).get("outcome") == "error" for c in g.cells)
        if info.get("lab_error") and (stop is None or believed_error):
            lab_errors.append(f"{g.label}: {info['lab_error']}")
        if info.get("throughput") and (phase_pcaps := [p for p in info.get("pcaps", []) if p.endswith(THROUGHPUT_PCAP)]):
            info["throughput"]["pcaps"] = phase_pcaps          # --pcap all: the phase's own captures
        speed.attach_all([by_id[c] for c in g.cells if c in by_id], info, scen)
        entry = doc["topologies"].setdefault(name, {})
        entry.update({k: v for k, v in info.items() if k in ("description", "baseline_mbps", "baseline_error",
                                                                 "up_s", "throughput")})
        if model is not None and "diagram" not in entry:
            entry.update(known or {**facts.topology_facts(model, shipped=topo.is_shipped(model)),
                                   **picture_facts(g, model, scen)})
        if model is not None and g.alg:
            entry.setdefault("alg_overrides", {}).update(facts.override_notes(model, {g.alg}))
        for e in (by_id.get(cid) for cid in g.cells):
            if e is not None and model is not None:
                describe_cell(e, model, scen, entry)
    for c in cells:
        if c.id not in by_id:
            by_id[c.id] = never_run(c, scen, lab_errors, models.get(c.topology)) if stop is None else \
                not_run(c, scen, models.get(c.topology))
    doc["scenarios"] = [by_id[c.id] for c in cells]
    for name, model in models.items():
        # after the run: the same recommendation as `ftlab recommend`, from what this run observed
        rec = recommend(model, scen, observed_methods(doc["scenarios"], name))
        doc["topologies"].setdefault(name, {}).update({"recommendation": rec.text(), "recommended": rec.to_dict()})


def describe_cell(e: dict, model, scen: scenario.Scenarios, info: dict) -> None:
    """What the report says of a cell beside its verdict: the statements both ends ran with when a
    variation changed them, and why it differs from its prediction in the words of who predicted it."""
    spec = scen.spec(scenario.parse_cell_id(e["id"]))
    if spec.client_statements or spec.server_statements:
        e["ftpdata"] = facts.cell_ftpdata(model, spec)
    if not e.get("matches") and e.get("outcome") != "error":
        e["why_differs"] = results.why_differs(e, info)
    else:
        e.pop("why_differs", None)


def _model(topology: str):
    """The topology model, or None when a user's file has gone since the run started."""
    try:
        return topo.load(topology)
    except InputError:
        return None


def picture_facts(g: GroupPlan, model, scen: scenario.Scenarios) -> dict:
    """What the report says about a picture beside its cells: the slides' title, slide and
    reasoning (a shipped picture), and the diagram (a PNG data URI)."""
    picture = None if g.user_file else scen.pictures.get(g.name)
    found: dict = {"diagram": facts.diagram_uri(model) if model else None}
    if picture is not None:
        found.update({"title": picture.title or None, "slide": picture.slide or None,
                      "reasoning": picture.reasoning or None})
    elif model is not None:
        found.update({"title": model.description or None})
    return found


def observed_methods(entries: list[dict], topology: str) -> dict[str, str]:
    """{"security/data": outcome} of a network's base cells (no variation) that ran without a lab error."""
    return {f"{e['security']}/{e['data']}": e["outcome"] for e in entries
            if e["topology"] == topology and not e.get("variant") and e["outcome"] in ("pass", "fail")}


def _prediction(cell: scenario.Cell, scen: scenario.Scenarios, model) -> predict.Prediction:
    try:
        return predict.predict(scen, cell, model=model)
    except InputError:       # a user's file that has gone since the run started
        return predict.Prediction("unknown", None, "the topology could not be loaded again to predict it")


def not_run(cell: scenario.Cell, scen: scenario.Scenarios, model=None) -> dict:
    """The entry of a cell that Ctrl-C kept from running (or from ending before the signal)."""
    entry = results.scenario_entry(cell=cell, spec=scen.spec(cell), prediction=_prediction(cell, scen, model),
                                   duration_s=None, verdict=Verdict(NOT_RUN, None, "not run: the run was "
                                                                   "interrupted (Ctrl-C) before this cell ended"))
    entry["not_run"] = True
    entry["matches"] = False
    return entry


def never_run(cell: scenario.Cell, scen: scenario.Scenarios, lab_errors: list[str], model=None) -> dict:
    """The entry of a cell that no worker reported (it died): the lab failed there."""
    pred = _prediction(cell, scen, model)
    why = "; ".join(lab_errors)[:200] or "no report"
    return results.scenario_entry(cell=cell, spec=scen.spec(cell), prediction=pred, duration_s=0.0,
                                  verdict=Verdict("error", None, "lab: the cell was never run (its network's "
                                                                 f"worker failed: {why})"))
