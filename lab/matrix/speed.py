"""The throughput phase of a matrix network: how fast each data-path class moves data, beside
iperf3 on the same path, measured after every verdict of the run and with nothing else running.

    reps = representatives(entries, scen)            # class -> the passing cell that stands for it
    doc = measure(net, topology, reps, "quick", ...)  # in the worker, once the runner gives the turn
    attach(entry, cls, doc)                           # in the runner: every passing cell's figure

A cell's verdict moves a small file; its speed says little (it is over in milliseconds, while other
networks run). What a change board wants is the speed of the *data path* a cell uses, and that
depends on its class: passive or active (who connects, so which NAT/filter state admits it) and
clear or protected data (TLS costs CPU on both ends). So each class with a passing cell is
measured once per network, with the endpoints and statements of its first passing cell:

- time-based, as iperf3 is: RETRs of one file, back to back over one FTP session, for a fixed
  time; MB/s = bytes / seconds of data flow (connection setup and replies excluded, as curl's
  time_total - time_pretransfer);
- iperf3 -R (server -> client, the direction of a RETR) over the same path in the same phase;
- repeated, interleaved (iperf3, class 1, class 2, ..., then again, and iperf3 once more at the
  end), median and min-max; the ratio to iperf3 is the class's median over iperf3's median, with
  the min-max of each class run over the iperf3 runs just before and after it (`ratios`).

Bounded in time: every run of a class has a timeout (Mode.run_timeout), a class all its rounds
(Mode.class_budget), a network its phase (Mode.network_budget) and the run the whole phase
(Mode.run_budget, handed to each network with its turn). A class that timed out is not run again, and
what was cut short or skipped is said, with why, in `notes` (printed by the run, shown in the report).
On a shaped link (a `transfer_seconds` variation) a class's file is sized to the shaper's rate, so a
transfer fits its time: the figures are the shaper's, and the notes say so.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints.throughput import paired
from lab.errors import LabError
from lab.matrix import scenario
from lab.network.baseline import MeasurementTimeout

MiB = 1 << 20
FILE = "throughput.bin"
FILE_SIZE = 32 * MiB       # a transfer is mostly data flow, and the last one runs little past the time
CLASSES = ("passive/clear", "passive/protected", "active/clear", "active/protected")


@dataclass(frozen=True)
class Mode:
    runs: int                # rounds; each measures iperf3 and every class once (iperf3 once more at the end)
    ftp_seconds: float       # how long each class's transfers run per round
    iperf3_seconds: int      # iperf3 -t (whole seconds, at least 1): on a shaped link
    iperf3_bytes: int | None  # iperf3 -n on an unshaped one: a run as short as a class's (None: -t)
    run_timeout: float       # one run of a class or of iperf3, beyond its own length: then it is cut
    class_budget: float      # all the runs of one class (or of iperf3) on one network, together
    network_budget: float    # one network's phase, set-up included
    run_budget: float        # the whole phase of a run, every network's; later networks are skipped

    def iperf3_limit(self, shaped: bool) -> str:
        return f"-t {self.iperf3_seconds}" if shaped or not self.iperf3_bytes else f"-n {self.iperf3_bytes // MiB}M"


#: quick: many short runs rather than few longer ones (issue 20: 3 x 0.4 s with iperf3 -t 1 repeated
#: within a median 29-35 % between two runs; the spread is each run's - a 32 MiB transfer's speed
#: varies 2x from one data connection to the next, with the CPU its flow lands on and the other
#: work of the machine - and a median of more runs, each beside iperf3, is firmer; a first run is
#: no slower than the rest, so no warm-up is spent).
MODES = {"quick": Mode(runs=7, ftp_seconds=0.25, iperf3_seconds=1, iperf3_bytes=192 * MiB, run_timeout=8.0,
                       class_budget=12.0, network_budget=45.0, run_budget=300.0),
         "full": Mode(runs=5, ftp_seconds=2.0, iperf3_seconds=2, iperf3_bytes=None, run_timeout=15.0,
                      class_budget=40.0, network_budget=150.0, run_budget=1800.0)}
CHOICES = ("off", *MODES)


def budget(mode: str) -> float:
    """Seconds one network's throughput phase may take at worst (its budget, and one run's
    timeout past it: a run in progress is not interrupted)."""
    if mode not in MODES:
        return 0.0
    m = MODES[mode]
    return m.network_budget + m.ftp_seconds + m.run_timeout + 30


def run_budget(mode: str) -> float:
    """Seconds the whole throughput phase of a run may take (0: no phase)."""
    return MODES[mode].run_budget if mode in MODES else 0.0


def run_deadline(mode: str, now: float | None = None) -> float:
    """The wall-clock time the run's throughput phase ends at, starting `now` (the first turn)."""
    return (time.time() if now is None else now) + run_budget(mode)


