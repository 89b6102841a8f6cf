"""The model of a user's iptables-save ruleset: what its tables do with a new connection.

Pure: the file's text in, a verdict out. What prediction asks the static filter when the topology
hands it an `iptables_save:` file instead of rules. It reads the rulesets real tools write (ufw,
fail2ban, Docker, Shorewall, hand-written FORWARD policies):

    tables      *filter (chains, policies, rules: the verdict); *nat (PREROUTING/OUTPUT DNAT,
                REDIRECT; POSTROUTING SNAT, MASQUERADE: the router's NAT, `nat`, `snat`);
                *raw (`-j CT --helper ftp` attaches the kernel FTP helper: `helper`; `-j CT
                --notrack`, NOTRACK: the connection is UNTRACKED); *mangle (read for what sets
                a mark; its FORWARD/INPUT chains' verdicts as the filter's)
    matches     -p; -s/-d; -i/-o (+ wildcard); --sport/--dport (-m tcp/-m udp or implied by -p);
                --syn, --tcp-flags (a new connection's first packet is a SYN); -m multiport;
                -m conntrack --ctstate / -m state --state; --ctstatus (DNAT, SNAT, EXPECTED,
                CONFIRMED: a new connection is neither SEEN_REPLY nor ASSURED); -m iprange;
                -m comment; -m icmp/-m icmp6 (ICMP is never a TCP connection); -m addrtype
                (LOCAL: the router's own addresses); -m mark / -m connmark (false while nothing
                in the file sets a mark: MARK, CONNMARK); -m limit / -m hashlimit / -m recent
                (stateful: judged for the first connections, and the rule that trips with the
                count is said - `Verdict.notes`); `!` before any of these
    targets     ACCEPT, DROP, REJECT (any --reject-with), RETURN, user chains (-j, -g);
                targets that never decide a packet go on: LOG, NFLOG, ULOG, MARK, CONNMARK,
                CT, NOTRACK, TRACE, AUDIT, TCPMSS, CLASSIFY, DSCP, TOS, TTL, HL, SET, no target

Every match that can be read is read, whatever the order of a rule's options. A match outside
that list is unknown; a rule with one decides nothing by itself: the walk is tried both ways
(the match true and false) and gives up - lab.devkit.types.Unreadable, "cannot predict: fw.rules:12
uses -m set" - only when the two ways end in different verdicts for this connection. A rule whose
target never decides is passed over, whatever it matches. `unreadable` lists every line with
something outside the list (what the report shows about the file), `deciding` those that can decide.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from firewall import savefile
from lab.devkit.types import Flow, Unreadable

MAX_DEPTH = 16
MAX_BRANCHES = 64
BUILTIN = ("INPUT", "FORWARD", "OUTPUT")
STATES = ("NEW", "RELATED", "ESTABLISHED", "INVALID", "UNTRACKED", "SNAT", "DNAT")
PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmp", "tcp": "tcp", "udp": "udp", "icmp": "icmp",
             "ipv6-icmp": "icmp", "icmpv6": "icmp", "all": "all"}
TERMINAL = ("ACCEPT", "DROP", "REJECT")
#: Targets that never decide a packet's fate: the walk goes on after them.
GOES_ON = ("LOG", "NFLOG", "ULOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TRACE", "AUDIT", "TCPMSS", "CLASSIFY",
           "DSCP", "TOS", "TTL", "HL", "SET", "CHECKSUM", "CONNSECMARK", "SECMARK")
NAT_TARGETS = ("DNAT", "SNAT", "MASQUERADE", "REDIRECT", "NETMAP")
#: Options every rule may take (they end an unknown module's options).
GENERIC = {"-p", "--protocol", "-s", "--source", "-d", "--destination", "-i", "--in-interface", "-o",
           "--out-interface", "-m", "--match", "-j", "--jump", "-g", "--goto"}
KNOWN_MODULES = ("tcp", "udp", "multiport", "conntrack", "state", "comment", "iprange", "icmp", "icmp6", "addrtype",
                 "mark", "connmark", "limit", "hashlimit", "recent")

#: A test on a connection: True, False, or None (it depends on what the model does not know).
Test = Callable[["Context"], "bool | None"]


@dataclass(frozen=True)
class Context:
    """What a test looks at: the connection, and what the router knows of itself."""

    flow: Flow
    local: frozenset | None = None        # the router's own addresses (None: not known)
    marks: bool = False                   # something in the file sets a mark
    first: bool = True                    # the connection's first packet (a SYN); False: a later one
                                          # conntrack takes up as new (the 226 of a forgotten connection)


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` line: its tests, what it jumps to, and what the model cannot read."""

    line: int
    chain: str
    text: str
    tests: tuple[Test, ...]
    target: str | None               # ACCEPT | DROP | REJECT | RETURN | LOG | DNAT | a chain | None
    goto: bool = False
    unread: str | None = None        # the first option outside the subset, as written
    table: str = "filter"
    options: tuple[tuple[str, str], ...] = ()   # the target's options (--to-destination, --helper, ...)
    stateful: str | None = None      # what trips a stateful match (-m limit/recent/hashlimit), in words

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.options if k == name), None)


