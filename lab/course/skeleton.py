"""`ftlab course new TOPOLOGY DIR`: a skeleton exercise from a topology, for an instructor to finish.

The skeleton is a working exercise: its picture (a shipped name, or the file copied into the
folder), the server's and client's FTP.DATA and a method file as the student's editable files,
the goals "your method passes" and, for contrast, the TLS cells the lab's model predicts to fail,
the constraint that the control channel stays encrypted when a method that keeps it encrypted gets
through, and as reference solution the method `ftlab recommend` gives. `ftlab course check
--reference DIR` grades it at once.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from lab.errors import InputError, Problem
from lab.matrix import predict, scenario, targets
from lab.matrix.recommend import recommend


class _Dumper(yaml.SafeDumper):
    """Text of several lines as a literal block (as an instructor writes a task)."""


_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))


def _ftpdata(statements: dict) -> str:
    lines = []
    for name, value in statements.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{name:<20} {v}")
    return "\n".join(lines) + ("\n" if lines else "")


def new(topology: str, folder: Path) -> Path:
    """Write the skeleton into `folder` (new or empty); returns its exercise.yaml."""
    ex_id = folder.name
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", ex_id):
        raise InputError([Problem("DIR", 0, "", f"{ex_id!r}: the folder's name is the exercise's id: lower-case "
                                                "letters, digits and '-'")])
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError([Problem("DIR", 0, "", f"{folder} exists and is not an empty folder")])
    where = targets.target(topology, "TOPOLOGY")
    targets.deep_check(where)
    model = where.model
    scen = scenario.load("default")
    folder.mkdir(parents=True, exist_ok=True)
    if where.shipped:
        picture = where.name
    else:
        source = Path(where.source)
        shutil.copyfile(source, folder / "topology.yaml")
        picture = "topology.yaml"
        for node in model.nodes.values():        # a ruleset beside it travels with it
            fw = node.firewall
            for path in ([fw.iptables_save] if fw is not None and fw.iptables_save else []):
                if Path(path).parent == source.parent:
                    shutil.copyfile(path, folder / Path(path).name)
    rec = recommend(model, scen)
    method = rec.method or "tls-ccc/pasv"
    failing = []
    for data in scenario.DATA_MODES:
        p = predict.predict(scen, scenario.Cell(model.name, "tls", data), model=model)
        if p.outcome == "fail":
            failing.append({"cell": f"tls/{data}", "outcome": "fail", **({"stage": p.stage} if p.stage else {}),
                            **({"device": p.device} if getattr(p, "device", None) else {})})
    start_method = next((g["cell"] for g in failing), "plain/port")
    for sub, chosen in (("start", start_method), ("solution", method)):
        (folder / sub).mkdir()
        (folder / sub / "method.yaml").write_text(f"method: {chosen}\n")
    (folder / "start" / "server.ftpdata").write_text(_ftpdata(model.ftp.server_statements))
    (folder / "start" / "client.ftpdata").write_text(_ftpdata(model.ftp.client_statements))
    doc = {
        "schema": "ftlab.exercise/1", "id": ex_id, "order": 100,
        "title": f"Secure FTP through {model.name}",
        "picture": picture,
        "task": f"{model.description}.\n\nFind a way of doing FTP that gets through with the control channel\n"
                f"encrypted, and write it into method.yaml.\n",
        "editable": [{"file": "method.yaml", "kind": "method", "about": "method: <security>/<data>"},
                     {"file": "server.ftpdata", "kind": "server-ftpdata"},
                     {"file": "client.ftpdata", "kind": "client-ftpdata"}],
        "constraints": [{"kind": "control-encrypted"}] if rec.keeps_control_encrypted else [{"kind": "data-protected"}],
        "goals": [{"cell": "method", "outcome": "pass"}, *failing[:2]],
        "hints": [f"The lab's model recommends: {rec.text()}"],
    }
    path = folder / "exercise.yaml"
    path.write_text("# a skeleton made by `ftlab course new`: finish the task, goals and hints\n"
                    + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True))
    return path
