"""What a report says about a network beside its cells, taken from the model that ran (any topology:
a shipped picture or an engineer's own file). Pure but for reading the ruleset files it names.

    topology_facts(model, shipped=False, overrides={"kernel": notes})    # -> results.json topologies[name]
    cell_ftpdata(model, spec)                                            # -> the statements both ends ran with

The entry holds the network's own diagram, where it came from, who predicts its cells ("the
slides" only for the shipped pictures; "the lab's model" for everyone else's), every device as
it was programmed - its settings in words, the kernel rules the lab loaded, a ruleset file as
written, the ALG mode and what each of the run's ALG overrides did - and the FTP.DATA statements of
both ends. lab.report renders it from results.json alone.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

from lab.errors import InputError, LabError
from lab.matrix import scenario, servers
from lab.matrix.ends import client_statements
from lab.topology import devices, diagram, override
from lab.topology.describe import format_firewall, format_nat
from lab.topology.loader import names
from lab.topology.model import Topology

#: A ruleset file is shown as written up to this size (a real one is a few KiB).
MAX_RULESET_CHARS = 64 * 1024
#: Who predicts a network's cells: the slides for their own pictures, the lab's model for any other.
PREDICTED_BY = {True: "the slides", False: "the lab's model"}


def topology_facts(model: Topology, *, shipped: bool, overrides: dict[str, list[str]] | None = None) -> dict:
    """The results.json entry of a network (beside baseline and timings, which the worker measures)."""
    return {
        "name": model.name, "description": model.description,
        "source": str(model.source) if model.source else None, "shipped": shipped,
        "shadows_shipped": not shipped and model.name in names(),
        "predicted_by": PREDICTED_BY[shipped],
        "diagram": diagram_uri(model),
        "diagram_v6": diagram_uri(model, 6),
        "path": " → ".join(model.hops()),
        "devices": [device_facts(model, node) for node in model.nodes.values() if node.is_device],
        "ftpdata": base_ftpdata(model),
        "alg_overrides": overrides or {},
    }


def device_facts(model: Topology, node) -> dict:
    """One device node: its settings in words, the kernel rules the lab programs on it, its ruleset file."""
    lines = []
    if node.nat:
        lines += format_nat(node.nat)
    if node.firewall:
        lines += format_firewall(node.firewall)
    entry = {"node": node.name, "kinds": node.device_kinds(), "on_path": node.name in model.path(),
             "settings": lines, "alg": node.nat.alg if node.nat else None, "kernel_rules": kernel_rules(model, node)}
    source = getattr(node.firewall, "iptables_save", None) or getattr(node.firewall, "nftables", None)
    if source:
        entry["ruleset"] = {"file": str(source), "text": ruleset_text(Path(source))}
    return entry


def kernel_rules(model: Topology, node) -> list[str]:
    """The commands the lab runs to program the node's devices (lab.topology.devices.setups), in order;
    a device program as the command that starts it."""
    try:
        setups = devices.setups(node, model, Path("events.jsonl"))
    except (ValueError, OSError, LabError) as exc:     # a report must not die of a description
        return [f"(not described: {exc})"]
    out = []
    for device, setup in setups:
        if setup.restore is not None:
            out.append(f"# {device.name}: ruleset {setup.restore.source}, loaded with its drops observed")
        out += [shlex.join(argv) for argv in setup.iptables]
        out += [f"sysctl -w {k}={v}" for k, v in setup.sysctls.items()]
        if setup.argv:
            out.append(f"# {device.name}: program " + shlex.join(_portable(setup.argv)))
    return out


def _portable(argv: list[str]) -> list[str]:
    """A device program's command without this machine's interpreter path (`python3 -m nat.alg`)."""
    return ["python3", *argv[1:]] if argv and Path(argv[0]).name.startswith("python") else list(argv)


def ruleset_text(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror or exc})"
    return text if len(text) <= MAX_RULESET_CHARS else text[:MAX_RULESET_CHARS] + "\n... (cut)"


def base_ftpdata(model: Topology) -> dict:
    """The statements both ends of the network's base cells run with (the file's and the lab's)."""
    return cell_ftpdata(model, base_spec(model))


def base_spec(model: Topology) -> scenario.CellSpec:
    cell = scenario.Cell(model.name, "tls", "pasv")
    return scenario.CellSpec(cell, "builtin", "builtin", None, {}, {}, ())


#: Why the lab sets a statement that a design did not write (the report says so beside it).
LAB_DEFAULT_WHY = {
    ("server", "TLSRFCLEVEL"): "the lab's pictures use RFC4217 (z/OS's own default is DRAFT, which refuses CCC)",
    ("server", "MAXSESSIONSPERADDRESS"): "off in the matrix: every cell comes from one client address",
    ("client", "DATACONNTIME"): "the lab's client gives up a data connection after this many seconds",
}


def cell_ftpdata(model: Topology, spec: scenario.CellSpec) -> dict:
    """{"server": {...}, "client": {...}, "lab_defaults": {"server": {KEY: why}, "client": {...}}}:
    what the cell's server and client were configured with (SECUREIMPLICITZOS follows the cell's
    security mode, so it is left out), and which of those statements neither the design (its
    topology file) nor the cell's variation wrote - the lab's own defaults, with why."""
    server = {k: v for k, v in servers.server_statements(model, spec).items() if k != "SECUREIMPLICITZOS"}
    client = client_statements(model, spec)
    written = {"server": {**model.ftp.server_statements, **spec.server_statements},
               "client": {**model.ftp.client_statements, **spec.client_statements}}
    defaults = {side: {k: LAB_DEFAULT_WHY.get((side, k), "the lab's default")
                       for k in st if k not in written[side]}
                for side, st in (("server", server), ("client", client))}
    return {"server": server, "client": client, "lab_defaults": defaults}


def override_notes(model: Topology, specs: set[str]) -> dict[str, list[str]]:
    """{override: what it did on this network} for the ALG overrides a run used."""
    out = {}
    for spec in sorted(specs):
        try:
            out[spec] = override.apply(model, spec)[1]
        except InputError as exc:
            out[spec] = [str(exc)]
    return out


def v6_plan(model: Topology) -> Topology | None:
    """The network as its IPv6 cells run on it: every interface's IPv6 address in the place of its
    IPv4 one and the IPv6 address the client dials (None: the network has no IPv6 plan). What
    lab.topology.diagram draws of it is the v6 diagram."""
    if model.ftp.server_address6 is None and model.ftp.server_address.version != 6:
        return None
    plan = copy.deepcopy(model)
    for node in plan.nodes.values():
        for intf in node.interfaces:
            if intf.address6 is not None:
                intf.address = intf.address6
    if plan.ftp.server_address6 is not None:
        plan.ftp.server_address = plan.ftp.server_address6
    plan.description = f"{model.description} (IPv6 plan: the +v6 cells)".strip()
    return plan


def diagram_uri(model: Topology, version: int = 4) -> str | None:
    """The network's diagram as a `data:image/png;base64,...` URI (None if it cannot be drawn);
    version 6: the diagram of its IPv6 plan (None when it has none)."""
    if version == 6 and model.ftp.server_address.version != 6:
        model = v6_plan(model)
        if model is None:
            return None
    return diagram.data_uri(model)
