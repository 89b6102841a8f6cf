"""index.html: one self-contained page for a person (no scripts, no external files except pcaps).

The matrix as predicted versus observed, each picture's diagram and the slides' reasoning for it,
and per cell the details: verdict, transcript, the device events, what each firewall saw of the
control channel (a cleartext `227 Entering Passive Mode` versus TLS ciphertext) and its pcaps.
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from collections import OrderedDict
from pathlib import Path

SYMBOL = {"pass": "✔", "fail": "✘", "error": "⚠"}

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:110em}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:.2em .4em}
table.matrix td{text-align:center;min-width:3.2em}table.matrix td a{text-decoration:none;color:inherit}
td.pass{background:#d9f2e1}td.fail{background:#f8d7cf}td.error{background:#ddd}
td.differs{outline:3px solid #d62728;outline-offset:-3px}
small.pred{display:block;color:#666;font-size:.75em}
.summary{font-size:1.05em}.bad{color:#b00}.good{color:#070}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:.8em;max-height:24em}
details{margin:.3em 0;border:1px solid #ddd;padding:.3em .6em}summary{cursor:pointer}
.cleartext{color:#064}.ciphertext{color:#a40}.drop{color:#b00}
img.diagram{max-width:min(100%,52em);border:1px solid #eee}
.legend span{margin-right:1.2em}
"""


def anchor(cell_id: str) -> str:
    return "cell-" + re.sub(r"[^A-Za-z0-9_-]", "_", cell_id)


def e(value) -> str:
    return html.escape("" if value is None else str(value))


def _diagram_png(topology_name: str) -> str | None:
    """The picture's diagram as a base64 PNG (None when the topology or lab.topology.diagram is unavailable)."""
    try:
        from lab.topology import diagram
        from lab.topology import loader as topo

        with tempfile.TemporaryDirectory() as tmp:
            path = diagram.draw(topo.load(topology_name), Path(tmp) / "d.png")
            return base64.b64encode(path.read_bytes()).decode()
    except Exception:   # a user's deleted topology file must not stop the report
        return None


def _col_order(col: tuple[str, str]) -> tuple[int, int]:
    from lab.ftps.modes import DATA_MODES, SECURITY_MODES

    sec, data = col
    return (SECURITY_MODES.index(sec) if sec in SECURITY_MODES else 99,
            DATA_MODES.index(data) if data in DATA_MODES else 99)


def _matrix(doc: dict) -> str:
    cols: list[tuple[str, str]] = []
    rows: OrderedDict[str, dict] = OrderedDict()
    for s in doc["scenarios"]:
        if (s["security"], s["data"]) not in cols:
            cols.append((s["security"], s["data"]))
        row = s["topology"] + (f" +{s['variant']}" if s["variant"] else "")
        rows.setdefault(row, {"topology": s["topology"], "cells": {}})["cells"][(s["security"], s["data"])] = s
    cols.sort(key=_col_order)
    securities = list(OrderedDict.fromkeys(c[0] for c in cols))
    head1 = "".join(f'<th colspan="{sum(1 for c in cols if c[0] == sec)}">{e(sec)}</th>' for sec in securities)
    head2 = "".join(f"<th>{e(d)}</th>" for sec in securities for (s2, d) in cols if s2 == sec)
    order = [c for sec in securities for c in cols if c[0] == sec]
    body = []
    for row, info in rows.items():
        tds = []
        for key in order:
            s = info["cells"].get(key)
            if s is None:
                tds.append('<td class="none">·</td>')
                continue
            differs = "" if s["matches"] else " differs"
            title = f"{s['id']}: observed {s['outcome']}, predicted {s['expected']} - {s['reason']}"
            tds.append(f'<td class="{e(s["outcome"])}{differs}" title="{e(title)}"><a href="#{anchor(s["id"])}">'
                       f'{SYMBOL[s["outcome"]]}<small class="pred">pred {SYMBOL[s["expected"]]}</small></a></td>')
        body.append(f'<tr><th><a href="#pic-{e(info["topology"])}">{e(row)}</a></th>{"".join(tds)}</tr>')
    return (f'<table class="matrix" id="matrix-table"><thead><tr><th rowspan="2">picture</th>{head1}</tr>'
            f'<tr>{head2}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            '<p class="legend"><span>✔ pass</span><span>✘ fail</span><span>⚠ lab error</span>'
            '<span>small: the slides\' prediction</span><span>red frame: observed differs from prediction</span></p>')


