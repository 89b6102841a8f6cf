"""What a run would fail on, found before one: the checks `ftlab topo check` (and every run of a
user's file) adds to loading.

Loading (lab.topology.loader) is pure and reports every problem of the file itself. These go on:

    problems(topology)  -> [Problem]   # exit 2: a ruleset file that does not load (lab.topology.ipsave,
                                       # firewall.nftables.check for an nft ruleset)
    warnings(topology)  -> [Problem]   # the design blocks a control connection (the rule named);
                                       # the file's name shadows a shipped picture

A warning is a design a run can still test (a filter that admits only implicit TLS on 990 blocks
the control connection on 21, and that may be the point), so it does not fail the check unless
asked (`ftlab topo check --strict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from firewall import nftables
from lab.devkit.types import Flow, Unreadable
from lab.errors import Problem, read_input
from lab.topology import devices, ipsave, routing
from lab.topology.loader import is_shipped, names
from lab.topology.model import Topology


def problems(topology: Topology) -> list[Problem]:
    """Each ruleset file of the topology loaded in a throw-away namespace: every line it refuses."""
    found: list[Problem] = []
    for node in topology.nodes.values():
        path = node.firewall.iptables_save if node.firewall else None
        if path is not None and ipsave.can_restore() is None:    # else a warning says it was not loaded
            found += ipsave.restore_problems(read_input(path, "iptables-save file"), str(path))
        if node.firewall and node.firewall.nftables is not None:     # `nft -c`, as written and observed
            found += [Problem(str(node.firewall.nftables), line, f"nodes.{node.name}.firewall.nftables", message)
                      for line, message in nftables.check(node.firewall.nftables, node.firewall.nftables_text)]
    return found


def ruleset_not_loaded(topology: Topology) -> list[Problem]:
    """A warning when the topology has a ruleset file and this machine cannot load one for a check."""
    files = [n.firewall.iptables_save for n in topology.nodes.values() if n.firewall and n.firewall.iptables_save]
    if not files or (why := ipsave.can_restore()) is None:
        return []
    return [Problem(str(f), 0, "", f"not loaded for a check (a throw-away network namespace is not "
                                   f"available here: {why}); a run loads it and reports the first problem")
            for f in files]


def warnings(topology: Topology) -> list[Problem]:
    return [*shadowing(topology), *blocked_control(topology)]


def shadowing(topology: Topology) -> list[Problem]:
    """A user's file named like a shipped picture: the run uses the file, but the name is easy to misread."""
    if is_shipped(topology) or topology.name not in names():
        return []
    return [Problem(_file(topology), _name_line(topology.source), "name",
                    f"{topology.name!r} is also the name of a shipped picture (topologies/{topology.name}.yaml): "
                    f"runs of this file use this file, judged by the lab's model, not the slides; a name of "
                    f"its own avoids mixing up the two in reports")]


def blocked_control(topology: Topology) -> list[Problem]:
    """Each filter on the way that drops a control connection (21 and the implicit port), asked
    through the filter's own model with the packet as that filter sees it; the rule that decides
    is named at its line (in the topology file, or in the ruleset file)."""
    ftp = topology.ftp
    found = []
    for port, what in ((ftp.control_port, "control connection"), (ftp.implicit_port, "implicit-TLS control connection")):
        try:
            blocked = blocked_at(topology, port)
        except Unreadable:
            continue                     # outside what a filter's model reads: the run will tell
        if blocked:
            step = blocked.step
            found.append(Problem(blocked.file, blocked.line, blocked.field,
                                 f"blocks the {what} {ftp.client} → {ftp.server_address}:{port} (at {step.node}: "
                                 f"{step.src} → {step.dst}:{port}, in {step.in_interface}, out "
                                 f"{step.out_interface}): {blocked.why}"))
    return found


@dataclass(frozen=True)
class Blocked:
    """The filter that drops (or rejects) a new connection, and its rule's place."""
    step: routing.Step                   # the packet as that filter sees it
    file: str
    line: int
    field: str
    why: str


def blocked_at(topology: Topology, port: int) -> Blocked | None:
    """The first filter on the routed path that drops a new TCP connection from the FTP client to
    the address it dials, port `port` (None: every filter admits it, or it is not routed - the
    loader reports that). Raises lab.devkit.types.Unreadable when a filter's model cannot tell."""
    ftp = topology.ftp
    walk = routing.trace(topology, ftp.client, ftp.server_address, port)
    if walk.problem:
        return None
    for step in walk.steps:
        flow = Flow("tcp", step.src, step.dst, port, None, step.in_interface, step.out_interface, dnat=step.dnat)
        found = _blocks(topology, topology.nodes[step.node], flow)
        if found:
            return Blocked(step, *found)
    return None


def _blocks(topology: Topology, node, flow: Flow) -> tuple[str, int, str, str] | None:
    """(file, line, field, which rule) when the node's filter drops or rejects the new connection."""
    fw = node.firewall
    if fw is None or fw.mode == "dynamic":
        return None                      # a dynamic filter opens its control ports by itself
    if fw.mode == "nftables":
        action, line = devices.model("nftables")(fw, flow)
        if action in ("accept", "pass"):
            return None
        return str(fw.nftables), line or 0, "", f"{action} by {'line ' + str(line) if line else 'the policy'}"
    model = devices.model("static")
    action, where = model.decide(fw, flow)
    if action in ("accept", "pass"):
        return None
    if fw.iptables_save is not None:
        return str(fw.iptables_save), where or 0, "", f"{action}: {model.explain(fw, where)}"
    rule = fw.rules[where - 1] if where else None
    if rule is None:
        return _file(topology), node.line, f"nodes.{node.name}.firewall.default", \
            f"no rule permits it and the default is {fw.default}"
    return _file(topology), rule.line, f"nodes.{node.name}.firewall.rules[{where - 1}]", \
        f"rule {where}" + (f" ({rule.comment})" if rule.comment else "") + f" {action}s it"


def format_warning(p: Problem) -> str:
    """`file:line: warning: field: message`, as compilers print theirs."""
    where = f"{p.file}:{p.line}" if p.line else p.file
    return ": ".join(x for x in (where, "warning", p.field, p.message) if x)


def _file(topology: Topology) -> str:
    return str(topology.source) if topology.source else topology.name


def _name_line(source: Path | None) -> int:
    """The line of the top-level `name:` (the model keeps no line for it)."""
    if source is None:
        return 0
    for number, line in enumerate(read_input(source, "topology file").splitlines(), start=1):
        if re.match(r"name\s*:", line):
            return number
    return 0
