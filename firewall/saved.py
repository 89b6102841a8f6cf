"""The model of a user's iptables-save ruleset: what its filter table does with a new connection.

Pure: the file's text in, a verdict out. What prediction asks the static filter when the topology
hands it an `iptables_save:` file instead of rules. It reads a documented subset, the matches
and targets a hand-written FORWARD policy uses:

    tables      *filter (chains, policies, rules); any other table may only declare its chains
    matches     -p/--protocol; -s/--source, -d/--destination (address or prefix);
                -i/--in-interface, -o/--out-interface (a trailing + is a wildcard);
                --sport/--dport (port or a:b, with -m tcp / -m udp or implied by -p);
                -m multiport --sports/--dports/--ports (lists of ports and a:b ranges);
                -m conntrack --ctstate, -m state --state (NEW, RELATED, ESTABLISHED, INVALID,
                UNTRACKED, SNAT, DNAT); -m iprange --src-range/--dst-range; --syn;
                -m comment --comment, -m icmp --icmp-type (ICMP is never a TCP connection);
                `!` before any of these
    targets     ACCEPT, DROP, REJECT, RETURN, LOG (goes on), a user chain (-j, and -g goto);
                no target (a counting rule)
    chains      the built-in chains' policies; user chains, nested at most 16 deep

A rule outside that subset makes prediction impossible only for a connection that reaches it
with every readable match true: `verdict` raises lab.devkit.types.Unreadable naming its line and
what it uses ("cannot predict: fw.rules:12 uses -m limit"), never a guess. `unreadable` lists
every such rule in advance (what the report shows about the file).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from firewall import savefile
from lab.devkit.types import Flow, Unreadable

MAX_DEPTH = 16
BUILTIN = ("INPUT", "FORWARD", "OUTPUT")
STATES = ("NEW", "RELATED", "ESTABLISHED", "INVALID", "UNTRACKED", "SNAT", "DNAT")
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "tcp": "tcp", "udp": "udp", "icmp": "icmp", "all": "all"}
TERMINAL = ("ACCEPT", "DROP", "REJECT")

Test = Callable[[Flow], bool]


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` line: its readable tests, what it jumps to, and what the model cannot read."""

    line: int
    chain: str
    text: str
    tests: tuple[Test, ...]
    target: str | None               # ACCEPT | DROP | REJECT | RETURN | LOG | a chain | None
    goto: bool = False
    unread: str | None = None        # the first option outside the subset, as written


@dataclass
class Ruleset:
    """The filter table of one file (and what the model cannot read outside it)."""

    policies: dict[str, tuple[str, int]] = field(default_factory=dict)    # chain -> (policy, line)
    chains: dict[str, list[Rule]] = field(default_factory=dict)
    unread: list[tuple[int, str]] = field(default_factory=list)            # (line, what), anywhere
    port_edges: set[int] = field(default_factory=set)     # where a port test's answer may change


# -- reading -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def read(text: str) -> Ruleset:
    """The ruleset of an iptables-save text. Lines it cannot split are recorded as unread."""
    rs = Ruleset()
    for ln in savefile.lines(text):
        number, table = ln.number, ln.table
        if ln.kind == "table":
            continue
        if ln.kind == "chain":
            if table == "filter":
                rs.chains.setdefault(ln.chain, [])
                if ln.chain in BUILTIN:
                    rs.policies[ln.chain] = (ln.policy, number)
            elif ln.policy not in ("ACCEPT", "-"):
                rs.unread.append((number, f"the {table} table's {ln.chain} policy {ln.policy}"))
            continue
        if table != "filter":
            rs.unread.append((number, f"a rule in the {table} table (the model reads the filter table)"))
            continue
        if ln.error is not None:
            rs.unread.append((number, "a line that does not split into words (unbalanced quotes)"))
            continue
        words = list(ln.words)
        if len(words) < 2 or words[0] not in ("-A", "--append"):
            rs.unread.append((number, f"{words[0] if words else ln.text!r} (the model reads -A rules)"))
            continue
        rule = _rule(number, words[1], ln.text, words[2:])
        rs.chains.setdefault(rule.chain, []).append(rule)
        rs.port_edges |= _edges(words[2:])
        if rule.unread:
            rs.unread.append((number, rule.unread))
    return rs