def _claims(doc: dict) -> str:
    from lab.report.claims import check

    items = []
    for claim, holds, wrong in check(doc):
        if holds is None:
            continue
        mark = '<b class="good">holds</b>' if holds else '<b class="bad">does not hold</b>: ' + ", ".join(
            f'<a href="#{anchor(w)}"><code>{e(w)}</code></a>' for w in wrong)
        items.append(f"<li>{e(claim.text)} - {mark}</li>")
    return "<h2>The slides' analysis, checked</h2><ul>" + "".join(items) + "</ul>" if items else ""


def _firewall_saw(s: dict) -> str:
    items = s.get("firewall_saw") or []
    if not items:
        return "<p>No device on the path inspected this control channel.</p>"
    lis = "".join(f'<li class="{e(i["kind"])}"><b>{e(i["device"])}</b> ({e(i["kind"])}): <code>{e(i["text"])}</code></li>'
                  for i in items)
    return f"<ul>{lis}</ul>"


def _events(s: dict) -> str:
    events = s.get("events") or []
    if not events:
        return "<p>No device events.</p>"
    rows = []
    for ev in events[:200]:
        rest = {k: v for k, v in ev.items() if k not in ("ts", "device", "type")}
        rows.append(f"<tr><td>{e(ev.get('device'))}</td><td>{e(ev.get('type'))}</td>"
                    f"<td><code>{e(', '.join(f'{k}={v}' for k, v in rest.items()))}</code></td></tr>")
    return f"<table><tr><th>device</th><th>event</th><th>fields</th></tr>{''.join(rows)}</table>"


def _cell(s: dict) -> str:
    differs = "" if s["matches"] else ' <b class="bad">differs from prediction</b>'
    fields = [("observed", f"{s['outcome']} ({s.get('stage') or '-'})"), ("reason", s["reason"]),
              ("predicted", f"{s['expected']} ({s.get('expected_stage') or '-'})"),
              ("prediction's reason", s.get("expected_reason")), ("why it differs", s.get("why_differs")),
              ("client / server", f"{s['client']} / {s['server']}"), ("ALG", s.get("alg")),
              ("bytes", s["bytes"]), ("SHA-256 ok", s["sha256_ok"]),
              ("throughput MB/s", s["throughput_mbps"]), ("iperf3 baseline MB/s", s["baseline_mbps"]),
              ("ratio", s["ratio"]), ("duration s", s["duration_s"]),
              ("baseline run's outcome", s.get("baseline_outcome"))]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in fields if v is not None)
    wire = ""
    if s.get("wire"):
        wire = "<h4>On the wire at the devices (from the pcaps)</h4><ul>" + "".join(
            f'<li class="{e(i["kind"])}"><b>{e(i["device"])}</b>: <code>{e(i["text"])}</code></li>'
            for i in s["wire"]) + "</ul>"
    transcript = "\n".join(s.get("transcript") or []) or "(no transcript)"
    pcaps = "".join(f'<li><a href="{e(p)}">{e(p)}</a></li>' for p in s.get("pcaps") or [])
    return (f'<details id="{anchor(s["id"])}"><summary><code>{e(s["id"])}</code> - {SYMBOL[s["outcome"]]} '
            f'{e(s["outcome"])} (predicted {e(s["expected"])}){differs}: {e(s["reason"])}</summary>'
            f"<table>{table}</table><h4>What the firewall saw</h4>{_firewall_saw(s)}{wire}"
            f"<h4>Control channel, as the client and the server logged it</h4><pre>{e(transcript)}</pre>"
            f"<h4>Device events</h4>{_events(s)}"
            + (f"<h4>Packet captures</h4><ul>{pcaps}</ul>" if pcaps else "") + "</details>")


