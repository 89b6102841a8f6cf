"""The report of a three-way (FXP) run: index.html and junit.xml, made from fxp-results.json alone.

A three-way run (`ftlab matrix --scenarios fxp`, lab.matrix.fxprun) writes its own document: per
case the case as the scenario file states it (picture, security, data, passive side, SSCN side, the
servers' statements), the prediction (outcome, stage, device, reason), the observation (outcome,
stage, the node that decided, reason, the decisive drop, the device events while the client ran, the
client's transcript of both control connections) and whether they agree (outcome, stage and node).

The two-party writers are reused through `view()`, the cases in the two-party vocabulary (`id`,
`topology`, `expected`, `outcome`, `matches`, `expect_met`, ...): JUnit (lab.report.junit), the
exit code and the baseline comparison (lab.report.results), expectations (lab.matrix.expect). The
page is lab.report.html's Jinja2 environment (autoescape on: a transcript is what a server sent,
and renders as text) with its own template, templates/fxp.html.j2.
"""

from __future__ import annotations

from pathlib import Path

from lab.errors import InputError, Problem, read_input
from lab.report import html, junit, results

FILE = "fxp-results.json"
KIND = "fxp"
#: The statements lab.matrix.fxpwalk consults, per role: where the passive server listens and whom
#: it accepts (PASSIVEDATAPORTS, PASSIVEDATACONN), whom the active server connects to (PORTCOMMANDIPADDR).
CONSULTED = {"passive": ("PASSIVEDATAPORTS", "PASSIVEDATACONN"), "active": ("PORTCOMMANDIPADDR",)}
COMMANDS = {"pasv": "PASV + PORT", "epsv": "EPSV + EPRT"}


def view(doc: dict) -> dict:
    """The document as the two-party writers read one: a `scenarios` list of flat cells."""
    cells = []
    for c in doc["cases"]:
        pred, obs = c["predicted"], c["observed"]
        cells.append({"id": c["id"], "topology": c.get("picture") or c["id"].split("/", 1)[0],
                      "expected": pred["outcome"], "expected_stage": pred.get("stage"),
                      "expected_reason": pred.get("reason"), "expected_device": pred.get("device"),
                      "outcome": obs["outcome"], "stage": obs.get("stage"), "device": obs.get("device"),
                      "reason": obs.get("reason") or "", "matches": bool(c["as_predicted"]),
                      "duration_s": c.get("duration_s"), "expect": c.get("expect"), "expect_met": c.get("expect_met")})
        if not c["as_predicted"]:         # JUnit's failure text: both sides' outcome, stage and node
            cells[-1]["why_differs"] = results.why_differs(cells[-1], {"predicted_by": "the lab's model"})
    keep = ("host", "started", "expect_file", "lab_errors")
    return {**{k: doc[k] for k in keep if k in doc}, "run_id": doc.get("run_id") or "fxp", "scenarios": cells}


def exit_code(doc: dict, baseline: dict | None = None) -> int:
    """As the two-party matrix's: 0 as predicted (or as the baseline and the expectations file), 1 some
    case differs, 3 the lab failed."""
    return results.exit_code(view(doc), view(baseline) if baseline is not None else None)


def baseline_changes(doc: dict, baseline: dict) -> list[results.Change]:
    return results.baseline_changes(view(doc), view(baseline))


def load(path: str | Path) -> dict:
    """An earlier three-way run's fxp-results.json (or its report folder); InputError when it is not one."""
    p = Path(path)
    if p.is_dir():
        if not (p / FILE).is_file():
            raise InputError([Problem(str(p), 0, "", f"holds no {FILE}: a three-way run compares with an "
                                                     f"earlier three-way run's report folder")])
        p = p / FILE
    doc = results.read_json(read_input(p, FILE, results.MAX_RESULTS_BYTES), str(p))
    cases = doc.get("cases") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(cases, list):
        raise InputError([Problem(str(p), 1, "", f"not an {FILE} of ftlab (no \"kind\": \"{KIND}\" with its "
                                                 f"\"cases\"): a three-way run compares with an earlier three-way run")])
    for i, c in enumerate(cases):
        ok = (isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("observed"), dict)
              and c["observed"].get("outcome") in results.OUTCOMES and isinstance(c.get("predicted"), dict)
              and isinstance(c["predicted"].get("outcome"), str))
        if not ok:
            raise InputError([Problem(str(p), 0, f"cases/{i}", "expected id, predicted.outcome and "
                                                               "observed.outcome (pass, fail or error)")])
    return doc


# -- the page -----------------------------------------------------------------------------------------

def statements_that_matter(case: dict) -> list[str]:
    """`src (passive): PASSIVEDATACONN NOREDIRECT`, for the statements the prediction consults."""
    servers = case.get("servers") if isinstance(case.get("servers"), dict) else {}
    passive = case.get("passive")
    out = []
    for side, server in servers.items():
        role = "passive" if side == passive else "active"
        st = (server or {}).get("statements") or {}
        said = [f"{k} {st[k]}" for k in CONSULTED[role] if k in st]
        if said:
            out.append(f"{side} ({role}): " + ", ".join(said))
    return out


def event_line(e: dict) -> str:
    """`fw drop tcp 192.0.2.10:20 -> 203.0.113.10:60083 [S] (no pinhole)`, `nat-b rewrite ...`: one
    device event as a line (its fields as the device wrote them; the time left out)."""
    if not isinstance(e, dict):
        return str(e)
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("ts", "device", "type"))
    return f"{e.get('device', '?')} {e.get('type', '?')} {rest}".rstrip()


def rows(doc: dict, baseline: dict | None = None) -> list[dict]:
    before = {c["id"]: c["observed"]["outcome"] for c in (baseline or {}).get("cases", [])}
    out = []
    for case, cell in zip(doc["cases"], view(doc)["scenarios"], strict=True):
        out.append({"case": case, "cell": cell, "commands": COMMANDS.get(case.get("data"), case.get("data")),
                    "statements": statements_that_matter(case),
                    "transcript": case["observed"].get("transcript") or [],
                    "events": [event_line(e) for e in case["observed"].get("events") or []],
                    "baseline": before.get(case["id"]) if baseline is not None else None})
    return out


def render(doc: dict, baseline: dict | None = None) -> str:
    cells = view(doc)["scenarios"]
    n = {"cases": len(cells), "agree": sum(c["matches"] for c in cells),
         "pass": sum(c["outcome"] == "pass" for c in cells), "fail": sum(c["outcome"] == "fail" for c in cells),
         "error": sum(c["outcome"] == "error" for c in cells)}
    return html.environment().get_template("fxp.html.j2").render(
        doc=doc, n=n, rows=rows(doc, baseline), baseline=baseline,
        changes=baseline_changes(doc, baseline) if baseline is not None else [],
        unmet=[c for c in cells if c.get("expect_met") is False])


def write(doc: dict, out_dir: str | Path, baseline: dict | None = None) -> list[Path]:
    """index.html and junit.xml into out_dir (fxp-results.json is the run's to write)."""
    out = Path(out_dir)
    page = out / "index.html"
    page.write_text(render(doc, baseline), encoding="utf-8")
    return [page, junit.write(view(doc), out / "junit.xml")]