def _rule(number: int, chain: str, text: str, words: list[str]) -> Rule:
    tests: list[Test] = []
    target: str | None = None
    goto = False
    unread: str | None = None
    proto = "all"
    i = 0
    negate = False

    def value() -> str:
        nonlocal i
        i += 1
        if i >= len(words):
            raise ValueError(f"{words[i - 1]} without a value")
        return words[i]

    try:
        while i < len(words):
            w = words[i]
            if w == "!":
                negate = True
                i += 1
                continue
            test: Test | None = None
            if w in ("-p", "--protocol"):
                name = value().lower()
                if name not in PROTOCOLS:
                    raise _Outside(f"-p {name}")
                proto = PROTOCOLS[name]
                test = _proto(proto)
            elif w in ("-s", "--source", "-d", "--destination"):
                net = ipaddress.ip_network(value(), strict=False)
                which = "src" if w in ("-s", "--source") else "dst"
                test = _address(which, net)
            elif w in ("-i", "--in-interface", "-o", "--out-interface"):
                test = _interface("in_interface" if w in ("-i", "--in-interface") else "out_interface", value())
            elif w in ("--sport", "--source-port", "--dport", "--destination-port"):
                which = "sport" if w in ("--sport", "--source-port") else "dport"
                test = _ports(which, [_port_range(value())])
            elif w in ("--sports", "--source-ports", "--dports", "--destination-ports", "--ports"):
                ranges = [_port_range(p) for p in value().split(",")]
                which = {"--sports": "sport", "--source-ports": "sport", "--ports": "either"}.get(w, "dport")
                test = _ports(which, ranges)
            elif w in ("--ctstate", "--state"):
                states = value().upper().split(",")
                if not set(states) <= set(STATES):
                    raise _Outside(f"{w} {','.join(states)}")
                test = _state(frozenset(states))
            elif w == "--syn":
                test = _always(True)          # a new connection's first packet is a SYN
            elif w in ("--src-range", "--dst-range"):
                low, _, high = value().partition("-")
                test = _range("src" if w == "--src-range" else "dst", ipaddress.ip_address(low),
                              ipaddress.ip_address(high or low))
            elif w == "-m" or w == "--match":
                module = value()
                if module not in ("tcp", "udp", "multiport", "conntrack", "state", "comment", "iprange", "icmp"):
                    raise _Outside(f"-m {module}")
            elif w == "--comment":
                value()
            elif w == "--icmp-type":
                value()
                test = _proto("icmp")
            elif w in ("-j", "--jump", "-g", "--goto"):
                goto = w in ("-g", "--goto")
                target = value()
            elif target == "REJECT" and w == "--reject-with":
                value()
            elif target == "LOG" and w in ("--log-prefix", "--log-level"):
                value()
            elif target == "LOG" and w in ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options",
                                           "--log-uid"):
                pass
            elif target is not None and target not in (*TERMINAL, "RETURN", "LOG"):
                raise _Outside(f"-j {target}")     # a chain takes no options: an extension target
            else:
                raise _Outside(w)
            if test is not None:
                tests.append(_not(test) if negate else test)
            elif negate:
                raise _Outside(f"! {w}")
            negate = False
            i += 1
    except _Outside as exc:
        unread = str(exc)
    except ValueError as exc:
        unread = f"an option the model cannot read ({exc})"
    return Rule(number, chain, text, tuple(tests), target, goto, unread)


class _Outside(Exception):
    """An option outside the documented subset (its text as written)."""


