"""`ftlab matrix --scenarios fxp`: three-way (proxy, FXP) transfers, predicted and run with real packets.

A scenario file of `kind: fxp` (scenarios/fxp.yaml) names pictures with two servers (`src`, whose
file is copied, and `dst`, which stores the copy; each a node and the address the client dials) and
the cases to run on them: security, data (pasv: PASV + PORT, epsv: EPSV + EPRT), the passive side,
the side told SSCN ON (protected data), and per-server FTP.DATA statements (PASSIVEDATACONN,
PORTCOMMANDIPADDR, ...). Each case is predicted by lab.matrix.fxpwalk (the devices' own models, as
for the two-party cells) and then run: the picture comes up once in a sandbox (LabNet), the lab's
server runs in both server nodes with the case's statements, and the lab's client in the client
node drives them (`ftlab client SRC fxp DST --json`); the copy is checked by SHA-256.

The result: one line per case (predicted, observed, whether they agree) and `fxp-results.json` in
the report folder; exit 0 when every case is as predicted, 1 otherwise, 2 bad input, 3 lab failure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import TOPOLOGY_DIR
from lab.errors import InputError, Problem
from lab.ftps.config import ServerConfig
from lab.ftps.fxp import FXP_DATA_MODES, SIDES
from lab.ftps.modes import SECURITY_MODES
from lab.matrix import scenario
from lab.matrix.fxpwalk import walk_fxp
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

def agrees(pred, obs: dict) -> bool:
    if pred.outcome == "unknown":
        return True
    return pred.outcome == obs["outcome"] and (pred.outcome == "pass" or pred.stage == obs["stage"])


def main(args) -> int:
    """`ftlab matrix --scenarios fxp [--topologies PICTURE...] [--security ...] [--out DIR]`."""
    from lab.matrix import fxpsandbox
    from lab.network.sandbox import call_in_sandbox

    cases = load(args.scenarios)
    if args.topologies:
        cases = [c for c in cases if c.picture in args.topologies]
    if args.security:
        cases = [c for c in cases if c.security in args.security]
    if not cases:
        raise InputError("no three-way case is left after --topologies/--security")
    out = Path(args.out) if args.out else Path("reports") / f"fxp-{__import__('time').strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    doc, wrong = {"kind": "fxp", "cases": []}, 0
    for picture in dict.fromkeys(c.picture for c in cases):
        mine = [c for c in cases if c.picture == picture]
        observed = call_in_sandbox(fxpsandbox.__file__, "in_sandbox_run", mine[0].topology, [asdict(c) for c in mine],
                                   256 * 1024, timeout=60 + 30 * len(mine))
        for c in mine:
            pred, obs = predict(c), observed[c.id]
            ok = agrees(pred, obs)
            wrong += not ok
            print(f"{'as predicted' if ok else 'DIFFERS     '}  {c.id}: observed {obs['outcome']}"
                  + (f" at {obs['stage']}" if obs["outcome"] != "pass" else "")
                  + f"; predicted {pred.outcome}" + (f" at {pred.stage}" if pred.stage else "")
                  + (f" by {pred.device}" if pred.device else ""))
            print(f"    why: {pred.reason}")
            if obs["outcome"] != "pass":
                print(f"    observed: {obs['reason']}")
            doc["cases"].append({"id": c.id, "predicted": asdict(pred), "observed": obs, "as_predicted": ok})
    (out / "fxp-results.json").write_text(json.dumps(doc, indent=1))
    print(f"{len(cases)} three-way transfers: {len(cases) - wrong} as predicted, {wrong} differ; "
          f"results: {out / 'fxp-results.json'}")
    return 1 if wrong else 0
