"""`ftlab matrix --scenarios fxp`: three-way (proxy, FXP) transfers, predicted and run with real packets.

A scenario file of `kind: fxp` (scenarios/fxp.yaml) names pictures with two servers (`src`, whose
file is copied, and `dst`, which stores the copy; each a node and the address the client dials) and
the cases to run on them: security, data (pasv: PASV + PORT, epsv: EPSV + EPRT), the passive side,
the side told SSCN ON (protected data), and per-server FTP.DATA statements (PASSIVEDATACONN,
PORTCOMMANDIPADDR, ...). Each case is predicted by lab.matrix.fxpwalk (the devices' own models, as
for the two-party cells) and then run: the picture comes up once in a sandbox (LabNet), the lab's
server runs in both server nodes with the case's statements, and the lab's client in the client
node drives them (`ftlab client SRC fxp DST --json`); the copy is checked by SHA-256.

The result: one line per case (predicted, observed, whether they agree); in the report folder
`fxp-results.json`, and made from it (lab.report.fxp) `index.html` and `junit.xml`. `--expect FILE`
states outcomes by case id (lab.matrix.expect's grammar: every id ends in `+passive-...`, so a pattern
names cases with a `+` part, e.g. `*/tls/*+*: fail`); `--baseline` compares with an earlier three-way
run. Exit 0 when every case is as predicted (or as the baseline and the expectations file), 1
otherwise, 2 bad input (an option of the two-party matrix included), 3 lab failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import TOPOLOGY_DIR
from lab.errors import InputError, LabError, Problem
from lab.ftps.config import ServerConfig
from lab.ftps.fxp import FXP_DATA_MODES, SIDES
from lab.ftps.modes import SECURITY_MODES
from lab.matrix import scenario
from lab.matrix.fxpwalk import walk_fxp
from lab.matrix.verdict import Observation, verdict
from lab.report import results
from lab.topology.yamlfile import load_file, load_ours

TOP_KEYS = {"kind", "description", "pictures", "cases"}


@dataclass(frozen=True)
class Case:
    id: str
    picture: str
    topology: str                                  # path of the topology file
    servers: dict = field(hash=False)              # side -> {"node", "address", "statements"}
    security: str = "plain"
    data: str = "pasv"
    passive: str = "dst"
    sscn: str | None = None


def is_fxp(name: str) -> bool:
    """Is this scenario file (name or path) a file of three-way transfers (`kind: fxp`)?"""
    path = scenario._names_or_path(name)
    if not path.is_file():
        return False
    try:
        raw, problems = load_file(path, "scenario file")
    except InputError:
        return False
    return not problems and isinstance(raw, dict) and raw.get("kind") == "fxp"


def load(name: str) -> list[Case]:
    """The cases of an fxp scenario file; InputError with file:line for every problem."""
    path = scenario._names_or_path(name)
    where = str(path)
    raw = load_ours(path, "scenario file", TOP_KEYS)
    problems: list[Problem] = []

    def bad(line: int, fieldname: str, message: str) -> None:
        problems.append(Problem(where, line, fieldname, message))

    pictures = raw.get("pictures")
    if not isinstance(pictures, dict) or not pictures:
        bad(raw.line_of("pictures"), "pictures", "expected a mapping of pictures")
        raise InputError(problems)
    known: dict[str, dict] = {}
    for pname, pic in pictures.items():
        line = pictures.line_of(pname)
        if not isinstance(pic, dict):
            bad(line, f"pictures.{pname}", "expected a mapping")
            continue
        topo = Path(str(pic.get("topology", "")))
        topo = topo if topo.is_absolute() else TOPOLOGY_DIR / topo
        if not topo.is_file():
            bad(pic.line_of("topology"), f"pictures.{pname}.topology", f"no topology file {topo}")
        servers = pic.get("servers")
        if not isinstance(servers, dict) or set(servers) != set(SIDES):
            bad(pic.line_of("servers"), f"pictures.{pname}.servers", "expected src and dst, each {node, address}")
            continue
        common = _statements(pic.get("statements") or {}, pic.line_of("statements"), f"pictures.{pname}.statements", bad)
        known[pname] = {"topology": str(topo), "servers": {s: {"node": str(servers[s].get("node")),
                                                                "address": str(servers[s].get("address")),
                                                                "statements": dict(common)} for s in SIDES}}
    cases = raw.get("cases")
    if not isinstance(cases, list) or not cases:
        bad(raw.line_of("cases"), "cases", "expected a list of cases")
        raise InputError(problems)
    out = []
    for i, c in enumerate(cases):
        line, fname = cases.line_of(i), f"cases[{i}]"
        if not isinstance(c, dict):
            bad(line, fname, "expected a mapping")
            continue
        pic = known.get(str(c.get("picture")))
        checks = [("picture", pic is not None, f"one of {', '.join(known)}"),
                  ("security", c.get("security", "plain") in SECURITY_MODES, f"one of {', '.join(SECURITY_MODES)}"),
                  ("data", c.get("data", "pasv") in FXP_DATA_MODES, f"one of {', '.join(FXP_DATA_MODES)}"),
                  ("passive", c.get("passive", "dst") in SIDES, "src or dst"),
                  ("sscn", c.get("sscn") in (None, *SIDES), "src or dst")]
        wrong = [(k, want) for k, ok, want in checks if not ok]
        for k, want in wrong:
            bad(c.line_of(k), f"{fname}.{k}", f"{c.get(k)!r} is not {want}")
        if wrong:
            continue
        servers = json.loads(json.dumps(pic["servers"]))
        extra = c.get("statements") or {}
        for side, st in (extra.items() if isinstance(extra, dict) else []):
            if side not in SIDES:
                bad(extra.line_of(side), f"{fname}.statements", f"{side!r} is not src or dst")
                continue
            servers[side]["statements"].update(_statements(st, extra.line_of(side), f"{fname}.statements.{side}", bad))
        case = Case("", str(c["picture"]), pic["topology"], servers, c.get("security", "plain"), c.get("data", "pasv"),
                    c.get("passive", "dst"), c.get("sscn"))
        out.append(Case(_case_id(case), *list(asdict(case).values())[1:]))
    if problems:
        raise InputError(problems)
    return out


def _statements(values, line: int, fieldname: str, bad) -> dict:
    if not isinstance(values, dict):
        bad(line, fieldname, "expected a mapping of FTP.DATA statements")
        return {}
    try:
        ServerConfig.from_dict(values, source=fieldname)
    except InputError as exc:
        for p in exc.problems:
            bad(line, f"{fieldname}.{p.field}", p.message)
        return {}
    return {str(k).upper(): str(v) for k, v in values.items()}


def _case_id(c: Case) -> str:
    tags = [f"passive-{c.passive}"] + ([f"sscn-{c.sscn}"] if c.sscn else [])
    for side in SIDES:
        for k, v in sorted(c.servers[side]["statements"].items()):
            if k in ("PASSIVEDATACONN", "PORTCOMMANDIPADDR"):
                tags.append(f"{side}-{k.lower()}-{v.lower()}")
    return f"{c.picture}/{c.security}/{c.data}+" + "+".join(tags)


def predict(case: Case):
    from lab.topology.loader import load as load_topology

    return walk_fxp(load_topology(case.topology), case.servers, case.security, case.data, case.passive, case.sscn)


# -- the command --------------------------------------------------------------------------------------

#: Options of `ftlab matrix` a three-way run has no use for, with their defaults: given otherwise, they
#: are refused (a silently ignored option reads as if it had been honoured).
TWO_PARTY_ONLY = {"variants": None, "only_variants": False, "client": None, "server": None, "size": None,
                  "jobs": 2, "timeout": None, "pcap": False, "throughput": "quick", "shard": None}
SIZE = 256 * 1024           # bytes copied per case


def agrees(pred, obs: dict) -> bool:
    """As a two-party cell (lab.report.results.agrees): outcome, and for a failure the stage and the
    node that decided; a case the model cannot predict agrees with anything the lab saw."""
    if pred.outcome == "unknown":
        return True
    return results.agrees(pred.outcome, pred.stage, pred.device, obs["outcome"], obs.get("stage"), obs.get("device"))


# -- what was observed --------------------------------------------------------------------------------

MAX_EVENTS = 200            # device events kept per case, as for a two-party cell


def refusing_side(client: dict) -> str | None:
    """The server whose reply failed the case: the side lab.ftps.fxp names first in its reason
    (`src: PORT refused: ...`), else the only side whose last reply in the transcript carries the
    failing code (a refused login); None when neither says it."""
    side, colon, _ = str(client.get("reason") or "").partition(":")
    if colon and side in SIDES:
        return side
    code = client.get("code")
    if code is None:
        return None
    last = {}
    for line in client.get("transcript") or []:
        for s in SIDES:
            if line.startswith(f"[{s}] < "):
                last[s] = line[len(f"[{s}] < "):]
    sides = [s for s, reply in last.items() if reply.startswith(str(code))]
    return sides[0] if len(sides) == 1 else None


def observe(client: dict | None, copied: bool, events: list[dict], servers: dict, *, exit_code: int | None = None,
            stderr: str = "") -> dict:
    """One case as observed: the client's --json result, whether dst holds the file (SHA-256), the
    device events while the client ran (lab.matrix.worker.cell_events). Decided by the two-party
    rules (lab.matrix.verdict): a dropped SYN of a new connection decides the case and names its
    device and packet; a server's refusal before any data connection names that server's node.
    Pure."""
    transcript = (client or {}).get("transcript") or []
    kept = events[:MAX_EVENTS]
    if client and client.get("outcome") == "ok":
        if copied:
            return {"outcome": "pass", "stage": None, "reason": "", "device": None, "drop": None,
                    "events": kept, "transcript": transcript}
        return {"outcome": "fail", "stage": "verify", "device": None, "drop": None, "events": kept,
                "reason": "the client reported success, but dst holds no copy with the original's SHA-256",
                "transcript": transcript}
    side = refusing_side(client) if client else None
    # Without the transcript: lab.matrix.verdict reads a PORT there as the client's own address,
    # which in a three-way transfer it is not (it names the passive server).
    seen = Observation({k: v for k, v in client.items() if k != "transcript"} if client else None,
                       exit_code=exit_code, events=events, stderr=stderr,
                       server_node=servers[side]["node"] if side else None)
    v = verdict(seen)
    reason = v.reason
    if v.drop is not None and client and client.get("reason"):
        reason += f" (the client: {client['reason']})"
    return {"outcome": v.outcome, "stage": v.stage, "reason": reason, "device": v.device, "drop": v.drop,
            "events": kept, "transcript": transcript}


def check_options(args) -> None:
    """InputError naming every option of the two-party matrix that was given to a three-way run."""
    given = [name for name, default in TWO_PARTY_ONLY.items() if getattr(args, name, default) != default]
    if given:
        raise InputError([Problem("--" + name.replace("_", "-"), 0, "", "applies to two-party runs, not to a "
                                  "three-way (kind: fxp) scenario file") for name in given])


def run_cases(cases: list[Case], lab_errors: list[str] | None = None) -> dict[str, dict]:
    """Run the cases with real packets: {case id: observed} (outcome, stage, device, reason, ...).

    Each picture comes up once, in a sandbox of its own (lab.matrix.fxpsandbox), for its cases. A
    picture whose run fails as a lab failure (exit code 3) gives its cases the outcome "error", and
    the failure is appended to `lab_errors` (when given) as "<picture>: <what failed>"; any other
    error is raised."""
    from lab.matrix import fxpsandbox
    from lab.network.sandbox import call_in_sandbox

    observed: dict[str, dict] = {}
    for picture in dict.fromkeys(c.picture for c in cases):
        mine = [c for c in cases if c.picture == picture]
        try:
            ran = call_in_sandbox(fxpsandbox.__file__, "in_sandbox_run", mine[0].topology,
                                  [asdict(c) for c in mine], SIZE, timeout=60 + 30 * len(mine))
        except LabError as exc:
            if exc.exit_code != 3:
                raise
            if lab_errors is not None:
                lab_errors.append(f"{picture}: {exc}")
            observed.update({c.id: {"outcome": "error", "stage": None, "device": None,
                                    "reason": f"lab error: {str(exc)[:300]}"} for c in mine})
            continue
        for c in mine:
            r = ran[c.id]
            obs = observe(r["client"], r["copied"], r["events"], c.servers, exit_code=r["exit_code"], stderr=r["stderr"])
            if obs["outcome"] == "pass" and not obs.get("reason"):     # the sandbox passes a case on the copy's hash
                obs["reason"] = f"{SIZE} bytes copied from src to dst, SHA-256 verified"
            observed[c.id] = obs
    return observed


def main(args, out_dir) -> int:
    """`ftlab matrix --scenarios fxp [--topologies PICTURE...] [--security ...] [--data ...] [--expect FILE]
    [--baseline FILE|DIR] [--out DIR]`; out_dir() makes the report folder (after the input is checked)."""
    import shlex
    import socket
    import sys
    import time

    from lab.matrix import expect
    from lab.report import fxp as report
    from lab.report.results import new_run_id, now_iso

    check_options(args)
    cases = load(args.scenarios)
    for wanted, value in ((args.topologies, "picture"), (args.security, "security"), (args.data, "data")):
        if wanted:
            cases = [c for c in cases if getattr(c, value) in wanted]
    if not cases:
        raise InputError("no three-way case is left after --topologies/--security/--data")
    baseline = report.load(args.baseline) if args.baseline is not None else None
    expected = expect.load(args.expect) if args.expect is not None else None
    for c in cases if expected is not None else []:      # two patterns that disagree on a case: said before the run
        expected.stated(c.id)
    out = out_dir()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    doc = {"kind": report.KIND, "run_id": new_run_id(started), "started": now_iso(started), "finished": None,
           "host": socket.gethostname(), "command": shlex.join(["ftlab", *sys.argv[1:]]),
           "scenarios": str(scenario._names_or_path(args.scenarios)), "size": SIZE, "cases": []}
    for picture in dict.fromkeys(c.picture for c in cases):      # a picture at a time: its lines as it ends
        mine = [c for c in cases if c.picture == picture]
        lab_errors: list[str] = []
        observed = run_cases(mine, lab_errors)
        if lab_errors:
            doc.setdefault("lab_errors", []).extend(lab_errors)
        for c in mine:
            pred, obs = predict(c), observed[c.id]
            doc["cases"].append({**asdict(c), "predicted": asdict(pred), "observed": obs,
                                 "as_predicted": obs["outcome"] != "error" and agrees(pred, obs)})
            _print_case(doc["cases"][-1])
    doc["finished"], doc["duration_s"] = now_iso(), round(time.time() - started, 1)
    if expected is not None:
        _judge(doc, expected, report.view)
    (out / report.FILE).write_text(json.dumps(doc, indent=1))
    report.write(doc, out, baseline)
    return _summary(doc, baseline, expected, out, report)


def _print_case(case: dict) -> None:
    pred, obs = case["predicted"], case["observed"]
    label = "ERROR       " if obs["outcome"] == "error" else "as predicted" if case["as_predicted"] else "DIFFERS     "
    print(f"{label}  {case['id']}: observed {obs['outcome']}" + (f" at {obs['stage']}" if obs.get("stage") else "")
          + (f" by {obs['device']}" if obs.get("device") else "")
          + f"; predicted {pred['outcome']}" + (f" at {pred['stage']}" if pred.get("stage") else "")
          + (f" by {pred['device']}" if pred.get("device") else ""))
    print(f"    why: {pred['reason']}")
    if obs["outcome"] != "pass":
        print(f"    observed: {obs['reason']}")


def _judge(doc: dict, expected, view) -> None:
    """Each case's stated outcome, by lab.matrix.expect's own rule, into its entry (`expect`, `expect_met`)."""
    from lab.matrix import expect

    flat = view(doc)
    expect.annotate(flat, expected)
    doc["expect_file"] = flat["expect_file"]
    for case, cell in zip(doc["cases"], flat["scenarios"], strict=True):
        case["expect"], case["expect_met"] = cell["expect"], cell["expect_met"]


def _summary(doc: dict, baseline: dict | None, expected, out: Path, report) -> int:
    """The closing lines (as the two-party matrix's) and the exit code."""
    from lab.matrix import expect

    cases = doc["cases"]
    wrong = sum(not c["as_predicted"] for c in cases)
    print(f"{len(cases)} three-way transfers: {len(cases) - wrong} as predicted, {wrong} differ; "
          f"results: {out / report.FILE}")
    for err in doc.get("lab_errors") or []:
        print(f"  LAB     {err}")
    if baseline is not None:
        changes = report.baseline_changes(doc, baseline)
        print(f"{len(changes)} cases changed since baseline {baseline.get('run_id') or '(an earlier run)'}")
        for ch in changes:
            print(f"  CHANGED {ch}")
    if expected is not None:
        flat = report.view(doc)
        stated = [c for c in cases if c.get("expect")]
        unmet = expect.unmet(flat)
        print(f"{len(stated) - len(unmet)} of {len(stated)} cases do what {doc['expect_file']} states")
        for s in unmet:
            e = s["expect"]
            print(f"  UNMET   {s['id']}: {doc['expect_file']}:{e['line']} ({e['pattern']}) says {e['outcome']}, "
                  f"observed {s['outcome']}" + (f" at {s['stage']}" if s.get("stage") else "") + f": {s['reason']}")
        for st in expect.unused(flat, expected):
            print(f"  UNUSED  {doc['expect_file']}:{st.line} ({st.pattern}) names no case of this run "
                  f"(a three-way case id ends in +passive-src or +passive-dst...: e.g. tls/epsv+* names them all)")
    print(f"report: {out}/index.html")
    return report.exit_code(doc, baseline)
