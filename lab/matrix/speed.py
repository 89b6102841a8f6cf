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
- repeated, interleaved (iperf3, class 1, class 2, ..., then again), median and min-max; the ratio
  to iperf3 is the median of each round's ratio, with its min-max.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints.throughput import paired
from lab.errors import LabError
from lab.matrix import scenario

MiB = 1 << 20
FILE = "throughput.bin"
FILE_SIZE = 32 * MiB       # a transfer is mostly data flow, and the last one runs little past the time
CLASSES = ("passive/clear", "passive/protected", "active/clear", "active/protected")


@dataclass(frozen=True)
class Mode:
    runs: int                # rounds; each measures iperf3 and every class once
    ftp_seconds: float       # how long each class's transfers run per round
    iperf3_seconds: int      # iperf3 -t (whole seconds, at least 1)


MODES = {"quick": Mode(runs=3, ftp_seconds=0.4, iperf3_seconds=1),
         "full": Mode(runs=5, ftp_seconds=2.0, iperf3_seconds=2)}
CHOICES = ("off", *MODES)


def budget(mode: str) -> float:
    """Seconds one network's throughput phase may take at worst (four classes, each run timing out)."""
    if mode not in MODES:
        return 0.0
    m = MODES[mode]
    return 60 + m.runs * (m.iperf3_seconds + 20 + len(CLASSES) * (m.ftp_seconds + 30))


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


def method(mode: str) -> str:
    m = MODES[mode]
    return (f"per data-path class, RETRs of a {FILE_SIZE // MiB} MiB file back to back over one FTP session "
            f"for {m.ftp_seconds:g} s (MB/s of data flow), beside iperf3 -R -t {m.iperf3_seconds} on the same "
            f"path; {m.runs} interleaved rounds, median and min-max; measured after all verdicts, one network "
            "at a time, nothing else running")


def stats(values: list[float]) -> dict:
    good = [v for v in values if v > 0]
    if not good:
        return {"mbps": None, "min": None, "max": None, "runs": values}
    return {"mbps": round(statistics.median(good), 1), "min": round(min(good), 1), "max": round(max(good), 1),
            "runs": [round(v, 1) for v in values]}


def ratios(num: list[float], den: list[float]) -> dict:
    """The ratio of each round (measured side by side), its median and min-max."""
    got = paired(num, den)
    if got is None:
        return {"ratio": None, "ratio_min": None, "ratio_max": None}
    return dict(zip(("ratio", "ratio_min", "ratio_max"), (round(v, 3) for v in got), strict=True))


def write_file(root: Path, shared: Path) -> str:
    """The file the classes download, in the server's root: random bytes (nothing on the path may
    compress them), written once per run at `shared` and linked into each network's root."""
    if not shared.exists() or shared.stat().st_size != FILE_SIZE:
        part = shared.with_suffix(".part")
        with open(part, "wb") as f:
            for _ in range(FILE_SIZE // MiB):
                f.write(os.urandom(MiB))
        part.replace(shared)
    (root / FILE).unlink(missing_ok=True)
    os.link(shared, root / FILE)
    return FILE


def measure(rounds: int, runners: dict) -> dict:
    """`rounds` rounds, each calling every runner once in order (interleaved: drift in the machine's
    load hits all of them alike). Runners return MB/s or raise LabError; a failed run counts 0.0
    and its first error is kept."""
    runs: dict[str, list[float]] = {name: [] for name in runners}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for name, run in runners.items():
            try:
                runs[name].append(run())
            except LabError as exc:
                runs[name].append(0.0)
                errors.setdefault(name, str(exc)[:300])
    return {"runs": runs, "errors": errors}


def summary(mode: str, measured: dict, reps: dict[str, tuple], started: float) -> dict:
    """The phase's document for one network (topology.json's `throughput`)."""
    base = measured["runs"]["iperf3"]
    doc = {"mode": mode, "method": method(mode), "iperf3": stats(base), "classes": {},
           "errors": measured["errors"], "duration_s": round(time.monotonic() - started, 2)}
    for cls, (cell, _spec) in reps.items():
        runs = measured["runs"][cls]
        doc["classes"][cls] = {"cell": cell.id, **stats(runs), **ratios(runs, base)}
    return doc


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


def agreement(first: dict, second: dict) -> dict:
    """How well two runs of the same cells agree: the median over the cells both measured of
    |r1/r2 - 1|, for the class figure (MB/s) and for the ratio to iperf3."""
    a = {s["id"]: s for s in first["scenarios"] if s.get("throughput")}
    b = {s["id"]: s for s in second["scenarios"] if s.get("throughput")}
    common = sorted(set(a) & set(b))

    def median_dev(key: str) -> float | None:
        devs = [abs(a[i]["throughput"][key] / b[i]["throughput"][key] - 1) for i in common
                if a[i]["throughput"].get(key) and b[i]["throughput"].get(key)]
        return round(statistics.median(devs), 3) if devs else None

    return {"cells": len(common), "mbps_median_deviation": median_dev("mbps"),
            "ratio_median_deviation": median_dev("ratio")}


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