def _port_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(":")
    lo = int(low) if low else 0
    hi = int(high) if high else (65535 if ":" in text else lo)
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"port range {text!r}")
    return lo, hi


def _edges(words: list[str]) -> set[int]:
    """Each port range's start and end+1 among a rule's port options (ranges it cannot read: none)."""
    found: set[int] = set()
    for option, text in zip(words, words[1:], strict=False):
        if option in ("--sport", "--source-port", "--dport", "--destination-port", "--sports", "--source-ports",
                      "--dports", "--destination-ports", "--ports"):
            for part in text.split(","):
                try:
                    lo, hi = _port_range(part)
                except ValueError:
                    continue
                found |= {lo, hi + 1}
    return found


def _proto(name: str) -> Test:
    return lambda f: name == "all" or f.proto == name


def _address(which: str, net) -> Test:
    return lambda f: getattr(f, which).version == net.version and getattr(f, which) in net


def _range(which: str, low, high) -> Test:
    return lambda f: getattr(f, which).version == low.version and low <= getattr(f, which) <= high


def _interface(which: str, name: str) -> Test:
    pattern = name[:-1] + "*" if name.endswith("+") else name
    return lambda f: getattr(f, which) is not None and fnmatch.fnmatchcase(getattr(f, which), pattern)


def _ports(which: str, ranges: list[tuple[int, int]]) -> Test:
    def inside(port: int | None) -> bool:
        # an unknown port (None) is one the caller did not pin down: it matches no port test
        return port is not None and any(lo <= port <= hi for lo, hi in ranges)

    if which == "either":
        return lambda f: inside(f.sport) or inside(f.dport)
    return lambda f: inside(getattr(f, which))


def _state(states: frozenset[str]) -> Test:
    return lambda f: f.state in states or (f.dnat and "DNAT" in states)


def _not(test: Test) -> Test:
    return lambda f: not test(f)


def _always(value: bool) -> Test:
    return lambda f: value


# -- judging -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    action: str          # accept | drop | reject | policy-accept (fell off the chain's end, policy ACCEPT)
    line: int | None     # the deciding rule's (or policy's) line


def verdict(text: str, flow: Flow, hook: str = "FORWARD") -> Verdict:
    """What the file's `hook` chain does with a new connection. Raises Unreadable when the
    verdict depends on a rule outside the subset (or on a chain nested too deep)."""
    rs = read(text)
    if hook not in rs.chains and hook not in rs.policies:
        return Verdict("policy-accept", None)
    result = _walk(rs, hook, flow, 0)
    if result is not None and result.action != "return":
        return result
    policy, line = rs.policies.get(hook, ("ACCEPT", None))
    return Verdict("drop" if policy == "DROP" else "policy-accept", line if policy == "DROP" else None)


def _walk(rs: Ruleset, chain: str, flow: Flow, depth: int) -> Verdict | None:
    if depth > MAX_DEPTH:
        raise Unreadable(0, f"jumps nested deeper than {MAX_DEPTH}")
    for rule in rs.chains.get(chain, []):
        if not all(test(flow) for test in rule.tests):
            continue
        if rule.unread:
            raise Unreadable(rule.line, rule.unread)
        target = rule.target
        if target is None or target == "LOG":
            continue
        if target in TERMINAL:
            return Verdict(target.lower(), rule.line)
        if target == "RETURN":
            return Verdict("return", rule.line)
        if target not in rs.chains:
            raise Unreadable(rule.line, f"-j {target}")      # an extension target, or an undeclared chain
        result = _walk(rs, target, flow, depth + 1)
        if result is not None and result.action != "return":
            return result
        if rule.goto:
            return result or Verdict("return", rule.line)
    return None


def unreadable(text: str) -> list[tuple[int, str]]:
    """Every line outside the subset (line, what it uses), in file order."""
    return sorted(read(text).unread)


def rule_text(text: str, line: int) -> str:
    """The rule on `line`, as written."""
    lines = text.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""
