"""index.html: one self-contained page for a person (no scripts, no external files except pcaps).

The matrix as predicted versus observed; per network its own diagram, what works there, its devices
as the lab programmed them (settings, kernel rules, a ruleset file as written, ALG modes and what
each override did), the FTP.DATA statements of both ends and - for the slides' pictures - the
slides' reasoning; per cell the details: verdict, transcript, the device events, what each firewall
saw of the control channel (a cleartext `227 Entering Passive Mode` versus TLS ciphertext) and its
pcaps. A prediction is "the slides'" only for the slides' own pictures; any other network's cells
are compared with the lab's model.

The page is made from the results document alone (and a baseline run's document), through the
Jinja2 templates in templates/ with autoescape on: transcripts, reasons and rule lines are
hostile input - a server can echo anything a client sends - and render as text, never as markup.
What this module adds is the arrangement: the matrix's rows and columns, the claims, the links.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from lab.report import wire
from lab.report.claims import check
from lab.report.grid import column_of, row_of, rows_and_columns
from lab.report.results import baseline_changes, counts, is_not_run, prediction_source, predicts, shipped_only
from lab.report.works import works_here

TEMPLATES = Path(__file__).with_name("templates")
SYMBOL = {"pass": "✔", "fail": "✘", "error": "⚠", "not-run": "○"}
DIAGRAM_PREFIX = "data:image/png;base64,"
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")


def anchor(cell_id: str) -> str:
    return "cell-" + re.sub(r"[^A-Za-z0-9_-]", "_", cell_id)


def matrix(doc: dict) -> dict:
    """The matrix table: security modes over their data modes, one row per picture (+ variant)."""
    rows, cols = rows_and_columns(doc)
    by_place = {(row_of(s), column_of(s)): s for s in doc["scenarios"]}
    topology = {row_of(s): s["topology"] for s in doc["scenarios"]}
    securities = list(dict.fromkeys(sec for sec, _ in cols))
    return {"securities": [(sec, sum(1 for c in cols if c[0] == sec)) for sec in securities],
            "columns": cols,
            "rows": [{"label": r, "topology": topology[r], "cells": [by_place.get((r, c)) for c in cols]}
                     for r in rows]}


def claims(doc: dict) -> list[dict]:
    """The slides' claims the run decided, or could not decide because of lab errors or cells an
    interrupted run did not run (on the shipped pictures only: an engineer's network named like one
    is not the slides' picture)."""
    skipped = {s["id"] for s in doc["scenarios"] if is_not_run(s)}
    out = []
    for claim, holds, ids in check(shipped_only(doc)):
        if holds is None and not ids:
            continue                                    # not in this run
        if holds is None:
            status = "not run" if set(ids) <= skipped else "undecided"
        else:
            status = "holds" if holds else "fails"
        out.append({"text": claim.text, "status": status, "cells": ids})
    return out


def cell_fields(s: dict) -> list[tuple[str, object]]:
    """The facts of one cell, for its table (those that are known)."""
    fields = [("observed", f"{s['outcome']} ({s.get('stage') or '-'})"), ("reason", s["reason"]),
              ("predicted", f"{s['expected']} ({s.get('expected_stage') or '-'})"),
              ("prediction's reason", s.get("expected_reason")), ("why it differs", s.get("why_differs")),
              ("client / server", f"{s['client']} / {s['server']}"), ("ALG", s.get("alg")),
              ("bytes", s["bytes"]), ("SHA-256 ok", s["sha256_ok"]),
              *throughput_fields(s), ("duration s", s["duration_s"]),
              ("baseline run's outcome", s.get("baseline_outcome"))]
    return [(k, v) for k, v in fields if v is not None]


def throughput_fields(s: dict) -> list[tuple[str, object]]:
    """A passing cell's throughput: its data-path class's figure with its spread, beside iperf3
    (the matrix's throughput phase), or the bare figures of an older results.json."""
    t = s.get("throughput")
    if not isinstance(t, dict) or t.get("mbps") is None:
        return [("throughput MB/s", s["throughput_mbps"]), ("iperf3 baseline MB/s", s["baseline_mbps"]),
                ("ratio", s["ratio"])]
    return [("throughput MB/s", f"{_spread(t, 'mbps', 'min', 'max', '.0f')}: the {t.get('class')} class, "
                                f"measured with {t.get('measured_with')}"),
            ("iperf3 MB/s (same path, same phase)", _spread(t, "iperf3_mbps", "iperf3_min", "iperf3_max", ".0f")),
            ("ratio to iperf3", _spread(t, "ratio", "ratio_min", "ratio_max", ".2f")),
            ("how measured", t.get("method"))]


def _spread(d: dict, mid: str, lo: str, hi: str, fmt: str) -> str | None:
    """`median (min-max)`."""
    if not isinstance(d.get(mid), int | float):
        return None
    text = format(d[mid], fmt)
    if isinstance(d.get(lo), int | float) and isinstance(d.get(hi), int | float):
        text += f" ({format(d[lo], fmt)}-{format(d[hi], fmt)})"
    return text


def throughput_table(info: dict) -> dict | None:
    """A picture's throughput phase as rows: iperf3, then each class (None: not measured)."""
    t = info.get("throughput")
    if not isinstance(t, dict) or not isinstance(t.get("classes"), dict):
        return None
    rows = [{"what": "iperf3 -R", "mbps": _spread(t.get("iperf3") or {}, "mbps", "min", "max", ".0f"),
             "ratio": "", "cell": ""}]
    rows += [{"what": cls, "mbps": _spread(f, "mbps", "min", "max", ".0f"),
              "ratio": _spread(f, "ratio", "ratio_min", "ratio_max", ".2f"), "cell": f.get("cell")}
             for cls, f in t["classes"].items() if isinstance(f, dict)]
    busy = t.get("machine_busy") or {}
    busy_text = ", ".join(f"{when} {round(100 * v)} %" for when, v in busy.items() if isinstance(v, int | float))
    return {"rows": rows, "method": t.get("method"), "errors": t.get("errors") or {},
            "notes": {k: v for k, v in (t.get("notes") or {}).items() if v},
            "baseline": t.get("baseline"), "busy": busy_text}


def conn_view(view: dict | None, first: str, second: str) -> str:
    """One view of a recorded connection, `a:p -> b:q` (`?` where that side does not know it)."""
    if not isinstance(view, dict):
        return "?"

    def end(e) -> str:
        if not isinstance(e, list) or len(e) != 2 or e[0] is None:
            return "?"
        port = "*" if e[1] is None else e[1]
        return f"[{e[0]}]:{port}" if ":" in str(e[0]) else f"{e[0]}:{port}"
    return f"{end(view.get(first))} -> {end(view.get(second))}"


def event_fields(ev: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("ts", "device", "type"))


def pcaps(s: dict) -> list[str]:
    """The cell's captures: paths inside the report folder only (a link is never a URL)."""
    return [p for p in s.get("pcaps") or [] if isinstance(p, str) and p.startswith("pcaps/")
            and ".." not in Path(p).parts and ":" not in p]


def is_v6(s: dict) -> bool:
    """A cell run over IPv6 (the `+v6` variation)."""
    return "v6" in str(s.get("variant") or "").split("+")


def diagram(info: dict, key: str = "diagram") -> str | None:
    """The picture's diagram (key "diagram_v6": its IPv6 plan's), if the document holds a PNG data
    URI (anything else is not shown)."""
    uri = info.get(key)
    if isinstance(uri, str) and uri.startswith(DIAGRAM_PREFIX) and _BASE64.fullmatch(uri[len(DIAGRAM_PREFIX):]):
        return uri
    return None


def pictures(doc: dict) -> list[dict]:
    out = []
    for name in dict.fromkeys(s["topology"] for s in doc["scenarios"]):
        info = (doc.get("topologies") or {}).get(name, {})
        cells = [s for s in doc["scenarios"] if s["topology"] == name]
        v6 = any(is_v6(s) for s in cells)
        out.append({"name": name, "info": info, "diagram": diagram(info), "cells": cells,
                    "diagram_v6": diagram(info, "diagram_v6") if v6 else None,
                    "v4_cells": any(not is_v6(s) for s in cells),
                    "throughput": throughput_table(info),
                    "passing": sum(s["outcome"] == "pass" for s in cells), "predicts": predicts(info),
                    "works": works_here(cells).lines(), "devices": _list(info.get("devices")),
                    "ftpdata": info.get("ftpdata") if isinstance(info.get("ftpdata"), dict) else {},
                    "overrides": info.get("alg_overrides") if isinstance(info.get("alg_overrides"), dict) else {}})
    return out


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(anchor=anchor, symbol=lambda outcome: SYMBOL.get(outcome, "?"), fields=cell_fields,
                       event_fields=event_fields, pcaps=pcaps, mask=wire.mask, view=conn_view)
    return env


#: The charts lab.report.charts writes beside index.html, with what each shows.
CHARTS = {"matrix.png": "the observed outcome per cell ('!' = differs from the prediction)",
          "throughput.png": "each passing cell's throughput against the iperf3 baseline of its path"}


def render(doc: dict, baseline: dict | None = None, charts: tuple[str, ...] = ()) -> str:
    """The page for a results document (and the baseline run it was compared with); `charts`: the
    chart files (CHARTS) present beside the page, shown and linked. A cell an interrupted run did
    not run is shown as "not-run" (also in a document written before the report knew that outcome)."""
    doc = {**doc, "scenarios": [{**s, "outcome": "not-run"} if is_not_run(s) and s["outcome"] != "not-run" else s
                                for s in doc["scenarios"]]}
    n = counts(doc)
    return environment().get_template("index.html.j2").render(
        doc=doc, n=n, all_good=n["matches"] == n["cells"] and not n["error"], matrix=matrix(doc),
        prediction=prediction_source(doc),
        claims=claims(doc), differing=[s for s in doc["scenarios"] if not s["matches"] and not is_not_run(s)],
        baseline=baseline, changes=baseline_changes(doc, baseline) if baseline is not None else [],
        pictures=pictures(doc), charts=[(c, CHARTS[c]) for c in CHARTS if c in charts])


def write(doc: dict, path: str | Path, baseline: dict | None = None) -> Path:
    """index.html at `path`, showing the charts written beside it (lab.report.charts)."""
    path = Path(path)
    present = tuple(c for c in CHARTS if (path.parent / c).is_file())
    path.write_text(render(doc, baseline=baseline, charts=present), encoding="utf-8")
    return path
