"""results.json: the contract between a matrix run, its report writers, CI and later runs.

A run document is a plain dict (what json.load gives back), so writers, merge and baseline work
the same on a fresh run and on a file from last week. The schema is reports/results.schema.json
(documented in reports/README.md); `validate()` checks a document against it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab import REPORT_DIR
from lab.errors import InputError, Problem, read_input

SCHEMA = "ftlab.results/1"
SCHEMA_FILE = REPORT_DIR / "results.schema.json"
#: "not-run": a cell an interrupted run (Ctrl-C) did not run, or that had not ended at the signal
#: (`not_run: true`, and the document says `interrupted`): neither a verdict nor a lab error.
OUTCOMES = ("pass", "fail", "error", "not-run")

#: Every scenario carries at least these keys (values may be null where not measured).
REQUIRED = ("id", "topology", "security", "data", "variant", "client", "server", "expected", "outcome",
            "matches", "stage", "reason", "bytes", "sha256_ok", "throughput_mbps", "baseline_mbps", "ratio",
            "duration_s")


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat(timespec="seconds")


def new_run_id(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y%m%d-%H%M%S")


def new_run(run_id: str | None = None, started: float | None = None, **extra) -> dict:
    started = started if started is not None else time.time()
    return {"schema": SCHEMA, "run_id": run_id or new_run_id(started), "started": now_iso(started),
            "finished": None, "host": socket.gethostname(), "scenarios": [], "topologies": {}, **extra}


def scenario_entry(*, cell, spec, prediction, verdict, bytes: int | None = None, sha256_ok: bool | None = None,
                   throughput_mbps: float | None = None, baseline_mbps: float | None = None,
                   duration_s: float | None = None, **extra) -> dict:
    """One scenario's result; `matches`: outcome, stage and deciding device as predicted (agrees)."""
    ratio = round(throughput_mbps / baseline_mbps, 4) if throughput_mbps and baseline_mbps else None
    return {
        "id": cell.id, "topology": cell.topology, "security": cell.security, "data": cell.data,
        "variant": cell.variant, "client": spec.client, "server": spec.server,
        "expected": prediction.outcome, "expected_stage": prediction.stage,
        "expected_reason": prediction.reason, "expected_device": prediction.device,
        "outcome": verdict.outcome, "stage": verdict.stage, "device": getattr(verdict, "device", None),
        "matches": agrees(prediction.outcome, prediction.stage, prediction.device,
                          verdict.outcome, verdict.stage, getattr(verdict, "device", None)),
        "reason": verdict.reason, "code": verdict.code,
        "bytes": bytes, "sha256_ok": sha256_ok, "throughput_mbps": throughput_mbps,
        "baseline_mbps": baseline_mbps, "ratio": ratio,
        "duration_s": round(duration_s, 3) if duration_s is not None else None, **extra}


def is_not_run(s: dict) -> bool:
    """A cell an interrupted run did not run: outcome "not-run", or `not_run` in a document written
    while the report did not know that outcome (its outcome was then "error")."""
    return s.get("outcome") == "not-run" or bool(s.get("not_run"))


def agrees(expected: str, expected_stage: str | None, expected_device: str | None,
           outcome: str, stage: str | None, device: str | None) -> bool:
    """A cell is as predicted when its outcome, and for a failure the stage and the node that
    decided, are the prediction's (a lab error never is; nor a cell the model could not predict)."""
    if outcome != expected or outcome == "error":
        return False
    return outcome == "pass" or (stage, device) == (expected_stage, expected_device)


# -- who predicted ----------------------------------------------------------------------------------

def predicted_by(info: dict | None) -> str:
    """Who predicts a network's cells, as the report says it: "the slides" for their own pictures (and
    in documents from before this was recorded), "the lab's model" for any other network."""
    return str((info or {}).get("predicted_by") or "the slides")


def predicts(info: dict | None) -> str:
    """"the slides predict" / "the lab's model predicts"."""
    who = predicted_by(info)
    return f"{who} {'predict' if who == 'the slides' else 'predicts'}"


