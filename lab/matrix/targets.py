"""Which network a command means: a shipped picture by name, or an engineer's own file by path.

    t = target("client-nat")        # Target(name="client-nat", source="client-nat", shipped=True)
    t = target("my/net.yaml")       # Target(name=<its name:>, source="/abs/my/net.yaml", shipped=False)
    sources([t1, t2])               # {name: source}: what the runner hands each worker

A network is known by its `name:` everywhere a run reports it (cell ids, results.json, the
report); `source` is what a worker loads. A user's file is always run as itself, also when its
name is a shipped picture's (then a warning says so: lab.topology.check.shadowing), and two
different networks with one name in one run are refused: their cells could not be told apart.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

from lab.errors import InputError, Problem
from lab.matrix import scenario
from lab.topology import check, override
from lab.topology import loader as topo
from lab.topology.model import Topology


@dataclass(frozen=True)
class Target:
    name: str            # the topology's `name:`: the key of its cells and of its results entry
    source: str          # what a worker loads: the shipped name, or the file's absolute path
    shipped: bool        # a picture of the slides as shipped (its claims apply), not a user's file
    model: Topology


def target(text: str, where: str = "") -> Target:
    """The network `text` names (a shipped name or a file); InputError naming `where` if neither."""
    try:
        path = topo.resolve(text)
    except InputError as exc:
        raise InputError([Problem(where or p.file, p.line, p.field, p.message) for p in exc.problems]) from None
    model = topo.load(path)
    shipped = topo.is_shipped(model)
    return Target(model.name, model.name if shipped else str(path.resolve()), shipped, model)


def deep_check(t: Target, warn=lambda line: print(line, file=sys.stderr)) -> None:
    """Before a run of a user's file: what `ftlab topo check` finds beyond loading (InputError: a
    ruleset that does not load), and its warnings, said once."""
    if t.shipped:
        return
    problems = check.problems(t.model)
    if problems:
        raise InputError(problems)
    for w in check.warnings(t.model):
        warn("ftlab: " + check.format_warning(w))


def sources(targets: list[Target]) -> dict[str, str]:
    """{name: source}; two different networks under one name are an InputError."""
    out: dict[str, str] = {}
    for t in targets:
        if out.get(t.name, t.source) != t.source:
            raise InputError([Problem(t.source, 0, "name", f"{t.name!r} names two networks in this run "
                                      f"({out[t.name]} and {t.source}); give one of them another name")])
        out[t.name] = t.source
    return out


def with_overrides(cells: list[scenario.Cell], scen: scenario.Scenarios, paths: dict[str, str],
                   say=lambda line: print(line, file=sys.stderr)) -> list[scenario.Cell]:
    """The cells, each ALG override checked on its network (a router it names must be a NAT router
    there: InputError) and said once - which routers it changes, which it leaves as their file says.
    A cell whose only change is an override that changes nothing there is left out, and said so:
    it would be a copy of its base cell under another name."""
    models: dict[str, Topology] = {}
    said: set[tuple[str, str]] = set()
    keep = []
    for c in cells:
        spec = scen.spec(c)
        if not spec.alg:
            keep.append(c)
            continue
        if c.topology not in models:
            models[c.topology] = topo.load(paths.get(c.topology, c.topology))
        model = models[c.topology]
        _, notes = override.apply(model, spec.alg, where=c.id)
        same = not override.changes_anything(model, spec.alg)
        base = scen.spec(scenario.Cell(c.topology, c.security, c.data))
        only_alg = replace(spec, cell=base.cell, alg=None) == base
        if (c.topology, c.variant) not in said:
            said.add((c.topology, c.variant))
            bare = [o for o in c.options if "@" not in o and scen.variations[o].alg]
            if bare:      # the override as the engineer writes it: the variation's name, not its mode
                notes = [n.replace(f", {override.node_mode(override.parse(spec.alg))}@", f", +{bare[-1]}@")
                         for n in notes]
            what = "; ".join(notes) or f"{model.name} has no NAT router"
            left = " - changes nothing here, its cells are left out" if same and only_alg else ""
            say(f"ftlab: +{c.variant} on {c.topology}: {what}{left}")
        if not (same and only_alg):
            keep.append(c)
    return keep
