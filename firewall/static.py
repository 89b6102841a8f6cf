"""The static packet filter: an ordered rule list, first match wins, then the default.

Pure: the `firewall:` section (mode static) in, iptables argv lists out (the engine runs them
inside the filter's namespace). The filter sits in the FORWARD path and does no inspection:

1. packets of connections already admitted (ESTABLISHED, RELATED) pass;
2. then the user's rules in order; a rule's drop is observed (MARK + NFQUEUE 30, see
   lab.devkit.observed) so the run learns which rule dropped which packet;
3. then the default (accept, or an observed drop).

A user may hand an `iptables-save` file instead of rules; the engine loads it with
iptables-restore after checking it with `iptables-restore --test` (restore_argv below). Its
drops are observed too (observe_saved_drops): every `-j DROP` of the filter table and every DROP
policy of a built-in chain becomes a jump to a marking chain, and every `-j REJECT` a jump to a
chain that logs the packet to the drop observer and then rejects it as written, so a run names
the file's line that dropped or rejected a packet, as it does for the lab's own rule lists. The
model reads the file's nat table as the router's NAT (`nat`), its raw table's `-j CT --helper ftp`
(`helper`) and says what trips a stateful match on the way (`notes`).

What a rule's fields mean is written once, in FIELDS: each field's iptables option (rule
generation, match_args) and its test on a connection (the model prediction asks: verdict,
decide). An iptables-save file is judged by firewall.saved, which reads a documented subset.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firewall import saved, savefile
from firewall.section import FilterRule, Firewall
from lab.devkit import features
from lab.devkit.conntrack import idle_sysctls
from lab.devkit.device import Device, DeviceSetup, Restore
from lab.devkit.observed import LOG_PREFIX, RuleSet, drop_chain
from lab.devkit.queues import DROPWATCH, DROPWATCH_LOG
from lab.devkit.types import Flow
from lab.devkit.view import NodeView

CHAIN = "ftlab-filter"
#: Drop reasons: the default drop, and one mark per dropping rule (RULE_MARK_BASE + position).
MARK_DEFAULT = 3
RULE_MARK_BASE = 100
#: Marks of an iptables-save file's drops: SAVED_MARK_BASE + the file's line number.
SAVED_MARK_BASE = 10000
_DROP_TARGET = re.compile(r"\s(?:-j|--jump)\s+DROP\s*$")
_REJECT_TARGET = re.compile(r"\s(?:-j|--jump)\s+REJECT(?P<with>\s+--reject-with\s+\S+)?\s*$")


@dataclass(frozen=True)
class Field:
    """One field of a rule: the iptables option it becomes, and whether a connection matches it."""

    name: str
    option: str
    text: Callable[[Any], str]                  # the field's value as iptables writes it
    matches: Callable[[Any, Flow], bool]        # does the connection match this (set) value?


#: A rule's fields in the order iptables takes them; a field left None (proto: "any") matches anything.
FIELDS = (
    Field("proto", "-p", str, lambda proto, f: proto == f.proto),
    Field("src", "-s", str, lambda net, f: f.src in net),
    Field("dst", "-d", str, lambda net, f: f.dst in net),
    Field("in_interface", "-i", str, lambda name, f: name == f.in_interface),
    Field("out_interface", "-o", str, lambda name, f: name == f.out_interface),
    # an unknown source port (None: the client's ephemeral one) never matches a sport rule
    Field("sport", "--sport", lambda r: r.iptables(), lambda r, f: f.sport is not None and f.sport in r),
    Field("dport", "--dport", lambda r: r.iptables(), lambda r, f: f.dport in r),
)


def _set_fields(rule: FilterRule) -> list[tuple[Field, Any]]:
    """The fields this rule sets (checked: ports need tcp or udp)."""
    if rule.proto == "any" and (rule.sport or rule.dport):
        raise ValueError(f"line {rule.line}: ports need proto tcp or udp, not {rule.proto}")
    if rule.proto == "icmp" and (rule.sport or rule.dport):
        raise ValueError(f"line {rule.line}: icmp has no ports")
    values = [(f, getattr(rule, f.name)) for f in FIELDS]
    return [(f, v) for f, v in values if v is not None and not (f.name == "proto" and v == "any")]


def match_args(rule: FilterRule) -> list[str]:
    """The iptables match for one rule."""
    return [arg for f, value in _set_fields(rule) for arg in (f.option, f.text(value))]


def matches(rule: FilterRule, flow: Flow) -> bool:
    """Does the rule match a new connection?"""
    return all(f.matches(value, flow) for f, value in _set_fields(rule))


def verdict(firewall: Firewall, flow: Flow) -> tuple[str, int | None]:
    """The filter's model: what it does with a new connection (accept | drop) and the position of
    the rule that decides (None: the default). Connections it admitted before pass anyway.
    For an iptables-save file: its line (see decide)."""
    action, where = decide(firewall, flow)
    return ("drop" if action in ("drop", "reject") else "accept"), where


def decide(firewall: Firewall, flow: Flow, hook: str = "FORWARD", local: frozenset | None = None,
           first: bool = True) -> tuple[str, int | None]:
    """The filter's model, as the path walk asks it: (accept | drop | reject | pass, where).

    Lab rules (FORWARD only): ESTABLISHED/RELATED pass, then the rules (where = position), then
    the default (None). An iptables-save file (firewall.saved): `hook` chain of its filter table,
    where = the deciding line; "pass" when no rule decided and the chain's policy is ACCEPT
    (rules the node adds after the file's still apply); raises lab.devkit.types.Unreadable when
    the verdict depends on a rule outside what the model reads. `local`: the router's own
    addresses (what -m addrtype LOCAL matches); `first` False: a later packet conntrack takes up as
    new (--syn is false for it)."""
    if firewall.iptables_save is not None:
        found = saved.verdict(saved_text(firewall), flow, hook, local, first)
        return ("pass" if found.action == "policy-accept" else found.action), found.line
    if hook != "FORWARD":
        return "pass", None
    if flow.state in ("ESTABLISHED", "RELATED"):
        return "accept", None
    for position, rule in enumerate(firewall.rules, start=1):
        if matches(rule, flow):
            return rule.action, position
    return firewall.default, None


def notes(firewall: Firewall, flow: Flow, hook: str = "FORWARD", local: frozenset | None = None) -> list[str]:
    """The stateful matches (-m limit, -m recent, -m hashlimit) the decision met on the way, and
    what trips each ("FILE:LINE: ..."): decide judged them for the first connections."""
    if firewall.iptables_save is None:
        return []
    found = saved.verdict(saved_text(firewall), flow, hook, local)
    name = Path(firewall.iptables_save).name
    return [f"{name}:{note}" for note in found.notes]


def nat(firewall: Firewall, flow: Flow, hook: str = "PREROUTING", local: frozenset | None = None
        ) -> saved.Nat | None:
    """What the file's nat table does to a new connection at `hook` (DNAT, REDIRECT, SNAT,
    MASQUERADE: firewall.saved.Nat), None: nothing (and always for the lab's own rules)."""
    if firewall.iptables_save is None:
        return None
    return saved.nat(saved_text(firewall), flow, hook, local)


def helper(firewall: Firewall, flow: Flow, local: frozenset | None = None) -> str | None:
    """"FILE:LINE" of the raw table rule that attaches the kernel FTP helper to this (control)
    connection, or None."""
    if firewall.iptables_save is None:
        return None
    line = saved.helper(saved_text(firewall), flow, local)
    return None if line is None else f"{Path(firewall.iptables_save).name}:{line}"


def saved_text(firewall: Firewall) -> str:
    """The text of the firewall's iptables-save file (read once per version of the file)."""
    path = Path(firewall.iptables_save)
    st = path.stat()
    return _read(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read(path: Path, mtime: int, size: int) -> str:
    return path.read_text()


def explain(firewall: Firewall, where: int | None) -> str:
    """The rule (or default, or policy) `decide` names, as a drop report names it."""
    if firewall.iptables_save is not None:
        name = Path(firewall.iptables_save).name
        text = saved.rule_text(saved_text(firewall), where) if where else ""
        return f"{name}:{where}: {text}" if where else f"{name}: the chain's policy"
    if where is None:
        return f"the static filter's default ({firewall.default})"
    return describe(firewall.rules[where - 1], where)


def unreadable(firewall: Firewall) -> list[str]:
    """What the model cannot read in this filter ("FILE:LINE uses X"); empty for the lab's rules."""
    if firewall.iptables_save is None:
        return []
    name = Path(firewall.iptables_save).name
    return [f"{name}:{line} uses {what}" for line, what in saved.unreadable(saved_text(firewall))]


def deciding(firewall: Firewall) -> list[str]:
    """What the model cannot read in rules that can decide a packet (a verdict, a jump, a
    translation): `unreadable` without the LOG, counting and marking rules, which never decide."""
    if firewall.iptables_save is None:
        return []
    name = Path(firewall.iptables_save).name
    return [f"{name}:{line} uses {what}" for line, what in saved.deciding(saved_text(firewall))]


def describe(rule: FilterRule, position: int) -> str:
    """The rule as a drop reason and an iptables comment names it."""
    where = f" (line {rule.line})" if rule.line else ""
    what = f": {rule.comment}" if rule.comment else ""
    return f"static filter rule {position}{where}{what}"


def filter_rules(firewall: Firewall, tools: tuple[str, ...] = ("iptables",)) -> RuleSet:
    """The rule list as iptables argv lists, with the drop reasons they use. `tools` with ip6tables
    (a node with IPv6): the same chain for IPv6, where a rule naming an IPv4 address or prefix
    goes to iptables only and one naming an IPv6 one to ip6tables only."""
    if firewall.mode != "static":
        raise ValueError(f"not a static filter: mode {firewall.mode}")
    out = RuleSet()
    for tool in tools:
        ipt = [tool, "-t", "filter"]
        out.iptables += [
            ipt + ["-N", CHAIN],
            ipt + ["-A", "FORWARD", "-j", CHAIN],
            ipt + ["-A", CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ]
    for position, rule in enumerate(firewall.rules, start=1):
        comment = ["-m", "comment", "--comment", describe(rule, position)[:250]]
        versions = {net.version for net in (rule.src, rule.dst) if net is not None}
        mine = [t for t in tools if not versions or (6 if t == "ip6tables" else 4) in versions]
        if rule.action == "accept":
            target = ["-j", "ACCEPT"]
        else:
            mark = RULE_MARK_BASE + position
            chain = f"ftlab-fw-rule-{position}"
            out.extend(RuleSet([a for t in mine for a in drop_chain(chain, mark, tool=t)],
                               {mark: f"dropped by {describe(rule, position)}"}))
            target = ["-j", chain]
        proto = ["-p", "ipv6-icmp"] if rule.proto == "icmp" else []
        for tool in mine:
            args = match_args(rule)
            if tool == "ip6tables" and proto:      # ICMP is ipv6-icmp over IPv6
                args = [*proto, *args[2:]] if args[:2] == ["-p", "icmp"] else args
            out.iptables.append([tool, "-t", "filter", "-A", CHAIN, *args, *comment, *target])
    if firewall.default == "accept":
        out.iptables += [[tool, "-t", "filter", "-A", CHAIN, "-j", "ACCEPT"] for tool in tools]
    else:
        out.extend(RuleSet([a for t in tools for a in drop_chain("ftlab-fw-default", MARK_DEFAULT, tool=t)],
                           {MARK_DEFAULT: "dropped by the static filter's default (no rule permits it)"}))
        out.iptables += [[tool, "-t", "filter", "-A", CHAIN, "-j", "ftlab-fw-default"] for tool in tools]
    return out


def restore_argv(path: Path, test: bool = False) -> list[str]:
    """Load (or with test=True only check) a user's iptables-save file (setup runs it in the
    sandbox, firewall.savefile.sandboxed: the file is all iptables-restore sees of the host's files)."""
    return ["iptables-restore", *(["--test"] if test else []), str(path)]


def observe_saved_drops(text: str, name: str) -> tuple[str, dict[int, str]]:
    """An iptables-save text whose filter-table drops go to dropwatch, and their reasons.

    Pure. The packets meet the same fate (dropped; the kernel drops queued packets even with no
    listener), only now each drop is reported with `name:line` and the rule's text. The marking
    chains are declared right after `*filter` (a jump needs its chain to exist) and filled, with
    the policies' catch-all rules, just before that table's COMMIT.
    """
    reasons: dict[int, str] = {}
    policies = {}
    rejects: dict[int, str] = {}       # mark -> its --reject-with (a REJECT is logged, then rejects)
    for line in savefile.lines(text):
        mark = SAVED_MARK_BASE + line.number
        if line.table != "filter":
            continue
        if line.kind == "chain" and line.chain in saved.BUILTIN and line.policy == "DROP":
            policies[mark] = line.chain
            reasons[mark] = f"dropped by {name}:{line.number}: the {line.chain} chain's policy DROP"
        elif line.kind == "rule" and line.words[:1] in (("-A",), ("--append",)) and _DROP_TARGET.search(line.text):
            reasons[mark] = f"dropped by {name}:{line.number}: {line.text}"
        elif line.kind == "rule" and line.words[:1] in (("-A",), ("--append",)) and \
                (m := _REJECT_TARGET.search(line.text)):
            reasons[mark] = f"rejected by {name}:{line.number}: {line.text}"
            rejects[mark] = (m.group("with") or "").strip()
    lines = text.splitlines()
    out: list[str] = []
    table = ""
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        mark = SAVED_MARK_BASE + number
        if stripped.startswith("*"):
            table = stripped[1:]
            out.append(line)
            if table == "filter":
                out += [f":ftlab-saved-{m - SAVED_MARK_BASE} - [0:0]" for m in sorted(reasons)]
            continue
        if table == "filter" and stripped == "COMMIT":
            out += [f"-A {chain} -j ftlab-saved-{m - SAVED_MARK_BASE}" for m, chain in policies.items()]
            for m in sorted(reasons):
                chain = f"ftlab-saved-{m - SAVED_MARK_BASE}"
                if m in rejects:        # the packet must still be rejected: logged to the observer first
                    # threshold 1: sent at once (the kernel batches a log group's packets for up to
                    # 1 s otherwise, and a rejected client gives up at once)
                    out += [f'-A {chain} -j NFLOG --nflog-group {DROPWATCH_LOG} --nflog-prefix "{LOG_PREFIX}{m}" '
                            f'--nflog-threshold 1',
                            # a tcp-reset needs -p tcp in its own rule (the jumping rule had it)
                            f"-A {chain}{' -p tcp' if 'tcp-reset' in rejects[m] else ''} -j REJECT {rejects[m]}".rstrip()]
                    continue
                out += [f"-A {chain} -j MARK --set-mark {m}",
                        f"-A {chain} -j NFQUEUE --queue-num {DROPWATCH}"]
        elif table == "filter" and mark in reasons and mark not in policies:
            line = (_REJECT_TARGET if mark in rejects else _DROP_TARGET).sub(f" -j ftlab-saved-{number}", stripped)
        out.append(line)
    return "\n".join(out) + "\n", reasons


def port_edges(firewall: Firewall) -> set[int]:
    """Every port where the filter's decision may change: each named range's start and end+1."""
    if firewall.iptables_save is not None:
        return saved.read(saved_text(firewall)).port_edges
    return {p for rule in firewall.rules for r in (rule.sport, rule.dport) if r is not None
            for p in (r.low, r.high + 1)}


class StaticModel:
    """The static filter's model as the registry hands it out: called, it is `verdict`; the path
    walk asks `decide`, `explain`, `unreadable` and `port_edges`."""

    verdict = staticmethod(verdict)
    decide = staticmethod(decide)
    notes = staticmethod(notes)
    nat = staticmethod(nat)
    helper = staticmethod(helper)
    deciding = staticmethod(deciding)
    explain = staticmethod(explain)
    unreadable = staticmethod(unreadable)
    port_edges = staticmethod(port_edges)

    def __call__(self, firewall: Firewall, flow: Flow) -> tuple[str, int | None]:
        return verdict(firewall, flow)


def setup(view: NodeView) -> DeviceSetup:
    firewall: Firewall = view.section
    idle = idle_sysctls(firewall.idle_timeout)
    if firewall.iptables_save is not None:
        source = Path(firewall.iptables_save)
        text, reasons = observe_saved_drops(source.read_text(), source.name)
        restore = Restore(source, text, check=tuple(savefile.sandboxed(restore_argv(source, test=True)[:-1])),
                          load=tuple(savefile.sandboxed(restore_argv(source)[:-1])))
        return DeviceSetup(restore=restore, reasons=reasons, sysctls=idle)
    rules = filter_rules(firewall, view.tools)
    return DeviceSetup(iptables=rules.iptables, reasons=rules.reasons, sysctls=idle)


DEVICE = Device(
    name="static", section="firewall", applies=lambda view: view.section.mode == "static", setup=setup,
    model=StaticModel(), events=frozenset({"drop"}),        # its drops are reported by the drop observer
    features=(features.CONNTRACK_MARK, features.NFQUEUE),
)