@dataclass
class Table:
    policies: dict[str, tuple[str, int]] = field(default_factory=dict)    # chain -> (policy, line)
    chains: dict[str, list[Rule]] = field(default_factory=dict)


@dataclass
class Ruleset:
    """The tables of one file (and what the model cannot read)."""

    tables: dict[str, Table] = field(default_factory=dict)
    unread: list[tuple[int, str]] = field(default_factory=list)            # (line, what), anywhere
    port_edges: set[int] = field(default_factory=set)     # where a port test's answer may change
    marks: list[int] = field(default_factory=list)        # lines that set a mark

    def table(self, name: str) -> Table:
        return self.tables.setdefault(name, Table())

    # the filter table, as before
    @property
    def policies(self) -> dict[str, tuple[str, int]]:
        return self.table("filter").policies

    @property
    def chains(self) -> dict[str, list[Rule]]:
        return self.table("filter").chains


# -- reading -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def read(text: str) -> Ruleset:
    """The ruleset of an iptables-save text. Lines it cannot split are recorded as unread."""
    rs = Ruleset()
    for ln in savefile.lines(text):
        number, table = ln.number, ln.table
        if ln.kind == "table":
            rs.table(table)
            continue
        if ln.kind == "chain":
            t = rs.table(table)
            t.chains.setdefault(ln.chain, [])
            if ln.policy != "-":
                t.policies[ln.chain] = (ln.policy, number)
            elif ln.chain in BUILTIN and table == "filter":
                t.policies[ln.chain] = (ln.policy, number)
            continue
        if ln.error is not None:
            rs.unread.append((number, "a line that does not split into words (unbalanced quotes)"))
            continue
        words = list(ln.words)
        if len(words) < 2 or words[0] not in ("-A", "--append"):
            rs.unread.append((number, f"{words[0] if words else ln.text!r} (the model reads -A rules)"))
            continue
        rule = _rule(number, words[1], ln.text, words[2:], table)
        rs.table(table).chains.setdefault(rule.chain, []).append(rule)
        rs.port_edges |= _edges(words[2:])
        if rule.target in ("MARK", "CONNMARK") or (rule.target == "CT" and rule.option("--ctmark")):
            rs.marks.append(number)
        if rule.unread:
            rs.unread.append((number, rule.unread))
    # a jump to an upper-case name (DOCKER, DOCKER-USER) is a user chain when the table declares it
    declared = {(r.line, f"-j {r.target}") for t in rs.tables.values() for chain in t.chains.values() for r in chain
                if r.target in t.chains}
    rs.unread = [u for u in rs.unread if u not in declared]
    return rs


