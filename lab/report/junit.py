"""junit.xml: one testcase per cell, failed when the observed outcome differs from the prediction.

A cell whose outcome is `error` (the lab broke) is a JUnit <error>, not a <failure>, so CI tells a
broken lab apart from a changed network verdict. A cell an interrupted run did not run is
<skipped message="not run: interrupted"/>: neither a failure nor a lab error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from lab.report.results import is_not_run


def build(doc: dict) -> ET.Element:
    by_topology: dict[str, list[dict]] = defaultdict(list)
    for s in doc["scenarios"]:
        by_topology[s["topology"]].append(s)
    root = ET.Element("testsuites", name=f"ftlab matrix {doc['run_id']}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for topology, cells in by_topology.items():
        suite = ET.SubElement(root, "testsuite", name=topology, hostname=str(doc.get("host", "")),
                              timestamp=str(doc.get("started", "")))
        n = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
        for s in cells:
            name = s["id"].split("/", 1)[1]
            case = ET.SubElement(suite, "testcase", classname=f"ftlab.{topology}", name=name,
                                 time=f"{s.get('duration_s') or 0:.3f}")
            n["tests"] += 1
            n["time"] += s.get("duration_s") or 0
            if is_not_run(s):
                ET.SubElement(case, "skipped", message="not run: interrupted")
            elif s["outcome"] == "error":
                n["errors"] += 1
                el = ET.SubElement(case, "error", message=s["reason"][:500], type="lab-error")
                el.text = s["reason"]
            elif doc.get("expect_file") and s.get("expect_met") is False:
                n["failures"] += 1
                e = s["expect"]
                msg = (f"{doc['expect_file']}:{e['line']} ({e['pattern']}) states {e['outcome']}, observed "
                       f"{s['outcome']}: {s['reason']}")
                el = ET.SubElement(case, "failure", message=msg[:500], type="expectation-unmet")
                el.text = msg
            elif doc.get("expect_file"):
                pass                 # judged by the expectations file, not by the prediction
            elif s.get("expected") == "unknown":
                el = ET.SubElement(case, "skipped", message=f"not predicted: {s.get('expected_reason') or ''}"[:500])
            elif not s["matches"]:
                n["failures"] += 1
                msg = f"predicted {s['expected']}, observed {s['outcome']}: {s['reason']}"
                el = ET.SubElement(case, "failure", message=msg[:500], type="outcome-changed")
                el.text = (f"{msg}\nprediction: {s.get('expected_reason') or ''}\n"
                           f"stage: {s.get('stage')}\n{s.get('why_differs') or ''}")
            out = ET.SubElement(case, "system-out")
            by = f" by {s['device']}" if s.get("device") else ""
            out.text = f"{s['outcome']} ({s.get('stage') or '-'}{by}): {s['reason']}"
        for key in ("tests", "failures", "errors"):
            suite.set(key, str(n[key]))
            totals[key] += n[key]
        suite.set("time", f"{n['time']:.3f}")
        totals["time"] += n["time"]
    if doc.get("partial"):
        partial_suite(root, doc, totals)
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", f"{totals['time']:.3f}")
    return root


def partial_suite(root: ET.Element, doc: dict, totals: dict) -> None:
    """A partial merge (`--allow-partial`): a `partial` property, and one skipped testcase per
    missing or doubled shard, so a CI summary shows what the verdict does not cover."""
    p = doc["partial"]
    suite = ET.SubElement(root, "testsuite", name="shards", hostname=str(doc.get("host", "")),
                          timestamp=str(doc.get("started", "")))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="partial", value=str(p.get("reason") or "partial")[:500])
    cases = [(f"shard {k} (missing)", f"shard {k} is missing: its cells are not in this report")
             for k in p.get("missing") or []]
    cases += [(f"shard {k} (given twice)", f"shard {k} was given twice: merged once")
              for k in p.get("duplicated") or []]
    if not cases:
        cases = [("partial", str(p.get("reason") or "the merged report is partial"))]
    for name, message in cases:
        case = ET.SubElement(suite, "testcase", classname="ftlab.merge", name=name, time="0.000")
        ET.SubElement(case, "skipped", message=message[:500])
    suite.set("tests", str(len(cases)))
    suite.set("skipped", str(len(cases)))
    suite.set("failures", "0")
    suite.set("errors", "0")
    suite.set("time", "0.000")
    totals["tests"] += len(cases)


def write(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    tree = ET.ElementTree(build(doc))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