def prediction_source(doc: dict) -> str:
    """Whose prediction a run's cells are compared with, for its summary line."""
    info = doc.get("topologies") or {}
    who = {predicted_by(info.get(s["topology"])) for s in doc["scenarios"]}
    if who == {"the slides"}:
        return "the slides' prediction"
    if who == {"the lab's model"}:
        return "the lab's model's prediction"
    return "their prediction (the slides' for the slides' pictures, the lab's model's for the others)"


def why_differs(s: dict, info: dict | None) -> str:
    """One line: what was predicted for a cell (and by whom), and what was observed instead."""
    def where(stage, device) -> str:
        return (f" at {stage}" if stage else "") + (f" ({device})" if device else "")

    expected = f"{s['expected']}{where(s.get('expected_stage'), s.get('expected_device'))}"
    observed = f"{s['outcome']}{where(s.get('stage'), s.get('device') or (s.get('drop') or {}).get('device'))}"
    return f"{predicts(info)} {expected} ({s.get('expected_reason')}); observed {observed}: {s.get('reason')}"


def shipped_only(doc: dict) -> dict:
    """The document narrowed to the cells of the shipped pictures: the slides' claims are about
    those, not about an engineer's network that happens to share a name."""
    info = doc.get("topologies") or {}
    keep = [s for s in doc["scenarios"] if (info.get(s["topology"]) or {}).get("shipped", True)]
    return {**doc, "scenarios": keep}


# -- files -------------------------------------------------------------------------------------------

def results_path(path: str | Path) -> Path:
    p = Path(path)
    return p / "results.json" if p.is_dir() else p


#: A results.json nests about six levels (scenarios[i].events[j].detail); numbers are counts,
#: bytes, seconds: none has more than a few digits.
MAX_JSON_DEPTH = 64
MAX_DIGITS = 30
#: A 160-cell run with transcripts is a few MiB; a full one with --variants all stays well below.
MAX_RESULTS_BYTES = 64 * 1024 * 1024


def load(path: str | Path, check: bool = True) -> dict:
    """Read a results.json (or a report folder holding one); InputError when it is not one."""
    p = results_path(path)
    doc = read_json(read_input(p, "results.json", MAX_RESULTS_BYTES), str(p))
    if not isinstance(doc, dict) or ("schema" not in doc and "scenarios" not in doc):
        raise InputError([Problem(str(p), 1, "", f"not a results.json of ftlab (no \"schema\": \"{SCHEMA}\")")])
    if check:
        problems = validate(doc)
        if problems:
            raise InputError([Problem(str(p), 0, where, msg) for where, msg in problems])
    return doc


def read_json(text: str, file: str) -> object:
    """JSON from a file that may be hostile: nested at most MAX_JSON_DEPTH deep, numbers of at most
    MAX_DIGITS digits; else an InputError at the line where it goes wrong."""
    too_deep = _depth_exceeded(text, MAX_JSON_DEPTH)
    if too_deep is not None:
        raise InputError([Problem(file, _line_at(text, too_deep), "", f"nested deeper than {MAX_JSON_DEPTH} levels")])
    long_numbers: list[str] = []

    def number(digits: str, kind: type = int) -> int | float:
        if len(digits) > MAX_DIGITS:
            long_numbers.append(digits)
            raise ValueError(digits[:10])
        return kind(digits)

    try:
        return json.loads(text, parse_int=number, parse_float=lambda digits: number(digits, float))
    except json.JSONDecodeError as exc:
        raise InputError([Problem(file, exc.lineno, "", f"not JSON: {exc.msg}")]) from None
    except ValueError:
        if not long_numbers:
            raise
        digits = long_numbers[0]
        raise InputError([Problem(file, _line_at(text, text.find(digits)), "",
                                  f"a number of {len(digits)} characters; at most {MAX_DIGITS} make sense here")]) \
            from None


def _depth_exceeded(text: str, limit: int) -> int | None:
    """The offset where JSON text nests deeper than `limit` (brackets inside strings do not count)."""
    depth, in_string, escaped = 0, False, False
    for i, c in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > limit:
                return i
        elif c in "]}":
            depth -= 1
    return None


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _path_fields(doc: dict):
    """(holder, key) of every file path a document names: the scenario file, each network's
    source, each device's ruleset file. These are relative to the report folder in a written
    results.json (no absolute machine path in a report that travels)."""
    yield doc, "scenario_file"
    for info in (doc.get("topologies") or {}).values():
        if not isinstance(info, dict):
            continue
        yield info, "source"
        for dev in info.get("devices") or []:
            if isinstance(dev, dict) and isinstance(dev.get("ruleset"), dict):
                yield dev["ruleset"], "file"