def _rule(number: int, chain: str, text: str, words: list[str], table: str = "filter") -> Rule:
    tests: list[Test] = []
    target: str | None = None
    goto = False
    unread: list[str] = []
    options: list[tuple[str, str]] = []
    stateful: list[str] = []
    module: str | None = None        # the -m module whose options follow
    unknown: str | None = None       # the unknown module (or option) whose words are being skipped
    i = 0
    negate = False
    limit = {"--limit": "3/hour", "--limit-burst": "5"}
    recent: dict[str, str] = {}

    def value() -> str:
        nonlocal i
        i += 1
        if i >= len(words):
            raise ValueError(f"{words[i - 1]} without a value")
        return words[i]

    def unknown_test(what: str) -> Test:
        return lambda ctx: None

    try:
        while i < len(words):
            w = words[i]
            if target is not None:
                # everything after the target is its options
                if w.startswith("--"):
                    nxt = words[i + 1] if i + 1 < len(words) else ""
                    if nxt and not nxt.startswith("--"):
                        options.append((w, nxt))
                        i += 2
                    else:
                        options.append((w, ""))
                        i += 1
                    continue
                i += 1
                continue
            if w == "!":
                negate = True
                i += 1
                continue
            if unknown is not None and w not in GENERIC and not _known_option(w, module):
                i += 1                      # an unknown module's own options (and their values)
                continue
            unknown = None
            test: Test | None = None
            if w in ("-p", "--protocol"):
                name = value().lower()
                # another protocol (igmp, sctp, gre, ...: iptables-restore checks the name) is none
                # of the lab's connections, which are tcp, udp or icmp
                test = _proto(PROTOCOLS.get(name, f"other:{name}"))
            elif w in ("-s", "--source", "-d", "--destination"):
                which = "src" if w in ("-s", "--source") else "dst"
                nets = [ipaddress.ip_network(v, strict=False) for v in value().split(",")]
                test = _address(which, nets)
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
                    unread.append(f"{w} {','.join(states)}")
                    test = unknown_test(w)
                else:
                    test = _state(frozenset(states))
            elif w == "--ctstatus":
                test = _status(frozenset(value().upper().split(",")))
            elif w == "--syn":
                test = _syn_matches(["SYN", "RST", "ACK", "FIN"], ["SYN"])
            elif w == "--tcp-flags":
                mask, on = value().upper().split(","), value().upper().split(",")
                test = _syn_matches(mask, on)
            elif w in ("--src-range", "--dst-range"):
                low, _, high = value().partition("-")
                test = _range("src" if w == "--src-range" else "dst", ipaddress.ip_address(low),
                              ipaddress.ip_address(high or low))
            elif w in ("-m", "--match"):
                module = value()
                if module not in KNOWN_MODULES:
                    what = f"-m {module}"
                    unread.append(what)
                    tests.append(unknown_test(what))
                    unknown = module
                elif module in ("mark", "connmark"):
                    pass
                elif module == "hashlimit":
                    limit = {"--limit": "", "--limit-burst": "5"}
            elif w == "--comment":
                value()
            elif w in ("--icmp-type", "--icmpv6-type"):
                value()
                test = _proto("icmp")
            elif w == "--mark" and module in ("mark", "connmark"):
                test = _mark(value(), module)
            elif w in ("--src-type", "--dst-type") and module == "addrtype":
                test = _addrtype("src" if w == "--src-type" else "dst", value().upper().split(","))
            elif w in ("--limit-iface-in", "--limit-iface-out") and module == "addrtype":
                pass
            elif module in ("limit", "hashlimit") and w.startswith("--"):
                if w in ("--hashlimit-mode", "--hashlimit-name", "--hashlimit-htable-expire", "--hashlimit-srcmask",
                         "--hashlimit-dstmask", "--hashlimit-htable-size", "--hashlimit-htable-max",
                         "--hashlimit-htable-gcinterval"):
                    value()
                elif w in ("--limit", "--limit-burst", "--hashlimit-upto", "--hashlimit-above", "--hashlimit",
                           "--hashlimit-burst"):
                    key = {"--hashlimit-upto": "--limit", "--hashlimit": "--limit", "--hashlimit-burst": "--limit-burst"
                           }.get(w, w)
                    limit[key] = value()
                    if w == "--hashlimit-above":
                        limit["above"] = "1"
                else:
                    raise _Outside(f"-m {module} {w}")
                test = _limit(dict(limit))
                # several options of one -m limit: one test (the last, with every option read)
                if tests and getattr(tests[-1], "limit", False):
                    tests.pop()
                stateful = [s for s in stateful if not s.startswith("-m limit")]
                stateful.append(_limit_words(dict(limit), module))
            elif module == "recent" and w.startswith("--"):
                if w in ("--name", "--seconds", "--hitcount", "--mask", "--rsource", "--rdest", "--reap", "--rttl",
                         "--set", "--rcheck", "--update", "--remove"):
                    recent[w] = value() if w in ("--name", "--seconds", "--hitcount", "--mask") else "1"
                else:
                    raise _Outside(f"-m recent {w}")
                test = _recent(dict(recent))
                if tests and getattr(tests[-1], "recent", False):
                    tests.pop()
                stateful = [s for s in stateful if not s.startswith("-m recent")]
                if "--set" not in recent:
                    stateful.append(_recent_words(dict(recent)))
            elif w in ("-j", "--jump", "-g", "--goto"):
                goto = w in ("-g", "--goto")
                target = value()
            elif w in ("-f", "--fragment"):
                test = _always(False)          # a connection's first packet is no later fragment
            else:
                what = w
                unread.append(what)
                tests.append(unknown_test(what))
                unknown = w
                i += 1
                negate = False
                continue
            if test is not None:
                tests.append(_not(test) if negate else test)
            negate = False
            i += 1
    except (_Outside, ValueError) as exc:
        unread.append(str(exc) if isinstance(exc, _Outside) else f"an option the model cannot read ({exc})")
        tests.append(lambda ctx: None)
        # the target still says whether the rule can decide
        for j, word in enumerate(words[:-1]):
            if word in ("-j", "--jump", "-g", "--goto"):
                target, goto = words[j + 1], word in ("-g", "--goto")
    if module_used(words, "recent") and not ({"--set", "--remove"} & set(recent) or
                                             int(recent.get("--hitcount", "1")) > 1):
        unread.append("-m recent (a --rcheck/--update without --hitcount: it depends on earlier connections)")
    if target is not None and target not in (*TERMINAL, "RETURN", *GOES_ON, *NAT_TARGETS) and not _chainish(target):
        unread.append(f"-j {target}")
    return Rule(number, chain, text, tuple(tests), target, goto, unread[0] if unread else None, table,
                tuple(options), "; ".join(stateful) or None)