def turn_text(deadline: float) -> str:
    """What the runner writes into a network's GO file: the run's deadline for the phase."""
    return json.dumps({"deadline": deadline})


def turn_deadline(text: str) -> float | None:
    """The deadline a GO file holds (None: none, as written by an older runner)."""
    try:
        value = json.loads(text).get("deadline") if text.strip() else None
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def transfer_file_size(rate_bits: int | None, mode: str) -> int:
    """The size of the file a class downloads: FILE_SIZE, or on a link shaped to `rate_bits`, what
    it carries in half a run's time (at least 64 KiB): one transfer then fits the run."""
    if not rate_bits:
        return FILE_SIZE
    return max(64 * 1024, min(FILE_SIZE, int(rate_bits / 8 * MODES[mode].ftp_seconds / 2)))


#: How long the phase looks at the machine before and after a network measures (nothing of the lab
#: runs then), and the share of the CPUs busy with other work above which the figures are said to be
#: unlikely to repeat.
BUSY_SAMPLE_S = 0.4
BUSY_NOTE = 0.25


def cpu_times(stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat's text (idle and iowait are not busy)."""
    fields = [int(x) for x in stat.split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the CPUs that was busy between two cpu_times readings (None: no time passed)."""
    total = after[1] - before[1]
    return round(max(0.0, min(1.0, (after[0] - before[0]) / total)), 2) if total > 0 else None


def machine_busy(seconds: float = BUSY_SAMPLE_S, read: Callable[[], str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> float | None:
    """The share of the machine's CPUs busy over `seconds` while the lab itself is idle: other work,
    which the figures measured next to it share the CPUs with. None: /proc/stat is not readable."""
    read = read or (lambda: Path("/proc/stat").read_text())
    try:
        first = cpu_times(read())
        sleep(seconds)
        return busy_share(first, cpu_times(read()))
    except (OSError, ValueError, IndexError):
        return None


def busy_note(before: float | None, after: float | None) -> str | None:
    """The note when other work kept the CPUs busy around a network's measurement."""
    seen = [x for x in (before, after) if x is not None]
    if not seen or max(seen) <= BUSY_NOTE:
        return None
    return (f"other work kept {max(seen):.0%} of the machine's CPUs busy around this network's measurement "
            "(before/after it, the lab idle): its figures may not repeat")


def data_class(cell: scenario.Cell, spec: scenario.CellSpec) -> str:
    """passive|active / clear|protected: who opens the data connection, and whether it is TLS."""
    where = "passive" if cell.data in ("pasv", "epsv") else "active"
    clear = cell.security == "plain" or str(spec.client_statements.get("SECURE_DATACONN") or "").upper() == "CLEAR"
    return f"{where}/{'clear' if clear else 'protected'}"


def representatives(entries: list[dict], scen: scenario.Scenarios) -> dict[str, tuple]:
    """Per class, the first passing cell with the built-in client and server: (cell, spec)."""
    reps: dict[str, tuple] = {}
    for e in entries:
        if e.get("outcome") != "pass":
            continue
        cell = scenario.parse_cell_id(e["id"])
        spec = scen.spec(cell)
        if spec.client != "builtin" or spec.server != "builtin":
            continue
        reps.setdefault(data_class(cell, spec), (cell, spec))
    return {c: reps[c] for c in CLASSES if c in reps}


def method(mode: str, file_size: int = FILE_SIZE, shaped: bool = False) -> str:
    m = MODES[mode]
    size = f"{file_size // MiB} MiB" if file_size >= MiB else f"{file_size // 1024} KiB"
    return (f"per data-path class, RETRs of a {size} file back to back over one FTP session "
            f"for {m.ftp_seconds:g} s (MB/s of data flow), beside iperf3 -R {m.iperf3_limit(shaped)} on the same "
            f"path; {m.runs} interleaved rounds and a closing iperf3 run, median and min-max; the ratio: the "
            "class's median over iperf3's (min-max: each run over the iperf3 runs beside it); measured after "
            "all verdicts, one network at a time, nothing else running")


def stats(values: list[float]) -> dict:
    good = [v for v in values if v > 0]
    if not good:
        return {"mbps": None, "min": None, "max": None, "runs": values}
    return {"mbps": round(statistics.median(good), 1), "min": round(min(good), 1), "max": round(max(good), 1),
            "runs": [round(v, 1) for v in values]}


def bracketed(num: list[float], den: list[float]) -> tuple[float, float, float] | None:
    """Run i of a class over the iperf3 runs just before and after it (den[i] and den[i + 1], the
    geometric mean of those that worked: den has one run more, the closing one), as (median, min,
    max). With as many den runs as num runs, the last is paired with den[i] alone. None: no pair."""
    each = []
    for i, n in enumerate(num):
        near = [d for d in den[i:i + 2] if d > 0]
        if n > 0 and near:
            each.append(n / statistics.geometric_mean(near))
    if not each:
        return None
    return statistics.median(each), min(each), max(each)


def ratios(num: list[float], den: list[float]) -> dict:
    """The ratio to iperf3 and its min-max. With a closing iperf3 run (den one longer: the phase's
    rounds), the ratio is the class's median over iperf3's median - both of runs interleaved in the
    same minutes - and min-max is the range of each run over the iperf3 runs beside it (bracketed).
    Measured here: one iperf3 run is one connection, and its speed varies up to 2x with the CPU its
    flow lands on, on a quiet machine too, while a class's run averages a dozen transfers; so a
    run's own ratio carries iperf3's single-connection noise, and the median of each side does not
    (two quiet runs of lan: 1-8 % apart against 10-20 % for the median of per-run ratios).
    Otherwise the median of the runs' own ratios (paired run by run)."""
    if len(den) > len(num):
        good_num, good_den, spread = [v for v in num if v > 0], [v for v in den if v > 0], bracketed(num, den)
        if not good_num or not good_den or spread is None:
            return {"ratio": None, "ratio_min": None, "ratio_max": None}
        got = (statistics.median(good_num) / statistics.median(good_den), spread[1], spread[2])
    else:
        got = paired(num, den)
    if got is None:
        return {"ratio": None, "ratio_min": None, "ratio_max": None}
    return dict(zip(("ratio", "ratio_min", "ratio_max"), (round(v, 3) for v in got), strict=True))


def write_file(root: Path, shared: Path, size: int = FILE_SIZE) -> str:
    """The file the classes download, in the server's root: random bytes (nothing on the path may
    compress them), written once per run at `shared` and linked into each network's root."""
    if not shared.exists() or shared.stat().st_size != size:
        part = shared.with_suffix(".part")
        with open(part, "wb") as f:
            left = size
            while left:
                f.write(os.urandom(min(MiB, left)))
                left -= min(MiB, left)
        part.replace(shared)
    (root / FILE).unlink(missing_ok=True)
    os.link(shared, root / FILE)
    return FILE


def measure(rounds: int, runners: dict, *, closing: str | None = None, class_budget: float | None = None,
            deadline: float | None = None, why_deadline: str = "the network's time budget was spent",
            clock: Callable[[], float] = time.monotonic) -> dict:
    """`rounds` rounds, each calling every runner once in order (interleaved: drift in the machine's
    load hits all of them alike), then `closing` (a runner's name: iperf3) once more, so that every
    class run has one before and one after it. Runners return MB/s or raise LabError; a failed run
    counts 0.0 and its first error is kept.

    Bounded: a runner that raised MeasurementTimeout is not called again, nor one whose runs took
    `class_budget` seconds together, and nothing starts after `deadline` (clock() time). Each cut
    or skip is a line in `notes` {runner: why}; its runs are the ones made."""
    runs: dict[str, list[float]] = {name: [] for name in runners}
    errors: dict[str, str] = {}
    notes: dict[str, str] = {}
    spent = dict.fromkeys(runners, 0.0)
    order = [name for _ in range(rounds) for name in runners] + ([closing] if closing in runners else [])
    total = {name: order.count(name) for name in runners}
    for name in order:
        if name in notes:
            continue
        done = len(runs[name])
        if deadline is not None and clock() >= deadline:
            for other in runners:
                if other not in notes and len(runs[other]) < total[other]:
                    notes[other] = _cut(len(runs[other]), total[other], why_deadline)
            break
        if class_budget is not None and spent[name] >= class_budget:
            notes[name] = _cut(done, total[name], f"its runs took their budget of {class_budget:g} s")
            continue
        started = clock()
        try:
            runs[name].append(float(runners[name]()))
        except MeasurementTimeout as exc:
            runs[name].append(0.0)
            errors.setdefault(name, str(exc)[:300])
            notes[name] = _cut(done + 1, total[name], f"run {done + 1} timed out ({str(exc)[:200]})")
        except LabError as exc:
            runs[name].append(0.0)
            errors.setdefault(name, str(exc)[:300])
        spent[name] += clock() - started
    return {"runs": runs, "errors": errors, "notes": notes}


def _cut(done: int, total: int, why: str) -> str:
    if done == 0:
        return f"skipped: {why}"
    return f"cut short after {done} of {total} runs: {why}"


def summary(mode: str, measured: dict, reps: dict[str, tuple], started: float, *, file_size: int = FILE_SIZE,
            shaped: int | None = None, baseline: dict | None = None) -> dict:
    """The phase's document for one network (topology.json's `throughput`). `measured["pairs"]`
    {class: the iperf3 runs measured beside it} when the classes were measured in groups (one per
    FTP server), else every class beside `runs["iperf3"]`. `baseline`: which iperf3 baseline was
    measured, and how (port, why that port); `notes`: what was cut short or skipped, and why."""
    base = measured["runs"].get("iperf3") or []
    pairs = measured.get("pairs") or {}
    notes = {k: v for k, v in (measured.get("notes") or {}).items()}
    busy = measured.get("busy") or {}
    if note := busy_note(busy.get("before"), busy.get("after")):
        notes["busy"] = note
    if shaped:
        notes.setdefault("shaped", f"the server's link is shaped to {shaped / 1e6:.3g} Mbit/s (a timing variation): "
                                   "the figures are the shaper's, not the path's")
    doc = {"mode": mode, "method": method(mode, file_size, bool(shaped)), "iperf3": stats(base), "classes": {},
           "errors": measured["errors"], "notes": notes, "baseline": baseline,
           "machine_busy": {"before": busy.get("before"), "after": busy.get("after")},
           "duration_s": round(time.monotonic() - started, 2)}
    for cls, (cell, _spec) in reps.items():
        runs = measured["runs"].get(cls)
        if runs is None:
            continue
        doc["classes"][cls] = {"cell": cell.id, **stats(runs), **ratios(runs, pairs.get(cls, base))}
    return doc


def skipped(mode: str, why: str, reps: dict[str, tuple], started: float) -> dict:
    """The document of a network whose phase did not run at all (the run's budget was spent)."""
    return {"mode": mode, "method": method(mode), "iperf3": stats([]), "classes": {}, "errors": {},
            "notes": {"phase": f"skipped: {why}", **{cls: f"skipped: {why}" for cls in reps}},
            "baseline": None, "duration_s": round(time.monotonic() - started, 2)}


def note_lines(name: str, doc: dict | None) -> list[str]:
    """The lines a run prints about one network's phase: each cut, skip and missing baseline."""
    if not doc:
        return []
    lines = [f"throughput {name}: {what}: {why}" for what, why in (doc.get("notes") or {}).items()]
    base = doc.get("baseline") or {}
    if base.get("note"):
        lines.append(f"throughput {name}: iperf3: {base['note']}")
    return lines


def attach(entry: dict, cls: str, doc: dict) -> None:
    """A passing cell's throughput: its class's figure, with spread and method."""
    figure = (doc.get("classes") or {}).get(cls)
    if not figure or figure.get("mbps") is None:
        return
    base = doc.get("iperf3") or {}
    entry["throughput"] = {"class": cls, "measured_with": figure["cell"], "mbps": figure["mbps"],
                           "min": figure["min"], "max": figure["max"], "ratio": figure["ratio"],
                           "ratio_min": figure["ratio_min"], "ratio_max": figure["ratio_max"],
                           "iperf3_mbps": base.get("mbps"), "iperf3_min": base.get("min"),
                           "iperf3_max": base.get("max"), "method": doc.get("method")}
    entry["throughput_mbps"] = figure["mbps"]
    entry["baseline_mbps"] = base.get("mbps")
    entry["ratio"] = figure["ratio"]


def attach_all(entries: list[dict], info: dict, scen: scenario.Scenarios) -> None:
    """Every passing cell of a network gets its class's figure; the network its iperf3 median."""
    doc = info.get("throughput")
    if not doc:
        return
    info["baseline_mbps"] = (doc.get("iperf3") or {}).get("mbps")
    for e in entries:
        if e.get("outcome") == "pass":
            cell = scenario.parse_cell_id(e["id"])
            attach(e, data_class(cell, scen.spec(cell)), doc)


def quiet(doc: dict, topology: str) -> bool:
    """Was the machine quiet around this network's measurement (machine_busy at most BUSY_NOTE
    before and after it)? False when it was busy or not recorded."""
    busy = (((doc.get("topologies") or {}).get(topology) or {}).get("throughput") or {}).get("machine_busy") or {}
    seen = [v for v in busy.values() if isinstance(v, int | float)]
    return bool(seen) and max(seen) <= BUSY_NOTE


def agreement(first: dict, second: dict, only_quiet: bool = False) -> dict:
    """How well two runs of the same cells agree: the median (and the worst) over the cells both
    measured of |r1/r2 - 1|, for the class figure (MB/s) and for the ratio to iperf3; `quiet`: the
    same over the cells whose network measured on a quiet machine in both runs (other work moves
    the FTP classes more than iperf3, so neither figure can repeat across a busy spell)."""
    a = {s["id"]: s for s in first["scenarios"] if s.get("throughput")}
    b = {s["id"]: s for s in second["scenarios"] if s.get("throughput")}
    common = sorted(set(a) & set(b))
    if only_quiet:
        common = [i for i in common if quiet(first, a[i].get("topology") or i.split("/")[0])
                  and quiet(second, b[i].get("topology") or i.split("/")[0])]

    def median_dev(key: str) -> float | None:
        devs = [abs(a[i]["throughput"][key] / b[i]["throughput"][key] - 1) for i in common
                if a[i]["throughput"].get(key) and b[i]["throughput"].get(key)]
        return round(statistics.median(devs), 3) if devs else None

    def worst_dev(key: str) -> float | None:
        devs = [abs(a[i]["throughput"][key] / b[i]["throughput"][key] - 1) for i in common
                if a[i]["throughput"].get(key) and b[i]["throughput"].get(key)]
        return round(max(devs), 3) if devs else None

    got = {"cells": len(common), "mbps_median_deviation": median_dev("mbps"),
           "ratio_median_deviation": median_dev("ratio"), "mbps_worst_deviation": worst_dev("mbps"),
           "ratio_worst_deviation": worst_dev("ratio")}
    if not only_quiet:
        got["quiet"] = agreement(first, second, only_quiet=True)
    return got


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.matrix.speed RUN1 RUN2`: how well two runs' throughput figures agree."""
    import json
    import sys

    from lab.report import results

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m lab.matrix.speed RUN1 RUN2 (report folders or results.json)", file=sys.stderr)
        return 2
    print(json.dumps(agreement(results.load(args[0]), results.load(args[1])), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