def render(doc: dict, scenarios=None, baseline: dict | None = None, diagrams: bool = True) -> str:
    from lab.report.results import baseline_changes, counts

    n = counts(doc)
    ok_class = "good" if n["matches"] == n["cells"] and not n["error"] else "bad"
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<link rel=\"icon\" href=\"data:,\"><title>ftlab matrix {e(doc['run_id'])}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>FTPS Traversal Lab: matrix {e(doc['run_id'])}</h1>",
             f'<p class="summary">{n["cells"]} cells: {n["pass"]} pass, {n["fail"]} fail, {n["error"]} lab errors. '
             f'<span class="{ok_class}">{n["matches"]} of {n["cells"]} match the slides\' prediction.</span><br>'
             f'Run on {e(doc.get("host"))} from {e(doc.get("started"))} to {e(doc.get("finished"))}'
             + (f', {doc["duration_s"]:.0f} s' if doc.get("duration_s") else "")
             + (f'; data {doc["size"]} bytes per transfer' if doc.get("size") else "") + ".</p>"]
    if doc.get("lab_errors"):
        parts.append("<h2>Lab errors</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in doc["lab_errors"]) + "</ul>")
    parts.append(f'<h2 id="matrix">Predicted versus observed</h2>{_matrix(doc)}')
    parts.append(_claims(doc))
    differing = [s for s in doc["scenarios"] if not s["matches"]]
    if differing:
        parts.append("<h2>Where observation and prediction differ</h2><ul>" + "".join(
            f'<li><a href="#{anchor(s["id"])}"><code>{e(s["id"])}</code></a>: predicted {e(s["expected"])}, '
            f'observed {e(s["outcome"])} - {e(s.get("why_differs") or s["reason"])}</li>' for s in differing) + "</ul>")
    if baseline is not None:
        changes = baseline_changes(doc, baseline)
        parts.append(f"<h2>Changes since baseline {e(baseline['run_id'])}</h2>" + (
            "<ul>" + "".join(f'<li><a href="#{anchor(c.id)}"><code>{e(c.id)}</code></a>: {e(c.before)} → '
                             f"{e(c.after)}</li>" for c in changes) + "</ul>" if changes else
            "<p>No cell changed its outcome.</p>"))
    topologies = list(OrderedDict.fromkeys(s["topology"] for s in doc["scenarios"]))
    for name in topologies:
        info = (doc.get("topologies") or {}).get(name, {})
        picture = scenarios.pictures.get(name) if scenarios is not None else None
        cells = [s for s in doc["scenarios"] if s["topology"] == name]
        parts.append(f'<h2 id="pic-{e(name)}">{e(name)}</h2>')
        title = (picture.title if picture else None) or info.get("description")
        if title:
            parts.append(f"<p><b>{e(title)}</b></p>")
        png = _diagram_png(name) if diagrams else None
        if png:
            parts.append(f'<img class="diagram" alt="diagram of {e(name)}" src="data:image/png;base64,{png}">')
        if picture and picture.slide:
            parts.append(f"<p><i>Slides:</i> {e(picture.slide)}</p>")
        reasoning = (picture.reasoning if picture else None) or info.get("reasoning")
        if reasoning:
            parts.append(f"<h3>The slides' reasoning</h3><pre>{e(reasoning)}</pre>")
        if info.get("recommendation"):
            parts.append(f"<p><i>The four steps recommend:</i> {e(info['recommendation'])}</p>")
        base = info.get("baseline_mbps")
        parts.append(f"<p>iperf3 baseline on this path: {e(base) if base else 'not measured'} MB/s"
                     + (f" ({e(info['baseline_error'])})" if info.get("baseline_error") else "")
                     + (f"; network up in {info['up_s']:.1f} s" if info.get("up_s") else "") + ".</p>")
        parts.append(f"<h3>Cells ({sum(s['outcome'] == 'pass' for s in cells)} of {len(cells)} pass)</h3>")
        parts.extend(_cell(s) for s in cells)
    parts.append("</body></html>")
    return "\n".join(parts)


def write(doc: dict, path: str | Path, scenarios=None, baseline: dict | None = None, diagrams: bool = True) -> Path:
    path = Path(path)
    path.write_text(render(doc, scenarios=scenarios, baseline=baseline, diagrams=diagrams), encoding="utf-8")
    return path