def module_used(words: list[str], module: str) -> bool:
    return any(w in ("-m", "--match") and words[i + 1:i + 2] == [module] for i, w in enumerate(words))


def _chainish(target: str) -> bool:
    """A target that may be a user chain (an extension target is upper case)."""
    return not target.isupper() or "-" in target or "_" in target


def _known_option(word: str, module: str | None) -> bool:
    return word in ("--sport", "--dport", "--source-port", "--destination-port", "--syn", "--ctstate", "--state",
                    "--comment", "--dports", "--sports")


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
        elif option in ("--to-destination", "--to-ports") and ":" in text or option == "--to-ports":
            ports = text.rsplit(":", 1)[-1] if option == "--to-destination" else text
            for part in ports.split(","):
                lo, _, hi = part.partition("-")
                if lo.isdigit():
                    found |= {int(lo), int(hi or lo) + 1}
    return found


def _proto(name: str) -> Test:
    return lambda ctx: name == "all" or ctx.flow.proto == name


def _address(which: str, nets: list) -> Test:
    def test(ctx: Context) -> bool:
        addr = getattr(ctx.flow, which)
        return any(addr.version == net.version and addr in net for net in nets)
    return test


def _range(which: str, low, high) -> Test:
    return lambda ctx: getattr(ctx.flow, which).version == low.version and low <= getattr(ctx.flow, which) <= high


