"""The device registry: every device type the lab can program on a node, and the one way the
engine reaches them.

A device is one module in nat/ or firewall/ that provides DEVICE (lab.devkit.device.Device). The
engine knows devices only through this module: LabNet programs a node with setups(), the start-up
probe checks kernel_features(), prediction asks the devices' models (nat_inspector(), model()).
Adding a device type: its module, and one entry in DEVICES (and INSPECTORS for a new ALG mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from firewall import dropwatch, dynamic, nftables, static
from lab.devkit.device import Device, DeviceSetup
from lab.devkit.features import KernelFeature
from lab.devkit.observed import RuleSet
from lab.devkit.types import ALG_MODES
from lab.devkit.view import InterfaceView, NodeView
from lab.topology.model import Node, Topology
from nat import alg, kernel_helper, nft_helper, rules

#: In the order they are programmed on a node: the NAT's kernel rules, the static filter, the
#: nftables filter, the NAT's inspector, the dynamic filter, and last the drop observer (it needs
#: every earlier device's drop reasons). A user's ruleset file (iptables-save or nft) is loaded
#: before all of them.
DEVICES: tuple[Device, ...] = (rules.DEVICE, static.DEVICE, nftables.DEVICE, alg.DEVICE, kernel_helper.DEVICE,
                               nft_helper.DEVICE, dynamic.DEVICE, dropwatch.DEVICE)

#: The device that reads a NAT router's control channel, per ALG mode (`off`: the NAT alone).
INSPECTORS: dict[str, Device] = {"scapy": alg.DEVICE, "kernel": kernel_helper.DEVICE,
                                 "kernel-nft": nft_helper.DEVICE, "off": rules.DEVICE}
assert tuple(INSPECTORS) == ALG_MODES, "one inspector per ALG mode"


def sections(node: Node, alg_mode: str | None = None) -> dict[str, Any]:
    """The node's device sections by name; `alg_mode` overrides the nat section's ALG (a run's --alg)."""
    nat = node.nat
    if nat is not None and alg_mode is not None:
        nat = replace(nat, alg=alg_mode)
    return {"nat": nat, "firewall": node.firewall}


def control_ports(node: Node, topology: Topology) -> tuple[int, ...]:
    """The FTP control ports a device on this node inspects: the picture's and its sections'."""
    ports = {topology.ftp.control_port, topology.ftp.implicit_port}
    for section in (node.nat, node.firewall):
        if section is not None:
            ports |= set(section.control_ports)
    return tuple(sorted(ports))


def view(node: Node, topology: Topology, events: Path) -> NodeView:
    """The node as its devices see it (without a section: setups() adds each device's own)."""
    return NodeView(name=node.name,
                    interfaces=tuple(InterfaceView(i.name, i.address, i.peer, i.address6) for i in node.interfaces),
                    events=Path(events), control_ports=control_ports(node, topology))


def setups(node: Node, topology: Topology, events: Path, alg_mode: str | None = None,
           programs: bool = True, drop_reasons: Mapping[int, str] | None = None
           ) -> list[tuple[Device, DeviceSetup]]:
    """What each device on the node asks the engine to program, in order.

    programs=False: only devices without a program (kernel rules). drop_reasons: the observed
    drops the engine's own rules on this node use (the internet's), for the drop observer.
    """
    found = sections(node, alg_mode)
    base = replace(view(node, topology, events),
                   late_rewrite=found["nat"] is not None and found["nat"].alg in ("kernel", "kernel-nft"))
    observed = RuleSet(reasons=dict(drop_reasons or {}))
    out = []
    for device in DEVICES:
        section = found[device.section] if device.section else None
        if (device.program and not programs) or (device.section and section is None):
            continue
        this = replace(base, section=section, drop_reasons=dict(observed.reasons))
        if not device.applies(this):
            continue
        setup = device.setup(this)
        observed.extend(RuleSet(reasons=setup.reasons))     # a mark used twice is a bug: raises
        out.append((device, setup))
    return out


def kernel_features() -> list[KernelFeature]:
    """Every kernel feature some device needs, each once (what the start-up probe checks)."""
    return list(dict.fromkeys(f for device in DEVICES for f in device.features))


def nat_inspector(alg_mode: str) -> Any:
    """The model of what reads a NAT router's control channel in this ALG mode."""
    return INSPECTORS[alg_mode].model


def model(name: str) -> Any:
    """A device's model by the device's name ("static", "dynamic", ...)."""
    return next(d.model for d in DEVICES if d.name == name)


def unreadable(firewall: Any) -> list[str]:
    """Why a firewall section's model cannot judge it (an nft ruleset outside the subset its model
    reads); empty when it can."""
    return nftables.unreadable(firewall) if firewall.mode == "nftables" else []
