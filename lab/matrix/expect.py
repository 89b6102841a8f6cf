"""Expectations: what an engineer states the design must do, checked against a run (`--expect FILE`).

    expect = load("my-net.expect.yaml")       # InputError: every problem as file:line: field: message
    expect.stated(cell_id)                    # -> Statement (outcome, line, pattern) or None
    problems = check(doc, expect)             # cells whose outcome is not what the file states

The file (YAML):

    schema: ftlab.expect/1          # optional
    expect:                         # pattern: outcome
      tls/epsv: pass                #   <security>/<data>: every network of the run
      tls-ccc/*: pass               #   * stands for any security mode, data mode or network
      plain/*: fail
      my-dmz/implicit/port: fail    #   <network>/<security>/<data>: one network (its name:)
      '*/*/pasv+ignore-pasv-address': pass    # a variation: +name after the data mode

Outcomes are `pass` or `fail`. A cell is governed by the most specific pattern that matches it
(the one with the fewest `*`); two equally specific patterns that match one cell and disagree are
an error, named at both lines. A cell no pattern matches is not checked. With `--expect` the
matrix exits 0 when every checked cell did what the file states, 1 when one did not, 3 on a lab
error - beside `--baseline` (then either failing gives 1).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from lab.errors import InputError, Problem
from lab.ftps.modes import DATA_MODES, SECURITY_MODES
from lab.topology.yamlfile import Mapping, load_ours

SCHEMA = "ftlab.expect/1"
OUTCOMES = ("pass", "fail")
TOP_KEYS = {"schema", "expect", "description"}


@dataclass(frozen=True)
class Statement:
    pattern: str          # as written
    outcome: str          # pass | fail
    line: int
    parts: tuple[str, str, str, str]     # network, security, data, variant ("*" = any; variant "" = none)

    @property
    def specificity(self) -> int:
        return sum(p != "*" for p in self.parts)

    def matches(self, topology: str, security: str, data: str, variant: str) -> bool:
        return all(fnmatch.fnmatchcase(value, pattern) for value, pattern in
                   zip((topology, security, data, variant), self.parts, strict=True))


@dataclass(frozen=True)
class Expectations:
    source: str
    statements: tuple[Statement, ...]

    def stated(self, cell_id: str) -> Statement | None:
        """The statement governing a cell (the most specific that matches), or None."""
        topology, security, data, variant = split_id(cell_id)
        found = [s for s in self.statements if s.matches(topology, security, data, variant)]
        if not found:
            return None
        best = max(s.specificity for s in found)
        top = [s for s in found if s.specificity == best]
        if len({s.outcome for s in top}) > 1:
            raise InputError([Problem(self.source, s.line, f"expect.{s.pattern}",
                                      f"{cell_id} is matched as specifically by "
                                      + ", ".join(f"line {o.line} ({o.pattern}: {o.outcome})" for o in top if o != s))
                              for s in top])
        return top[0]


def split_id(cell_id: str) -> tuple[str, str, str, str]:
    """`net/sec/data+var` -> (net, sec, data, var); the network may hold '/' (a file's path)."""
    head, _, data_part = cell_id.rpartition("/")
    topology, _, security = head.rpartition("/")
    data, _, variant = data_part.partition("+")
    return topology, security, data, variant


def _parse_pattern(text: str) -> tuple[tuple[str, str, str, str] | None, str]:
    """(parts, "") or (None, why not)."""
    body, plus, variant = text.partition("+")
    pieces = body.split("/")
    if len(pieces) == 2:
        pieces = ["*", *pieces]
    if len(pieces) != 3 or not all(pieces):
        return None, "expected <security>/<data> or <network>/<security>/<data> (with * for any), e.g. tls/epsv"
    topology, security, data = pieces
    if security != "*" and not fnmatch.filter(SECURITY_MODES, security):
        return None, f"{security!r} is not a security mode ({', '.join(SECURITY_MODES)}) or a pattern of them"
    if data != "*" and not fnmatch.filter(DATA_MODES, data):
        return None, f"{data!r} is not a data mode ({', '.join(DATA_MODES)}) or a pattern of them"
    if plus and not variant:
        return None, "an empty variation after '+'"
    return (topology, security, data, variant if plus else ""), ""


def load(path: str | Path) -> Expectations:
    """Read an expectations file (hostile input: the topology reader's limits); every problem at once."""
    where = str(path)
    raw = load_ours(path, "file of expectations", TOP_KEYS)
    problems: list[Problem] = []
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(Problem(where, raw.line_of(key), str(key),
                                    f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}"))
    if "schema" in raw and raw["schema"] != SCHEMA:
        problems.append(Problem(where, raw.line_of("schema"), "schema", f"expected {SCHEMA}, got {raw['schema']!r}"))
    table = raw.get("expect")
    if not isinstance(table, Mapping) or not table:
        problems.append(Problem(where, raw.line_of("expect") if "expect" in raw else 1, "expect",
                                "a mapping of patterns to outcomes, e.g.  tls/epsv: pass"))
        raise InputError(problems)
    statements = []
    for pattern, outcome in table.items():
        line = table.line_of(pattern)
        text = str(pattern).strip()
        parts, why = _parse_pattern(text)
        if parts is None:
            problems.append(Problem(where, line, f"expect.{text}", why))
            continue
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            problems.append(Problem(where, line, f"expect.{text}", f"{outcome!r} is not an outcome; "
                                                                   f"expected one of {', '.join(OUTCOMES)}"))
            continue
        statements.append(Statement(text, outcome, line, parts))
    seen: dict[tuple, Statement] = {}
    for s in statements:
        if s.parts in seen:
            problems.append(Problem(where, s.line, f"expect.{s.pattern}",
                                    f"the same cells as line {seen[s.parts].line} ({seen[s.parts].pattern})"))
        seen.setdefault(s.parts, s)
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.line))
    return Expectations(where, tuple(statements))


# -- judging a run -----------------------------------------------------------------------------------

def annotate(doc: dict, expect: Expectations) -> None:
    """Put each cell's stated outcome into the results document: `expect` ({outcome, line,
    pattern}) and `expect_met` (None when no pattern states it, or the cell is a lab error or was
    not run)."""
    doc["expect_file"] = expect.source
    for s in doc["scenarios"]:
        st = expect.stated(s["id"])
        s["expect"] = None if st is None else {"outcome": st.outcome, "line": st.line, "pattern": st.pattern}
        undecided = s["outcome"] in ("error", "not-run") or s.get("not_run")
        s["expect_met"] = None if st is None or undecided else s["outcome"] == st.outcome


def unmet(doc: dict) -> list[dict]:
    """The cells that did not do what the expectations file states."""
    return [s for s in doc["scenarios"] if s.get("expect_met") is False]


def unused(doc: dict, expect: Expectations) -> list[Statement]:
    """Statements no cell of the run fell under (a narrower run, or a pattern that names nothing)."""
    used = {(s["expect"] or {}).get("line") for s in doc["scenarios"]}
    return [st for st in expect.statements if st.line not in used]
