"""What a run would fail on, found before one: the checks `ftlab topo check` (and every run of a
user's file) adds to loading.

Loading (lab.topology.loader) is pure and reports every problem of the file itself. These go on:

    problems(topology)  -> [Problem]   # exit 2: a ruleset file that does not load (lab.topology.ipsave,
                                       # firewall.nftables.check for an nft ruleset)
    warnings(topology)  -> [Problem]   # the design blocks a control connection (the rule named);
                                       # the file's name shadows a shipped picture; a forward
                                       # translates the server's passive range to other ports

A warning is a design a run can still test (a filter that admits only implicit TLS on 990 blocks
the control connection on 21, and that may be the point), so it does not fail the check unless
asked (`ftlab topo check --strict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from firewall import nftables
from lab.devkit.types import Flow, PortRange, Unreadable
from lab.errors import InputError, Problem, read_input
from lab.ftps.config import ServerConfig
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
    return [*shadowing(topology), *blocked_control(topology), *translated_passive(topology)]


def translated_passive(topology: Topology) -> list[Problem]:
    """A NAT forward to the FTP server whose `to_ports` are not its `ports`, over the server's
    passive range (PASSIVEDATAPORTS): the server's 227 and 229
    announce its own ports, which are not the ones forwarded, so the client dials ports nothing
    forwards. An ALG that reads the reply opens the announced port by itself (plain, and tls-ccc
    after CCC: as measured, scapy and the kernel helper both); under TLS nothing can."""
    ftp = topology.ftp
    server_ips = {a.ip for i in topology.nodes[ftp.server].interfaces for a in i.addresses}
    passive = _passive_range(ftp.server_statements)
    control = {ftp.control_port, ftp.implicit_port}
    found = []
    for node in topology.nodes.values():
        nat = node.nat
        for n, f in enumerate(nat.forwards if nat else []):
            if f.proto != "tcp" or f.to_ports == f.ports or not ({f.to, f.to6} & server_ips):
                continue
            inside = range(f.to_ports.low, f.to_ports.high + 1)
            if any(p in f.to_ports for p in control):
                continue                  # a control port moved (2121 -> 21): no data announced there
            if passive is None or not any(p in passive for p in inside):
                continue                  # no passive port of the server is announced through it
            announced = f"PASSIVEDATAPORTS ({passive.low},{passive.high})"
            where = f.public or _outside_address(node)
            alg = {"off": f"{node.name} has no ALG (alg off): nothing rewrites the reply, every PASV and EPSV "
                          f"cell fails at data-connect",
                   }.get(nat.alg, f"{node.name}'s ALG ({nat.alg}) rewrites the reply and opens the announced "
                                  f"port itself where it reads the control channel in clear (plain; tls-ccc "
                                  f"after CCC), not under TLS: tls and implicit PASV/EPSV fail at data-connect")
            found.append(Problem(_file(topology), f.line, f"nodes.{node.name}.nat.forwards[{n}]",
                                 f"translates ports {f.ports} to {f.to}:{f.to_ports}, the server's passive "
                                 f"range ({announced}): its 227 and 229 announce ports {f.to_ports}, which the "
                                 f"client cannot reach at {where} (there only {f.ports} are forwarded); {alg}. "
                                 f"Forward the same ports (to_ports as ports) to let every mode through"))
    return found


def _passive_range(statements: dict) -> PortRange | None:
    value = statements.get("PASSIVEDATAPORTS")
    if not isinstance(value, str):
        return None
    try:
        low_high = ServerConfig.from_dict({"PASSIVEDATAPORTS": value}).PASSIVEDATAPORTS
    except InputError:
        return None                       # the loader reported it
    return PortRange(*low_high) if low_high else None


def _outside_address(node) -> str:
    intf = next((i for i in node.interfaces if i.name == node.nat.outside), None)
    return str(intf.address.ip) if intf else node.nat.outside


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