def _interface(which: str, name: str) -> Test:
    pattern = name[:-1] + "*" if name.endswith("+") else name
    return lambda ctx: getattr(ctx.flow, which) is not None and fnmatch.fnmatchcase(getattr(ctx.flow, which), pattern)


def _ports(which: str, ranges: list[tuple[int, int]]) -> Test:
    def inside(port: int | None) -> bool:
        # an unknown port (None) is one the caller did not pin down: it matches no port test
        return port is not None and any(lo <= port <= hi for lo, hi in ranges)

    if which == "either":
        return lambda ctx: inside(ctx.flow.sport) or inside(ctx.flow.dport)
    return lambda ctx: inside(getattr(ctx.flow, which))


def _state(states: frozenset[str]) -> Test:
    return lambda ctx: ctx.flow.state in states or (ctx.flow.dnat and "DNAT" in states)


def _status(statuses: frozenset[str]) -> Test:
    """--ctstatus of a connection's first packet: DNAT when translated, EXPECTED when RELATED;
    CONFIRMED/SEEN_REPLY/ASSURED are false for a first packet, NONE when none of them holds."""
    def test(ctx: Context) -> bool:
        f = ctx.flow
        have = {"DNAT"} if f.dnat else set()
        if f.state == "RELATED":
            have.add("EXPECTED")
        if f.state == "ESTABLISHED":
            have |= {"CONFIRMED", "SEEN_REPLY", "ASSURED"}
        return bool(have & statuses) or ("NONE" in statuses and not have)
    return test


def _syn_matches(mask: list[str], on: list[str]) -> Test:
    """--tcp-flags MASK ON (and --syn): a new connection's first packet is a SYN; a later packet
    taken up as new (Context.first False: the server's 226) carries ACK and PSH."""
    if "ALL" in mask:
        mask = ["SYN", "ACK", "FIN", "RST", "URG", "PSH"]
    if "NONE" in on:
        on = []

    def test(ctx: Context) -> bool:
        flags = {"SYN"} if ctx.first else {"ACK", "PSH"}
        return {m for m in mask if m in flags} == set(on)
    return test


def _mark(text: str, module: str) -> Test:
    """-m mark / connmark --mark VALUE[/MASK]: the mark is 0 while nothing sets one (read()
    records what does: then the test is unknown)."""
    value, _, mask = text.partition("/")
    v, m = int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF

    def test(ctx: Context) -> bool | None:
        if ctx.marks:
            return None
        return (0 & m) == v
    test.mark = True            # type: ignore[attr-defined]
    return test


def _addrtype(which: str, types: list[str]) -> Test:
    def test(ctx: Context) -> bool | None:
        addr = getattr(ctx.flow, which)
        kinds = {"MULTICAST"} if addr.is_multicast else set()
        if ctx.local is None:
            if set(types) & {"LOCAL", "UNICAST"}:
                return None
        elif addr in ctx.local:
            kinds |= {"LOCAL", "UNICAST"}
        else:
            kinds.add("UNICAST")
        return bool(kinds & set(types))
    return test


def _limit(options: dict[str, str]) -> Test:
    """A rate limit, judged for the first connections that meet it (within its burst): it matches
    (--hashlimit-above: it does not). When it trips is said in the rule's `stateful`."""
    above = options.get("above") == "1"

    def test(ctx: Context) -> bool:
        return not above
    test.limit = test.stateful = True           # type: ignore[attr-defined]
    return test


def _limit_words(options: dict[str, str], module: str) -> str:
    burst = options.get("--limit-burst", "5")
    rate = options.get("--hashlimit-above") or options.get("--limit") or "?"
    if options.get("above") == "1":
        return f"-m {module} --hashlimit-above {rate}: matches once more than {rate} arrive (after a burst of {burst})"
    return f"-m {module} {rate}: matches the first {burst} packets at once, then {rate}"


