"""The nftables filter: a firewall given as a user's nft ruleset (`firewall: {nftables: FILE}`).

The ruleset is loaded as written with `nft -f` in the router's namespace, first of all the node's
rules (a ruleset that starts with `flush ruleset`, as Debian's /etc/nftables.conf does, must not
flush the lab's own). It is checked twice at load time with `nft -c` in a throw-away network
namespace (check(): as written, so a problem names its line, and as the lab loads it).

Drops are observed like an iptables-save file's (firewall.static.observe_saved_drops), by line:
nftables cannot queue a packet on this kernel, so every rule whose verdict is `drop` or `reject`
gets `log group 30 prefix "ftlab-drop N"` in front of its verdict (lab.devkit.observed), and every
base chain with `policy drop` a last rule that logs and drops. The kernel still drops; the drop
observer (firewall.dropwatch) reads the log group and names `FILE:LINE` and the rule's text.

Its model (verdict below, the static filter's interface) reads a documented subset: filter
chains on the forward hook (families ip, ip6, inet) in priority order, their policies, jumps and
gotos, and these matches: ip/ip6 saddr/daddr (address, prefix, range, set, named set, $variable),
ip protocol / meta l4proto, tcp/udp/th sport/dport (port, range, set, ==, !=, <, >, <=, >=),
iifname/oifname/iif/oif, ct state, meta nfproto, icmp/icmpv6 type (matches any ICMP), and the
statements counter, log and comment. unreadable() names whatever else a relevant chain holds:
prediction then treats the device as one it cannot read (the slides' step 1).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from firewall.nftparse import Chain, Rule, Ruleset, Token, read, tokenize
from firewall.savefile import sandboxed
from firewall.section import Firewall
from lab.devkit import features
from lab.devkit.conntrack import idle_sysctls
from lab.devkit.device import Device, DeviceSetup, Restore
from lab.devkit.observed import log_statement
from lab.devkit.types import Flow, Unreadable
from lab.devkit.view import NodeView

#: Reasons of an nft ruleset's drops: NFT_KEY_BASE + the file's line number.
NFT_KEY_BASE = 1_000_000
DROPPING = ("drop", "reject")
CHECK_TIMEOUT = 10.0


# -- observed drops ---------------------------------------------------------------------------------

def observe_drops(text: str, name: str) -> tuple[str, dict[int, str]]:
    """The ruleset with every drop observed, and the reasons (key -> "dropped by NAME:LINE: ...").

    Pure. The new text keeps every line where it was (the log statement goes into the rule's own
    line; the policies' catch-all rules are appended after the last line), so `nft` errors about
    the observed copy still name the user's lines.
    """
    rs = read(text)
    lines = text.splitlines()
    inserts: dict[int, list[tuple[int, str]]] = {}
    reasons: dict[int, str] = {}
    appended: list[str] = []
    for chain in rs.chains.values():
        if chain.family not in ("ip", "ip6", "inet"):
            continue
        for rule in chain.rules:
            verdict = rule.verdict
            if verdict is not None and verdict.text in DROPPING:
                key = NFT_KEY_BASE + verdict.line
                reasons[key] = f"{'rejected' if verdict.text == 'reject' else 'dropped'} by {name}:{verdict.line}: " \
                               f"{lines[verdict.line - 1].strip()}"
                inserts.setdefault(verdict.line, []).append((verdict.col, log_statement(key) + " "))
        if chain.base and chain.policy == "drop" and chain.policy_line:
            key = NFT_KEY_BASE + chain.policy_line
            reasons[key] = f"dropped by {name}:{chain.policy_line}: the {chain.where} chain's policy drop"
            appended.append(f"add rule {chain.family} {chain.table} {chain.name} {log_statement(key)} drop")
    out = list(lines)
    for number, points in inserts.items():
        line = out[number - 1]
        for col, piece in sorted(points, reverse=True):
            line = line[:col] + piece + line[col:]
        out[number - 1] = line
    return "\n".join(out + appended) + "\n", reasons


# -- checking with nft ----------------------------------------------------------------------------

_NFT_ERROR = re.compile(r"^(?P<file>.+?):(?P<line>\d+):\d+(?:-\d+)?: Error: (?P<message>.*)$")


#: Words that make nft read the host's file system or reach outside the namespace, wherever they
#: stand as a word (nft's scanner reads its keywords anywhere; in a "string" they are only text).
REFUSED_WORDS = {
    "include": "`include` is not allowed: put the rules in this file",
    "osf": "`osf` is not allowed: nft loads the host's OS fingerprints (/etc/nftables/osf/pf.os) "
           "into the kernel for every namespace",
    "cgroupv2": "`socket cgroupv2` is not allowed: it names a cgroup of the host's tree (/sys/fs/cgroup)",
}
#: Matches whose names nft looks up in the host's user database (/etc/passwd, /etc/group).
_BY_NAME = {"skuid": "user", "skgid": "group"}


def refused(text: str) -> list[tuple[int, str]]:
    """What the lab refuses before nft reads the file, wherever it stands (also after `;` or `{`
    on one line; not in a # comment or a "string"): `include` (it would read, and quote in its
    errors, any file of the host), `osf`, `socket cgroupv2`, skuid/skgid by name. Every one, as
    (line, problem) pairs. Pure: read with the tokenizer (firewall.nftparse)."""
    try:
        tokens = tokenize(text)
    except ValueError as exc:
        m = re.match(r"line (\d+): (.*)", str(exc))
        return [(int(m.group(1)), m.group(2))] if m else [(0, str(exc))]
    problems = []
    for i, t in enumerate(tokens):
        if t.kind != "word":
            continue
        if t.text in REFUSED_WORDS:
            problems.append((t.line, REFUSED_WORDS[t.text]))
        elif t.text in _BY_NAME:
            for value in _match_values(tokens, i + 1):
                if not value.text.isdigit():
                    problems.append((value.line, f"`{t.text} {value.text}`: a {_BY_NAME[t.text]} name is looked "
                                                 f"up in the host's database: write the number"))
    return problems


def _match_values(tokens: list[Token], i: int) -> list[Token]:
    """The value(s) after a match's key: an optional operator, then a word, a string or a `{ set }`."""
    while i < len(tokens) and tokens[i].kind == "punct" and tokens[i].text in OPS:
        i += 1
    if i >= len(tokens) or tokens[i].kind == "newline":
        return []
    if tokens[i].text != "{" or tokens[i].kind != "punct":
        return [tokens[i]] if tokens[i].kind in ("word", "string") else []
    out = []
    for t in tokens[i + 1:]:
        if t.kind == "punct" and t.text == "}":
            break
        if t.kind in ("word", "string"):
            out.append(t)
    return out


def nft_check_argv(path: Path) -> list[str]:
    """`nft -c -f PATH` in a throw-away user and network namespace: it checks against a kernel
    that has nothing loaded, needs no root and touches no namespace of the host or the lab; and in
    the sandbox (firewall.savefile.sandboxed), where the file is all nft sees of the file system."""
    return sandboxed(["nft", "-c", "-f", str(path)], namespaces=("--user", "--map-root-user", "--net"))


def nft_errors(output: str, path: Path) -> list[tuple[int, str]]:
    """nft's complaints about `path` as (line, message); others (no line) with line 0."""
    found = []
    for line in output.splitlines():
        m = _NFT_ERROR.match(line.strip())
        if m and Path(m.group("file")) == path:
            found.append((int(m.group("line")), m.group("message")))
    if not found and output.strip():
        found.append((0, output.strip().splitlines()[0]))
    return found


def check(path: Path, text: str) -> list[tuple[int, str]]:
    """Problems of a ruleset file as (line, message): refused statements, then `nft -c` of the file
    as written, then of the copy with its drops observed (a problem there is the lab's)."""
    problems = refused(text)
    if problems:
        return problems
    problems = _nft_check(path)
    if problems:
        return problems
    observed, _ = observe_drops(text, path.name)
    with tempfile.NamedTemporaryFile("w", suffix=".nft", prefix="ftlab-observed-") as tmp:
        tmp.write(observed)
        tmp.flush()
        return [(line, f"loads as written but not with its drops observed (the lab's fault): {message}")
                for line, message in _nft_check(Path(tmp.name))]


def _nft_check(path: Path) -> list[tuple[int, str]]:
    try:
        done = subprocess.run(nft_check_argv(path), capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except FileNotFoundError as exc:
        return [(0, f"cannot check it: {exc.filename} is not installed")]
    except subprocess.TimeoutExpired:
        return [(0, f"cannot check it: nft -c took longer than {CHECK_TIMEOUT:.0f} s")]
    if done.returncode == 0:
        return []
    return nft_errors(done.stderr or done.stdout, path)


INTERFACE_MATCHES = ("iifname", "oifname", "iif", "oif")


def interface_problems(text: str, node: str, interfaces: list[str]) -> list[tuple[int, str]]:
    """Each rule naming an interface `node` does not have, as (line, problem): `iifname`,
    `oifname`, `iif`, `oif` with a name, a set or a $variable (`"eth*"` matches as a pattern, as
    nft reads it). Such a rule never matches - or, with iif/oif, does not load at all - in the
    router, as an iptables-save file's `-i`/`-o` (lab.topology.ipsave.interface_problems). Pure."""
    try:
        rs = ruleset(text)
    except ValueError:
        return []                         # the tokenizer's problem is refused() and nft -c's
    have = [*interfaces, "lo"]
    lines = text.splitlines()
    found = []
    for chain in rs.chains.values():
        for rule in chain.rules:
            try:
                reader = _Reader(rs, chain, rule)
            except Unreadable:
                continue                  # an undefined variable: nft -c names it
            for i, t in enumerate(reader.words):
                if t.kind != "word" or t.text not in INTERFACE_MATCHES:
                    continue
                reader.i = i + 1
                if reader.peek() in ("vmap", "map", ".") or (i and reader.words[i - 1].text == "."):
                    continue              # a map's keys or a concatenation: outside this check
                try:
                    _, names = reader.values()
                except Unreadable:
                    continue
                for name in names:
                    if name.startswith("@") or name.isdigit() or name in (",", "{", "}"):
                        continue          # a named set or an interface index: not a name to check
                    if not any(fnmatch.fnmatchcase(n, name) for n in have):
                        found.append((t.line, f"{t.text} {name!r}: {node} has no such interface (its "
                                              f"interfaces: {', '.join(interfaces)}); the rule "
                                              f"`{lines[t.line - 1].strip()}` would never match"))
    return found


# -- the model ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def ruleset(text: str) -> Ruleset:
    return read(text)


SERVICES = {"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80,
            "https": 443, "ftps-data": 989, "ftps": 990}
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "icmp", "ipv6-icmp": "icmp",
             "6": "tcp", "17": "udp", "1": "icmp", "58": "icmp"}
OPS = ("==", "!=", "<", ">", "<=", ">=")


class _Reader:
    """One rule's words as conditions on a new connection (Flow), read left to right."""

    def __init__(self, rs: Ruleset, chain: Chain, rule: Rule):
        self.rs, self.chain, self.rule = rs, chain, rule
        self.words = self.expand(rule.words, depth=0)
        self.i = 0

    def expand(self, words: list[Token], depth: int) -> list[Token]:
        out = []
        for t in words:
            if t.kind == "word" and t.text.startswith("$"):
                value = self.rs.defines.get(t.text[1:])
                if value is None or depth > 8:
                    raise Unreadable(t.line, f"undefined variable {t.text}")
                out += self.expand(value, depth + 1)
            else:
                out.append(t)
        return out

    def peek(self) -> str | None:
        return self.words[self.i].text if self.i < len(self.words) else None

    def take(self) -> Token:
        if self.i >= len(self.words):
            raise Unreadable(self.rule.line, "the rule ends early")
        self.i += 1
        return self.words[self.i - 1]

    def values(self) -> tuple[str, list[str]]:
        """An optional operator, then a value, a comma list, a `{ set }` or `@named` set."""
        op = self.take().text if self.peek() in OPS else "=="
        t = self.take()
        if t.text == "{" and t.kind == "punct":
            items: list[str] = []
            while (nxt := self.take()).text != "}":
                if nxt.text != ",":
                    items.append(nxt.text)
            return op, items
        if t.text.startswith("@"):
            elements = self.rs.sets.get((self.chain.family, self.chain.table, t.text[1:]))
            if elements is None:
                raise Unreadable(t.line, f"named set {t.text} has no elements this reader can see")
            return op, [e.text for e in self.expand(elements, 0) if e.text not in ("{", "}", ",")]
        items = [t.text]
        while self.peek() == ",":
            self.take()
            items.append(self.take().text)
        return op, items

    def conditions(self) -> tuple[list[Callable[[Flow], bool]], Token | None]:
        """The rule's matches, and its verdict token (None: it has none)."""
        out: list[Callable[[Flow], bool]] = []
        while self.i < len(self.words):
            t = self.take()
            word = t.text
            nxt = self.peek()
            if word == "counter":
                while self.peek() in ("packets", "bytes"):
                    self.take(), self.take()
            elif word == "log":
                while self.peek() in ("prefix", "level", "group", "snaplen", "queue-threshold", "flags"):
                    self.take(), self.take()
            elif word == "comment":
                self.take()
            elif word in ("accept", "drop", "reject", "jump", "goto", "return", "continue"):
                return out, t
            elif word in ("ip", "ip6") and nxt in ("saddr", "daddr"):
                out.append(self.address(word, self.take().text))
            elif f"{word} {nxt}" in ("ip protocol", "meta l4proto", "ip6 nexthdr"):
                self.take()
                out.append(self.proto(*self.values()))
            elif word in ("tcp", "udp", "th") and nxt in ("sport", "dport"):
                out.append(self.port(word, self.take().text, *self.values()))
            elif word in ("icmp", "icmpv6") and nxt in ("type", "code"):
                self.take()
                self.values()
                out.append(lambda f: f.proto == "icmp")       # the model does not tell ICMP types apart
            elif word == "meta" and nxt in ("iifname", "oifname", "nfproto"):
                out.append(self.meta(self.take().text))
            elif word in ("iifname", "oifname", "iif", "oif"):
                out.append(self.interface(word))
            elif word == "ct" and nxt == "state":
                self.take()
                op, states = self.values()
                # the connection's state on this device: NEW, or RELATED (a helper expected it)
                out.append(lambda f, states=set(states), op=op: (f.state.lower() in states) == (op == "=="))
            else:
                raise Unreadable(t.line, f"`{word}{' ' + nxt if nxt else ''}` is outside what the model reads")
        return out, None

    def address(self, family: str, which: str) -> Callable[[Flow], bool]:
        op, items = self.values()
        if op not in ("==", "!="):
            raise Unreadable(self.rule.line, f"address comparison {op}")
        nets = [_network(item, self.rule.line) for item in items]
        version = 4 if family == "ip" else 6

        def test(f: Flow) -> bool:
            addr = f.src if which == "saddr" else f.dst
            if addr.version != version:
                return False          # nft: an ip match implies IPv4 (meta nfproto)
            hit = any(addr in net for net in nets)
            return hit if op == "==" else not hit
        return test

    def proto(self, op: str, items: list[str]) -> Callable[[Flow], bool]:
        names = {PROTOCOLS.get(item) for item in items}
        if None in names or op not in ("==", "!="):
            raise Unreadable(self.rule.line, f"protocol {op} {', '.join(items)}")
        return lambda f: (f.proto in names) == (op == "==")

    def port(self, proto: str, which: str, op: str, items: list[str]) -> Callable[[Flow], bool]:
        ranges = [_ports(item, self.rule.line) for item in items]
        if op not in ("==", "!=") and len(ranges) != 1:
            raise Unreadable(self.rule.line, f"{op} with a set")
        low, high = ranges[0]

        def test(f: Flow) -> bool:
            if (proto == "th" and f.proto not in ("tcp", "udp")) or (proto != "th" and f.proto != proto):
                return False
            port = f.sport if which == "sport" else f.dport
            if port is None:
                return False          # not known in advance: matches no port rule (as the static filter)
            hit = any(a <= port <= b for a, b in ranges)
            return {"==": hit, "!=": not hit, "<": port < low, ">": port > high,
                    "<=": port <= high, ">=": port >= low}[op]
        return test

    def meta(self, key: str) -> Callable[[Flow], bool]:
        if key == "nfproto":
            op, items = self.values()
            versions = {{"ipv4": 4, "ipv6": 6}.get(item) for item in items}
            if None in versions:
                raise Unreadable(self.rule.line, f"meta nfproto {', '.join(items)}")
            return lambda f: (f.src.version in versions) == (op == "==")
        return self.interface(key)

    def interface(self, key: str) -> Callable[[Flow], bool]:
        op, names = self.values()
        if op not in ("==", "!="):
            raise Unreadable(self.rule.line, f"interface comparison {op}")
        inbound = key in ("iifname", "iif")

        def test(f: Flow) -> bool:
            name = f.in_interface if inbound else f.out_interface
            if name is None:
                return False          # not known: matches no interface rule (as the static filter)
            hit = any(fnmatch.fnmatchcase(name, pattern) for pattern in names)
            return hit if op == "==" else not hit
        return test


def _network(text: str, line: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | _Range:
    try:
        if "-" in text and "/" not in text:
            low, high = text.split("-", 1)
            return _Range(ipaddress.ip_address(low), ipaddress.ip_address(high))
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise Unreadable(line, f"address {text!r}") from None


class _Range:
    """An address range `a-b`, as nft writes it."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def __contains__(self, addr) -> bool:
        return addr.version == self.low.version and self.low <= addr <= self.high


def _ports(text: str, line: int) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    if m:
        return int(m.group(1)), int(m.group(2))
    if text.isdigit():
        return int(text), int(text)
    if text in SERVICES:
        return SERVICES[text], SERVICES[text]
    raise Unreadable(line, f"port {text!r}")


def _forward_chains(rs: Ruleset, version: int) -> list[Chain]:
    families = ("ip", "inet") if version == 4 else ("ip6", "inet")
    found = [c for c in rs.chains.values()
             if c.hook == "forward" and c.type == "filter" and c.family in families]
    return sorted(found, key=lambda c: c.priority or 0)


def _run(rs: Ruleset, chain: Chain, flow: Flow, depth: int = 0) -> tuple[str, int | None] | None:
    """The chain's verdict on the flow: (accept | drop | return, line), None: fell off its end."""
    if depth > 16:
        raise Unreadable(chain.line, "jumps nest deeper than 16")
    for rule in chain.rules:
        reader = _Reader(rs, chain, rule)
        conditions, verdict = reader.conditions()
        if verdict is None or not all(test(flow) for test in conditions):
            continue
        word = verdict.text
        if word in ("accept", "drop"):
            return word, rule.line
        if word == "reject":
            return "reject", rule.line
        if word == "return":
            return "return", rule.line
        if word in ("jump", "goto"):
            target = rs.chains.get((chain.family, chain.table, reader.take().text))
            if target is None:
                raise Unreadable(rule.line, f"{word} to a chain this reader does not see")
            result = _run(rs, target, flow, depth + 1)
            if result is not None and result[0] != "return":
                return result
            if word == "goto":
                return result or ("return", rule.line)
    return None


def verdict(firewall: Firewall, flow: Flow) -> tuple[str, int | None]:
    """The filter's model: what it does with a new connection (accept | drop | reject) and the line
    that decides (None: no chain decides; every forward chain's policy is accept, or there is none).
    Raises Unreadable (lab.devkit.types) outside the documented subset (unreadable() lists it all)."""
    rs = ruleset(firewall.nftables_text)
    decided: int | None = None
    for chain in _forward_chains(rs, flow.src.version):
        result = _run(rs, chain, flow)
        if result is None or result[0] == "return":
            action, line = chain.policy, chain.policy_line or None
        else:
            action, line = result
        if action != "accept":
            return action, line
        decided = decided or line
    return "accept", decided


def unreadable(firewall: Firewall) -> list[str]:
    """Why the model cannot judge this ruleset ("LINE: what"); empty: verdict() reads all of it."""
    rs = ruleset(firewall.nftables_text)
    problems = [f"line {line}: `{what}` is outside what the model reads" for line, what in rs.unread]
    for chain in rs.chains.values():
        if chain.family not in ("ip", "ip6", "inet"):
            if chain.rules or chain.policy == "drop":
                problems.append(f"line {chain.line}: a chain of family {chain.family}")
            continue
        if chain.base and chain.hook != "forward" and chain.hook not in ("input", "output") \
                and (chain.rules or chain.policy == "drop"):
            problems.append(f"line {chain.line}: chain {chain.name} on the {chain.hook} hook "
                            f"(the model reads the forward hook)")
        if chain.base and chain.type != "filter" and chain.rules:
            problems.append(f"line {chain.line}: chain {chain.name} of type {chain.type}")
        if chain.base and chain.hook in ("input", "output"):
            continue
        for rule in chain.rules:
            try:
                _Reader(rs, chain, rule).conditions()
            except Unreadable as exc:
                problems.append(f"line {exc.line}: {exc.what}")
    return problems


# -- the device ---------------------------------------------------------------------------------------

def setup(view: NodeView) -> DeviceSetup:
    firewall: Firewall = view.section
    source = Path(firewall.nftables)
    text, reasons = observe_drops(firewall.nftables_text, source.name)
    return DeviceSetup(restore=Restore(source, text, check=tuple(sandboxed(["nft", "-c", "-f"])),
                                       load=tuple(sandboxed(["nft", "-f"])), suffix="nft"),
                       reasons=reasons, sysctls=idle_sysctls(firewall.idle_timeout))


DEVICE = Device(
    name="nftables", section="firewall", applies=lambda view: view.section.mode == "nftables", setup=setup,
    model=verdict, events=frozenset({"drop"}),        # its drops are reported by the drop observer
    features=(features.NFT_LOG,),
)
