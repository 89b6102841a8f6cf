"""What a device is to the engine: its setup result, and the entry the engine's registry lists.

A device module (one in nat/ or firewall/) provides `DEVICE = Device(...)`: the config section it
reads, when it applies, setup(view) -> DeviceSetup (kernel rules, sysctls, the program to start),
a pure model of how it treats a connection (what prediction asks), the events it writes and the
kernel features it needs (what the start-up probe checks). The engine never knows more of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.devkit.features import KernelFeature
from lab.devkit.view import NodeView


@dataclass(frozen=True)
class Restore:
    """A user's ruleset file to load: `source` as written (checked first with `check + [file]`, so
    an error names its line) and `text`, the same rules with their drops observed, which is
    loaded with `load + [file]`. An iptables-save file by default; an nft ruleset names nft."""

    source: Path
    text: str
    check: tuple[str, ...] = ("iptables-restore", "--test")
    load: tuple[str, ...] = ("iptables-restore",)
    suffix: str = "iptables"          # the loaded copy is <node>-<suffix>-observed.rules


@dataclass
class DeviceSetup:
    """The pure result of a device's setup(): LabNet loads `restore` (if any) first, runs iptables in
    order, writes sysctls, writes `config` as JSON to the --config file and starts `argv` (if
    any) in the node. `reasons`: the observed drops its rules use (mark -> why)."""

    iptables: list[list[str]] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None
    config: dict | None = None
    reasons: dict[int, str] = field(default_factory=dict)
    restore: Restore | None = None


@dataclass(frozen=True)
class Device:
    """One device type, as the engine's registry lists it.

    name:     the program's name on the node ("alg", "dynamic", ...): event `program`, file names
    section:  the topology section it reads ("nat", "firewall"), or None (the drop observer)
    applies:  does it run on a node with this view (its section, the drop reasons so far)?
    setup:    what to program, given only the view
    program:  the module started in the node (`python -m <program>`), None for kernel rules only
    model:    the pure model prediction asks (see each device's module), or None
    events:   the event types it writes (lab.devkit.events.TYPES)
    features: the kernel features it needs
    """

    name: str
    section: str | None
    applies: Callable[[NodeView], bool]
    setup: Callable[[NodeView], DeviceSetup]
    program: str | None = None
    model: Any = None
    events: frozenset[str] = frozenset()
    features: tuple[KernelFeature, ...] = ()


# -- a device's model at the netfilter hooks (what the path walk asks) ----------------------------------

#: The hooks a walk takes a connection's first packet through, in the kernel's order.
RAW_PREROUTING, MANGLE_PREROUTING, NAT_PREROUTING = "raw PREROUTING", "mangle PREROUTING", "nat PREROUTING"
FILTER_FORWARD, FILTER_INPUT, NAT_POSTROUTING = "filter FORWARD", "filter INPUT", "nat POSTROUTING"
HOOKS = (RAW_PREROUTING, MANGLE_PREROUTING, NAT_PREROUTING, FILTER_FORWARD, FILTER_INPUT, NAT_POSTROUTING)


@dataclass(frozen=True)
class At:
    """Where a model is asked: the router, its section for this device, its control ports, and
    whether a kernel NAT helper on the same router rewrites after this device read the stream."""

    node: str
    section: Any
    control_ports: tuple[int, ...]
    late_rewrite: bool = False
    outside: tuple[str | None, str | None] = (None, None)     # a NAT's outside addresses (IPv4, IPv6)


@dataclass(frozen=True)
class Decision:
    """A model's answer at a hook: `verdict` "continue" (not decided here: the next rule or hook),
    "accept", "drop", "reject" or "translate" (a DNAT to `to`, (address, port)); `why` in the
    prediction's words, a whole sentence in which `{node}` stands for the router and `{pkt}` for the
    connection as the walk shows it (a drop's reason; on an accept or a translation, what the device
    did, or empty when there is nothing to say)."""

    verdict: str = "continue"
    why: str = ""
    to: tuple | None = None


@dataclass(frozen=True)
class Control:
    """A control connection as it reaches a router: (src, sport, dst, dport) of the client's packets
    and of the server's (a NAT on the router shows one side under another address), and the
    router's interfaces each arrives on."""

    forward: tuple
    back: tuple
    client_if: str | None = None
    server_if: str | None = None


@dataclass(frozen=True)
class Reading:
    """What a model did with an announcement crossing it: the line as it leaves, and what it did,
    a sentence with `{node}` for the router and `{port}` for the port as the walk shows it (empty:
    nothing to say)."""

    line: bytes
    said: str = ""


class HookModel(Protocol):
    """The interface a device's model gives the path walk, so that the walk has no device logic:

    at_hook(hook, flow, state, at) -> Decision: a new connection's first packet (lab.devkit.types.Flow)
        at one of HOOKS; `state` is this router's dict for the cell, where the model keeps what it
        learned (its runtime);
    at_announcement(state, at, control, c2s, line, security, first_after_ccc) -> Reading: the
        announcement `line` crossing the router on the control connection `control` (Control),
        client -> server when c2s.
    """

    hooks: tuple[str, ...]

    def at_hook(self, hook: str, flow: Any, state: dict, at: At) -> Decision: ...

    def at_announcement(self, state: dict, at: At, control: Control, c2s: bool, line: bytes,
                        security: str, first_after_ccc: str) -> Reading: ...
