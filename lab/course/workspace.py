"""A student's folder: the editable files, read and composed with the exercise's picture.

The student edits only the files the exercise lists; everything else comes from the picture. The
checker composes the network the cells run on (DIR/.course/network.yaml) from the picture and:

    server-ftpdata   the server's FTP.DATA statements (ftp.server_statements), FTP.DATA syntax
    client-ftpdata   the client's (ftp.client_statements)
    iptables-save    the firewall's ruleset (nodes.DEVICE.firewall: static, iptables_save: the file)
    method           `method: <security>/<data>`: what the client does (the goals' `method` cell)
    answers          a YAML mapping of answers to the task's questions

Every file is read as hostile input and its problems are `file:line: field: problem`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.course.exercise import Exercise
from lab.errors import InputError, Problem, read_input
from lab.ftps.config import parse_ftpdata_text
from lab.ftps.modes import DATA_MODES, SECURITY_MODES
from lab.topology.yamlfile import MAX_BYTES, Mapping, Sequence, read_yaml

#: where the checker keeps what it makes in a student's folder
WORK = ".course"
NETWORK = "network.yaml"


@dataclass
class Files:
    """What a student's files say, read and checked."""
    folder: Path
    server_statements: dict | None = None
    client_statements: dict | None = None
    ruleset: Path | None = None
    method: tuple[str, str] | None = None
    answers: dict = field(default_factory=dict)


def read(ex: Exercise, folder: Path) -> Files:
    """Read the student's editable files in `folder`; InputError with every problem."""
    found = Files(folder)
    problems: list[Problem] = []
    for e in ex.editable:
        path = folder / e.file
        if not path.is_file():
            problems.append(Problem(str(path), 0, "", f"missing: the exercise's {e.kind} file "
                                                      f"(`ftlab course reset` puts the starting files back)"))
            continue
        try:
            if e.kind in ("server-ftpdata", "client-ftpdata"):
                side = e.kind.split("-")[0]
                setattr(found, f"{side}_statements", ftpdata_statements(path, side))
            elif e.kind == "iptables-save":
                read_input(path, "iptables-save file")      # the loader and `topo check` read it in full
                found.ruleset = path.resolve()
            elif e.kind == "method":
                found.method = read_method(path)
            elif e.kind == "answers":
                found.answers = read_answers(path)
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(problems)
    return found


def ftpdata_statements(path: Path, side: str) -> dict[str, str | list[str]]:
    """An FTP.DATA file -> the topology's `*_statements` mapping (a repeated statement: a list). The
    endpoints' own parser validates it first (unknown statements, values, at their lines)."""
    text = read_input(path, "FTP.DATA file")
    parse_ftpdata_text(text, side, str(path))
    out: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        name, value = (line.split(None, 1) + [""])[:2]
        name, value = name.upper(), value.strip()
        if name in out:
            out[name] = [*(out[name] if isinstance(out[name], list) else [out[name]]), value]
        else:
            out[name] = value
    return out


def read_method(path: Path) -> tuple[str, str]:
    """`method: tls/epsv` -> ("tls", "epsv")."""
    raw = _yaml(path, "method file")
    if not isinstance(raw, Mapping) or "method" not in raw:
        raise InputError([Problem(str(path), 1, "method", "expected `method: <security>/<data>`, e.g. "
                                                          "`method: tls/epsv`")])
    line = raw.line_of("method")
    unknown = sorted(k for k in raw if k != "method")
    if unknown:
        raise InputError([Problem(str(path), raw.line_of(unknown[0]), unknown[0], "unknown key; allowed: method")])
    value = raw["method"]
    security, _, data = str(value).strip().partition("/")
    problems = []
    if security not in SECURITY_MODES:
        problems.append(Problem(str(path), line, "method", f"{security!r} is not a security mode: "
                                                           f"{', '.join(SECURITY_MODES)}"))
    if data not in DATA_MODES:
        problems.append(Problem(str(path), line, "method", f"{data!r} is not a data mode: {', '.join(DATA_MODES)}"))
    if problems:
        raise InputError(problems)
    return security, data


def read_answers(path: Path) -> dict:
    raw = _yaml(path, "answers file")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InputError([Problem(str(path), 1, "", "expected a mapping: `question: answer` a line each")])
    return {str(k): raw.raw.get(k, v) if isinstance(v, bool) else v for k, v in raw.items()}


def _yaml(path: Path, what: str):
    raw, problems = read_yaml(read_input(path, what, MAX_BYTES), str(path))
    if problems:
        raise InputError(problems)
    return raw


# -- the network the cells run on ---------------------------------------------------------------------

def compose(ex: Exercise, files: Files, out: Path) -> Path:
    """Write the network of the student's files: the picture with their statements and ruleset,
    named after the exercise. Returns its path."""
    raw, problems = read_yaml(ex.picture_text, str(ex.picture_path))
    if problems:
        raise InputError(problems)
    doc = plain(raw)
    base = ex.picture_path.parent
    for node in (doc.get("nodes") or {}).values():        # files the picture names, relative to it
        fw = node.get("firewall") if isinstance(node, dict) else None
        if isinstance(fw, dict):
            for key in ("iptables_save", "nftables"):
                if isinstance(fw.get(key), str) and not Path(fw[key]).is_absolute():
                    fw[key] = str((base / fw[key]).resolve())
    doc["name"] = ex.id
    ftp = doc.setdefault("ftp", {})
    if files.server_statements is not None:
        ftp["server_statements"] = files.server_statements
    if files.client_statements is not None:
        ftp["client_statements"] = files.client_statements
    for e in ex.editable:
        if e.kind == "iptables-save" and files.ruleset is not None:
            node = doc["nodes"][e.device]
            old = node.get("firewall") if isinstance(node.get("firewall"), dict) else {}
            node["firewall"] = {"mode": "static", "iptables_save": str(files.ruleset),
                                **({"idle_timeout": old["idle_timeout"]} if "idle_timeout" in old else {})}
    for side in ("server_statements", "client_statements"):
        if not ftp.get(side):
            ftp.pop(side, None)
    out.mkdir(parents=True, exist_ok=True)
    path = out / NETWORK
    path.write_text(f"# made by `ftlab course check` from {ex.picture_path} and your files; do not edit\n"
                    + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    return path


def plain(value: Any) -> Any:
    """The lab's YAML objects as plain data, a YAML 1.1 boolean kept as the word written (`alg: off`)."""
    if isinstance(value, Mapping):
        return {k: (value.raw[k] if isinstance(v, bool) and str(value.raw.get(k, "")).lower() not in
                    ("true", "false", "") else plain(v)) for k, v in value.items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence | list):
        return [plain(v) for v in value]
    return value