def _recent(options: dict[str, str]) -> Test:
    """-m recent: --set always matches (and records the source); --rcheck/--update with --hitcount
    N match from the N-th connection within --seconds: for the first ones, false."""
    def test(ctx: Context) -> bool | None:
        if "--set" in options or "--remove" in options:
            return True if "--set" in options else None
        if "--hitcount" in options and int(options["--hitcount"]) > 1:
            return False
        return None
    test.recent = True          # type: ignore[attr-defined]
    test.stateful = "--set" not in options      # type: ignore[attr-defined]
    return test


def _recent_words(options: dict[str, str]) -> str:
    hits, seconds = options.get("--hitcount", "1"), options.get("--seconds")
    within = f" within {seconds} s" if seconds else ""
    return f"-m recent (list {options.get('--name', 'DEFAULT')}) matches from the {_nth(int(hits))} new connection " \
           f"of one source{within}"


def _nth(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _not(test: Test) -> Test:
    def negated(ctx: Context) -> bool | None:
        got = test(ctx)
        return None if got is None else not got
    return negated


def _always(value: bool) -> Test:
    return lambda ctx: value


# -- judging -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    action: str          # accept | drop | reject | policy-accept (fell off the chain's end, policy ACCEPT)
    line: int | None     # the deciding rule's (or policy's) line
    notes: tuple[str, ...] = ()     # stateful matches met on the way ("LINE: what trips it")
    options: tuple[tuple[str, str], ...] = ()     # the deciding rule's target options (DNAT's --to-destination)


class _Branch(Exception):
    def __init__(self, rule: Rule, what: str):
        self.rule, self.what = rule, what


def _matches(rule: Rule, ctx: Context, assume: dict[int, bool]) -> bool:
    """Does the rule match? An unknown test is answered by `assume` (else _Branch)."""
    unknown = False
    for test in rule.tests:
        got = test(ctx)
        if got is False:
            return False
        if got is None:
            unknown = True
    if not unknown:
        return True
    if rule.target is None or rule.target in GOES_ON:
        return False                 # it decides nothing either way
    if rule.line not in assume:
        raise _Branch(rule, rule.unread or _unknown_what(rule, ctx))
    return assume[rule.line]


def _unknown_what(rule: Rule, ctx: Context) -> str:
    if any(getattr(t, "mark", False) and t(ctx) is None for t in rule.tests):
        return "-m mark (the file sets marks)"
    if any(t(ctx) is None for t in rule.tests if getattr(t, "recent", False)):
        return "-m recent"
    return "-m addrtype (the router's own addresses are not known here)"


def _judge(run: Callable[[dict[int, bool]], Verdict]) -> Verdict:
    """Run a walk; where a rule's match is unknown, run it both ways: the verdict when both agree
    (the unknown cannot change it), else Unreadable naming the first such rule."""
    pending: list[dict[int, bool]] = [{}]
    found: list[tuple[Verdict, dict[int, bool]]] = []
    first: _Branch | None = None
    runs = 0
    while pending:
        assume = pending.pop()
        runs += 1
        if runs > MAX_BRANCHES:
            raise Unreadable(first.rule.line if first else 0, f"{first.what if first else 'unknown matches'} "
                                                              "(too many rules the model cannot read)")
        try:
            found.append((run(assume), assume))
        except _Branch as branch:
            first = first or branch
            pending += [{**assume, branch.rule.line: True}, {**assume, branch.rule.line: False}]
    actions = {_kind(v.action) for v, _ in found}
    if len(actions) > 1:
        assert first is not None
        raise Unreadable(first.rule.line, first.what)
    # the walk in which no unknown match held names the deciding line
    return min(found, key=lambda item: sum(item[1].values()))[0]


def _kind(action: str) -> str:
    return "accept" if action in ("accept", "policy-accept") else action


def verdict(text: str, flow: Flow, hook: str = "FORWARD", local: frozenset | None = None,
            first: bool = True) -> Verdict:
    """What the file's `hook` chain does with a new connection (the mangle table's chain first,
    then the filter table's). `local`: the router's own addresses (-m addrtype); `first` False: a
    later packet of a connection conntrack forgot, taken up as new (not a SYN). Raises
    Unreadable when the verdict depends on a rule outside the subset (or on a chain nested too deep)."""
    rs = read(text)
    flow = _untracked(rs, flow, local)
    ctx = Context(flow, local, bool(rs.marks), first)

    def run(assume: dict[int, bool]) -> Verdict:
        notes: list[str] = []
        for name in ("mangle", "filter"):
            table = rs.tables.get(name)
            if table is None or (hook not in table.chains and hook not in table.policies):
                continue
            result = _walk(rs, table, hook, ctx, 0, assume, notes)
            if result is not None and result.action != "return":
                return replace(result, notes=tuple(notes))
            policy, line = table.policies.get(hook, ("ACCEPT", None))
            if policy == "DROP":
                return Verdict("drop", line, tuple(notes))
        return Verdict("policy-accept", None, tuple(notes))
    return _judge(run)


def _walk(rs: Ruleset, table: Table, chain: str, ctx: Context, depth: int, assume: dict[int, bool],
          notes: list[str]) -> Verdict | None:
    if depth > MAX_DEPTH:
        raise Unreadable(0, f"jumps nested deeper than {MAX_DEPTH}")
    for rule in table.chains.get(chain, []):
        if rule.stateful and rule.target is not None and rule.target not in GOES_ON and \
                all(t(ctx) is True for t in rule.tests if not getattr(t, "stateful", False)):
            notes.append(f"{rule.line}: {rule.stateful}, then -j {rule.target}")
        if not _matches(rule, ctx, assume):
            continue
        target = rule.target
        if target is None or target in GOES_ON:
            continue
        if target in TERMINAL or target in NAT_TARGETS:
            return Verdict(target.lower(), rule.line, options=rule.options)
        if target == "RETURN":
            return Verdict("return", rule.line)
        if target not in table.chains:
            raise Unreadable(rule.line, f"-j {target}")      # an extension target, or an undeclared chain
        result = _walk(rs, table, target, ctx, depth + 1, assume, notes)
        if result is not None and result.action != "return":
            return result
        if rule.goto:
            return result or Verdict("return", rule.line)
    return None


# -- the other tables: NAT, the helper, untracked connections ------------------------------------------

@dataclass(frozen=True)
class Nat:
    """What the file's nat table does to a new connection: `to` (address, port) for DNAT, REDIRECT
    (the router itself) or SNAT/MASQUERADE (the source it leaves with; None: the outgoing
    interface's address), the line that does it."""

    action: str                      # dnat | redirect | snat | masquerade
    line: int
    to: tuple | None = None          # (address or None, port or None)


def nat(text: str, flow: Flow, hook: str = "PREROUTING", local: frozenset | None = None) -> Nat | None:
    """The nat table's `hook` chain (PREROUTING, OUTPUT: DNAT/REDIRECT; POSTROUTING: SNAT,
    MASQUERADE) for a new connection; None: it leaves it alone. Raises Unreadable as verdict does."""
    rs = read(text)
    table = rs.tables.get("nat")
    if table is None or hook not in table.chains:
        return None
    ctx = Context(flow, local, bool(rs.marks))

    def run(assume: dict[int, bool]) -> Verdict:
        result = _walk(rs, table, hook, ctx, 0, assume, [])
        return result if result is not None and result.action != "return" else Verdict("none", None)
    found = _judge(run)
    if found.action not in ("dnat", "snat", "masquerade", "redirect") or found.line is None:
        return None
    opts = dict(found.options)
    if found.action in ("dnat", "snat"):
        where = opts.get("--to-destination" if found.action == "dnat" else "--to-source", "")
        return Nat(found.action, found.line, _address_port(where, flow.dport if found.action == "dnat" else None))
    if found.action == "redirect":
        ports = opts.get("--to-ports")
        return Nat("redirect", found.line, (None, _first_port(ports, flow.dport)))
    return Nat("masquerade", found.line, None)


def _address_port(text: str, dport: int | None) -> tuple:
    """`a.b.c.d[-e.f.g.h][:port[-port]]`, `[v6]:port` -> (the first address, the port a connection
    to `dport` goes to)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        ports = rest.lstrip(":")
    elif text.count(":") == 1:
        host, ports = text.split(":")
    else:
        host, ports = text, ""
    address = ipaddress.ip_address(host.split("-")[0]) if host else None
    return address, _first_port(ports, dport)


def _first_port(ports: str | None, dport: int | None) -> int | None:
    """The port a connection to `dport` goes to: `p`, a range `lo-hi` (the kernel keeps a port
    already in the range, else takes the first), `lo-hi/base` (the offset from base kept)."""
    if not ports:
        return dport
    span, _, base = ports.partition("/")
    lo, _, hi = span.partition("-")
    if not lo.isdigit():
        return dport
    low, high = int(lo), int(hi) if hi.isdigit() else int(lo)
    if base.isdigit() and dport is not None:
        return low + (dport - int(base))
    return dport if dport is not None and low <= dport <= high else low


def helper(text: str, flow: Flow, local: frozenset | None = None) -> int | None:
    """The line of the raw table's `-j CT --helper ftp` that attaches the kernel FTP helper to this
    connection (PREROUTING, as it arrives: before DNAT), or None."""
    rs = read(text)
    table = rs.tables.get("raw")
    if table is None:
        return None
    ctx = Context(flow, local, bool(rs.marks))
    for chain in ("PREROUTING", "OUTPUT"):
        found = _first_ct(rs, table, chain, ctx)
        if found is not None and found.option("--helper") == "ftp":
            return found.line
    return None


def _first_ct(rs: Ruleset, table: Table, chain: str, ctx: Context, depth: int = 0) -> Rule | None:
    """The first CT/NOTRACK rule that applies (the kernel keeps the first template)."""
    for rule in table.chains.get(chain, []):
        try:
            if not _matches(rule, ctx, {}):
                continue
        except _Branch:
            continue
        if rule.target in ("CT", "NOTRACK"):
            return rule
        if rule.target in ("ACCEPT", "DROP", "RETURN"):
            return None
        if rule.target in table.chains and depth < MAX_DEPTH:
            found = _first_ct(rs, table, rule.target, ctx, depth + 1)
            if found is not None:
                return found
    return None


def _untracked(rs: Ruleset, flow: Flow, local: frozenset | None) -> Flow:
    table = rs.tables.get("raw")
    if table is None:
        return flow
    found = _first_ct(rs, table, "PREROUTING", Context(flow, local, bool(rs.marks)))
    if found is not None and (found.target == "NOTRACK" or found.option("--notrack") is not None):
        return replace(flow, state="UNTRACKED")
    return flow


def unreadable(text: str) -> list[tuple[int, str]]:
    """Every line outside the subset (line, what it uses), in file order."""
    return sorted(read(text).unread)


def deciding(text: str) -> list[tuple[int, str]]:
    """The lines outside the subset whose rule can decide a packet (its target is a verdict, a
    jump or a translation): the ones that may make a cell unpredictable."""
    rs = read(text)
    rules = {r.line: r for t in rs.tables.values() for chain in t.chains.values() for r in chain}
    return [(line, what) for line, what in sorted(rs.unread)
            if line not in rules or (rules[line].target is not None and rules[line].target not in GOES_ON)]


def rule_text(text: str, line: int) -> str:
    """The rule on `line`, as written."""
    lines = text.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""
