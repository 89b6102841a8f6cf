"""The static packet filter: an ordered rule list, first match wins, then the default.

Pure: a model Firewall in, iptables argv lists out (lab.network.net runs them inside the filter's
namespace). The filter sits in the FORWARD path and does no inspection:

1. packets of connections already admitted (ESTABLISHED, RELATED) pass;
2. then the user's rules in order; a rule's drop is observed (MARK + NFQUEUE 30, see
   firewall.observed) so the run learns which rule dropped which packet;
3. then the default (accept, or an observed drop).

A user may hand an `iptables-save` file instead of rules; lab.network.net loads it with
iptables-restore after checking it with `iptables-restore --test` (restore_argv below). Its
drops are observed too (observe_saved_drops): every `-j DROP` of the filter table and every DROP
policy of a built-in chain becomes a jump to a marking chain, so a run names the file's line
that dropped a packet, as it does for the lab's own rule lists.
"""

from __future__ import annotations

import re
from pathlib import Path

from firewall.observed import DROPWATCH_QUEUE, RuleSet, drop_chain, port_match
from lab.topology.model import FilterRule, Firewall

CHAIN = "ftlab-filter"
#: Drop reasons: the default drop, and one mark per dropping rule (RULE_MARK_BASE + position).
MARK_DEFAULT = 3
RULE_MARK_BASE = 100
#: Marks of an iptables-save file's drops: SAVED_MARK_BASE + the file's line number.
SAVED_MARK_BASE = 10000
_DROP_TARGET = re.compile(r"\s(?:-j|--jump)\s+DROP\s*$")
_POLICY = re.compile(r"^:(INPUT|FORWARD|OUTPUT) DROP\b")


def match_args(rule: FilterRule) -> list[str]:
    """The iptables match for one rule (fields left None match anything)."""
    args: list[str] = []
    if rule.proto != "any":
        args += ["-p", rule.proto]
    elif rule.sport or rule.dport:
        raise ValueError(f"line {rule.line}: ports need proto tcp or udp, not {rule.proto}")
    if rule.proto == "icmp" and (rule.sport or rule.dport):
        raise ValueError(f"line {rule.line}: icmp has no ports")
    if rule.src is not None:
        args += ["-s", str(rule.src)]
    if rule.dst is not None:
        args += ["-d", str(rule.dst)]
    if rule.in_interface:
        args += ["-i", rule.in_interface]
    if rule.out_interface:
        args += ["-o", rule.out_interface]
    if rule.sport is not None:
        args += ["--sport", port_match(rule.sport)]
    if rule.dport is not None:
        args += ["--dport", port_match(rule.dport)]
    return args


def describe(rule: FilterRule, position: int) -> str:
    """The rule as a drop reason and an iptables comment names it."""
    where = f" (line {rule.line})" if rule.line else ""
    what = f": {rule.comment}" if rule.comment else ""
    return f"static filter rule {position}{where}{what}"


def filter_rules(firewall: Firewall) -> RuleSet:
    """The rule list as iptables argv lists, with the drop reasons they use."""
    if firewall.mode != "static":
        raise ValueError(f"not a static filter: mode {firewall.mode}")
    ipt = ["iptables", "-t", "filter"]
    out = RuleSet()
    out.iptables += [
        ipt + ["-N", CHAIN],
        ipt + ["-A", "FORWARD", "-j", CHAIN],
        ipt + ["-A", CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    ]
    for position, rule in enumerate(firewall.rules, start=1):
        comment = ["-m", "comment", "--comment", describe(rule, position)[:250]]
        if rule.action == "accept":
            target = ["-j", "ACCEPT"]
        else:
            mark = RULE_MARK_BASE + position
            chain = f"ftlab-fw-rule-{position}"
            out.extend(RuleSet(drop_chain(chain, mark), {mark: f"dropped by {describe(rule, position)}"}))
            target = ["-j", chain]
        out.iptables.append(ipt + ["-A", CHAIN] + match_args(rule) + comment + target)
    if firewall.default == "accept":
        out.iptables.append(ipt + ["-A", CHAIN, "-j", "ACCEPT"])
    else:
        out.extend(RuleSet(drop_chain("ftlab-fw-default", MARK_DEFAULT),
                           {MARK_DEFAULT: "dropped by the static filter's default (no rule permits it)"}))
        out.iptables.append(ipt + ["-A", CHAIN, "-j", "ftlab-fw-default"])
    return out


def restore_argv(path: Path, test: bool = False) -> list[str]:
    """Load (or with test=True only check) a user's iptables-save file."""
    return ["iptables-restore", *(["--test"] if test else []), str(path)]


def observe_saved_drops(text: str, name: str) -> tuple[str, dict[int, str]]:
    """An iptables-save text whose filter-table drops go to dropwatch, and their reasons.

    Pure. The packets meet the same fate (dropped; the kernel drops queued packets even with no
    listener), only now each drop is reported with `name:line` and the rule's text. The marking
    chains are declared right after `*filter` (a jump needs its chain to exist) and filled, with
    the policies' catch-all rules, just before that table's COMMIT.
    """
    lines = text.splitlines()
    reasons: dict[int, str] = {}
    table, policies = "", {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("*"):
            table = stripped[1:]
        elif table == "filter" and (m := _POLICY.match(stripped)):
            policies[SAVED_MARK_BASE + number] = m.group(1)
            reasons[SAVED_MARK_BASE + number] = f"dropped by {name}:{number}: the {m.group(1)} chain's policy DROP"
        elif table == "filter" and stripped.startswith("-A ") and _DROP_TARGET.search(stripped):
            reasons[SAVED_MARK_BASE + number] = f"dropped by {name}:{number}: {stripped}"
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
                out += [f"-A {chain} -j MARK --set-mark {m}",
                        f"-A {chain} -j NFQUEUE --queue-num {DROPWATCH_QUEUE}"]
        elif table == "filter" and mark in reasons and mark not in policies:
            line = _DROP_TARGET.sub(f" -j ftlab-saved-{number}", stripped)
        out.append(line)
    return "\n".join(out) + "\n", reasons
