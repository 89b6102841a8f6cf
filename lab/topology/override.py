"""A run's ALG override, per NAT device: a variation changes only what it says.

An override is written `MODE` or `MODE@ROUTER`, several joined by commas and applied in order
(a cell's variations `alg-kernel+alg-off@cgn` give "kernel,off@cgn"):

    kernel           every NAT router whose ALG is on (scapy or kernel) gets the kernel helper;
                     a router whose file says `alg: off` stays off - an override never turns
                     inspection on behind the engineer's back (the note says how: kernel@NAME)
    off              every NAT router's ALG off
    kernel@nat-c     exactly that router, whatever its file says (it must be a NAT router)

    topology, notes = apply(model, "kernel")       # a new Topology; the model is not changed
    notes  ->  ["nat-c: ALG scapy -> kernel", "cgn: ALG stays off (alg: off in ...; an override naming it, kernel@cgn, turns it on)"]
"""

from __future__ import annotations

import copy

from lab.devkit.types import ALG_MODES
from lab.errors import InputError, Problem
from lab.topology.model import Topology


def parse(spec: str | None, where: str = "alg") -> list[tuple[str, str | None]]:
    """[(mode, router or None)] of an override ("" / None: none)."""
    out = []
    for part in filter(None, (spec or "").split(",")):
        mode, _, router = part.strip().partition("@")
        if mode not in ALG_MODES or (router == "" and "@" in part):
            raise InputError([Problem(where, 0, "", f"{part!r} is not an ALG override (MODE or MODE@ROUTER, "
                                                    f"MODE one of {', '.join(ALG_MODES)})")])
        out.append((mode, router or None))
    return out


def join(parts: list[tuple[str, str | None]]) -> str | None:
    """The override text of parts (None when there are none): the inverse of parse."""
    return ",".join(mode + (f"@{router}" if router else "") for mode, router in parts) or None


def apply(topology: Topology, spec: str | None, where: str = "alg") -> tuple[Topology, list[str]]:
    """The topology with the override applied to its NAT routers, and one note per router it concerns."""
    parts = parse(spec, where)
    if not parts:
        return topology, []
    result = copy.deepcopy(topology)
    nats = {n.name: n for n in result.nodes.values() if n.nat is not None}
    before = {name: n.nat.alg for name, n in nats.items()}
    held: set[str] = set()
    for mode, router in parts:
        if router is not None:
            if router not in nats:
                raise InputError([Problem(where, 0, "", f"{mode}@{router}: {topology.name} has no NAT router "
                                                        f"{router!r} (its NAT routers: {', '.join(nats) or 'none'})")])
            nats[router].nat.alg = mode
            held.discard(router)
            continue
        for name, node in nats.items():
            if node.nat.alg == "off" and mode != "off":
                held.add(name)          # off in the file (or by an earlier part): an override does not turn it on
            else:
                node.nat.alg = mode
    notes = []
    for name, node in nats.items():
        if name in held:
            notes.append(f"{name}: ALG stays off (alg: off in {topology.name}; an override naming it, "
                         f"{node_mode(parts)}@{name}, turns it on)")
        elif node.nat.alg != before[name]:
            notes.append(f"{name}: ALG {before[name]} -> {node.nat.alg}")
        else:
            notes.append(f"{name}: ALG {node.nat.alg}, unchanged")
    return result, notes


def node_mode(parts: list[tuple[str, str | None]]) -> str:
    """The mode a bare override asks for (the last bare one), for the note on a router it skipped."""
    return next((mode for mode, router in reversed(parts) if router is None), parts[-1][0])


def uniform(spec: str | None) -> str | None:
    """The one mode of an override that names no router (for a model that knows one ALG per
    picture); None when there is none or it names routers."""
    parts = parse(spec)
    return parts[-1][0] if parts and all(router is None for _, router in parts) else None


def changes_anything(topology: Topology, spec: str | None) -> bool:
    """Does the override change any router's ALG on this topology?"""
    changed, _ = apply(topology, spec)
    return any(changed.nodes[n].nat.alg != node.nat.alg for n, node in topology.nodes.items() if node.nat)