def relative_paths(doc: dict, folder: str | Path) -> dict:
    """The document with its file paths relative to `folder` (the report folder it is written to)."""
    base = Path(folder).resolve()
    for holder, key in _path_fields(doc):
        value = holder.get(key)
        if isinstance(value, str) and value and Path(value).is_absolute():
            holder[key] = os.path.relpath(value, base)
    return doc


def absolute_paths(doc: dict, folder: str | Path) -> dict:
    """The document read from `folder` with its relative file paths made absolute again (merge
    writes them relative to another folder)."""
    base = Path(folder).resolve()
    for holder, key in _path_fields(doc):
        value = holder.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            holder[key] = os.path.normpath(base / value)
    return doc


def write(doc: dict, out_dir: str | Path) -> Path:
    """results.json into out_dir; its file paths made relative to out_dir (in `doc` too)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    relative_paths(doc, out)
    path = out / "results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


def validate(doc: dict) -> list[tuple[str, str]]:
    """Problems of a document against the JSON schema: [(json path, message)], empty when valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    return [("/".join(str(p) for p in err.absolute_path) or "(top)", err.message)
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


# -- judging a run -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    id: str
    before: str | None      # outcome in the baseline (None: cell not in the baseline)
    after: str | None       # outcome now (None: cell not run now)

    def __str__(self) -> str:
        return f"{self.id}: {self.before or 'absent'} -> {self.after or 'absent'}"


def baseline_changes(doc: dict, baseline: dict) -> list[Change]:
    """Every cell whose outcome differs from the baseline run's (cells run in both: a cell that
    either run did not run, after Ctrl-C, is no change)."""
    before = {s["id"]: s["outcome"] for s in baseline["scenarios"] if not is_not_run(s)}
    return [Change(s["id"], before[s["id"]], s["outcome"])
            for s in doc["scenarios"] if s["id"] in before and not is_not_run(s) and before[s["id"]] != s["outcome"]]


def counts(doc: dict) -> dict:
    """How many cells, per outcome (`error`: lab errors only; `not_run`: cells an interrupted run
    did not run), as predicted, not predictable."""
    sc = doc["scenarios"]
    return {"cells": len(sc), "pass": sum(s["outcome"] == "pass" for s in sc),
            "fail": sum(s["outcome"] == "fail" for s in sc),
            "error": sum(s["outcome"] == "error" and not is_not_run(s) for s in sc),
            "not_run": sum(is_not_run(s) for s in sc),
            "matches": sum(bool(s["matches"]) for s in sc),
            "unpredicted": sum(s.get("expected") == "unknown" for s in sc)}


def exit_code(doc: dict, baseline: dict | None = None) -> int:
    """0: everything as predicted (or, with --baseline / --expect, as in the baseline and as the
    expectations file states); 1: some cell differs; 3: the lab failed somewhere, or cells were not
    run and every cell that ran is as it should be. A cell the model could not predict (expected
    "unknown") counts against nothing but an expectation.

    Not-run cells (an interrupted run) decide nothing: a document that has them is never 0 - a
    verdict over cells that did not run is not green - but a cell that ran and differs still gives
    1. The runner itself exits 130 after Ctrl-C (lab.matrix.cli) before this is asked; this is the
    answer for a document read back (`ftlab report merge`, a --baseline run)."""
    cells = [s for s in doc["scenarios"] if not is_not_run(s)]
    if any(s["outcome"] == "error" for s in cells) or doc.get("lab_errors"):
        return 3
    if baseline is not None or doc.get("expect_file"):
        changed = baseline is not None and bool(baseline_changes(doc, baseline))
        unmet = any(s.get("expect_met") is False for s in cells)
        differs = changed or unmet
    else:
        differs = not all(s["matches"] or s.get("expected") == "unknown" for s in cells)
    if differs:
        return 1
    return 3 if len(cells) < len(doc["scenarios"]) else 0
