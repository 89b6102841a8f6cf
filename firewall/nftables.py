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

Its model (verdict below, the static filter's interface) reads filter chains on the forward
hook (families ip, ip6, inet) in priority order, their policies, jumps and gotos, and: ip/ip6
saddr/daddr (address, prefix, range, set, named set, $variable), ip protocol / meta l4proto,
tcp/udp/th sport/dport (port, range, service, set, ==, !=, <, >, <=, >=), iifname/oifname/iif/oif,
ct state, ct status (dnat, expected), meta/ct mark (0 while nothing sets one), tcp flags, fib
daddr type, meta nfproto, icmp/icmpv6 type (matches any ICMP), concatenations (`ip daddr . tcp
dport @set`), verdict maps (`vmap { ... }`, `vmap @map`); counter, log, comment and a `limit`
without a verdict decide nothing; a `limit` before a verdict is judged for the first packets and
said (`notes`). `ct helper set "X"` in a prerouting filter chain with a `ct helper X { type "ftp"
... }` object attaches the kernel FTP helper (`helper`). A match it cannot read is tried both ways
and makes the connection unpredictable only when the verdicts differ; unreadable() names what
it cannot read in rules that can decide (the slides' step 1 where a cell depends on it).
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
                # a reject answers at once: its log is sent at once too (a log group batches for 1 s)
                now = " queue-threshold 1" if verdict.text == "reject" else ""
                inserts.setdefault(verdict.line, []).append((verdict.col, log_statement(key) + now + " "))
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
                if _in_fib(reader.words, i):
                    continue              # `fib saddr . iif oif missing`: a lookup's flags and result
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


_FIB_WORDS = frozenset(("saddr", "daddr", "mark", "iif", "oif", "."))


def _in_fib(words: list, i: int) -> bool:
    """Is words[i] a flag or the result of a `fib` expression (not an interface match)?"""
    j = i - 1
    while j >= 0 and words[j].text in _FIB_WORDS:
        j -= 1
    return j >= 0 and words[j].text == "fib"


# -- the model ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def ruleset(text: str) -> Ruleset:
    return read(text)


SERVICES = {"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80,
            "https": 443, "ftps-data": 989, "ftps": 990}
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "icmp", "ipv6-icmp": "icmp",
             "6": "tcp", "17": "udp", "1": "icmp", "58": "icmp"}
OPS = ("==", "!=", "<", ">", "<=", ">=")
#: Verdicts that decide (or hand the decision to another chain); `continue` and none do not.
DECIDING = ("accept", "drop", "reject", "jump", "goto", "return", "queue", "vmap")
#: (first word, second word) -> the kind of value a selector yields
SELECTORS = {
    ("ip", "saddr"): "addr4", ("ip", "daddr"): "addr4", ("ip6", "saddr"): "addr6", ("ip6", "daddr"): "addr6",
    ("ip", "protocol"): "proto", ("ip6", "nexthdr"): "proto", ("meta", "l4proto"): "proto",
    ("meta", "protocol"): "ethertype", ("meta", "nfproto"): "nfproto",
    ("meta", "iifname"): "iif", ("meta", "oifname"): "oif", ("meta", "iif"): "iif", ("meta", "oif"): "oif",
    ("ct", "state"): "state", ("ct", "status"): "status", ("ct", "mark"): "mark", ("meta", "mark"): "mark",
    ("ct", "direction"): "direction", ("meta", "pkttype"): "pkttype", ("tcp", "flags"): "flags",
}
for _p in ("tcp", "udp", "th"):
    SELECTORS[(_p, "sport")] = SELECTORS[(_p, "dport")] = f"port-{_p}"
for _p in ("icmp", "icmpv6"):
    SELECTORS[(_p, "type")] = SELECTORS[(_p, "code")] = "icmp"
SINGLE = {"iifname": "iif", "oifname": "oif", "iif": "iif", "oif": "oif"}
STATEMENTS = ("counter", "log", "comment", "limit", "notrack", "accept", "drop", "reject", "jump", "goto", "return",
              "continue", "queue", "fib", "dnat", "snat", "masquerade", "redirect", "quota")

Test = Callable[["_Ctx"], "bool | None"]


class _Ctx:
    """What a test looks at: the connection, the router's own addresses (None: not known), and
    whether anything in the ruleset sets a mark."""

    def __init__(self, flow: Flow, local: frozenset | None = None, marks: bool = False, first: bool = True):
        self.flow, self.local, self.marks, self.first = flow, local, marks, first


class _Parsed:
    """One rule read: its tests (each with what it is, for a test the model cannot answer), its
    verdict, the chain it jumps to, a verdict map, the helper it attaches, what trips a limit."""

    def __init__(self):
        self.tests: list[tuple[Test, str]] = []
        self.verdict: str | None = None
        self.target: str | None = None
        self.vmap: tuple[list[tuple[str, str, str]], list[tuple[list[str], str, str | None]]] | None = None
        self.helper: str | None = None
        self.sets_mark = False
        self.stateful: str | None = None
        self.unknown: list[str] = []


class _Reader:
    """One rule's words as tests on a new connection, read left to right; an expression it does
    not know is one unknown test (its words skipped up to the next statement it knows)."""

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

    def peek(self, k: int = 0) -> str | None:
        return self.words[self.i + k].text if self.i + k < len(self.words) else None

    def take(self) -> Token:
        if self.i >= len(self.words):
            raise Unreadable(self.rule.line, "the rule ends early")
        self.i += 1
        return self.words[self.i - 1]

    def values(self) -> tuple[str, list[str]]:
        """An optional operator, then a value, a comma list, a `{ set }` or `@named` set: (op, the
        values' texts; a named set's elements, a set's elements as written)."""
        op = self.take().text if self.peek() in OPS else "=="
        t = self.take()
        if t.text == "{" and t.kind == "punct":
            return op, [w for element in _split_tokens(self.until_close()) for w in element]
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

    def starts(self) -> bool:
        """Does an expression or statement this reader knows start here?"""
        a, b = self.peek(), self.peek(1)
        return a in STATEMENTS or a in SINGLE or (a, b) in SELECTORS or (a == "ct" and b in ("helper", "mark")) \
            or (a == "meta" and b == "mark")

    def read(self) -> _Parsed:
        out = _Parsed()
        while self.i < len(self.words):
            t = self.take()
            word, nxt = t.text, self.peek()
            if word == "counter":
                while self.peek() in ("packets", "bytes", "name"):
                    self.take(), self.take()
            elif word == "log":
                while self.peek() in ("prefix", "level", "group", "snaplen", "queue-threshold", "flags"):
                    key = self.take().text
                    self.take()
                    while key == "flags" and self.peek() == ",":
                        self.take(), self.take()
            elif word == "comment":
                self.take()
            elif word == "notrack":
                pass
            elif word == "limit":
                out.tests.append(self.limit(out))
            elif word in ("accept", "drop", "continue", "return", "queue"):
                out.verdict = word
                if word == "queue":
                    out.unknown.append("queue")
                self.i = len(self.words)
            elif word == "reject":
                out.verdict = "reject"
                self.i = len(self.words)          # `with tcp reset`, `with icmpx type ...`: how, not whether
            elif word in ("jump", "goto"):
                out.verdict, out.target = word, self.take().text
            elif word in ("dnat", "snat", "masquerade", "redirect"):
                out.unknown.append(f"{word} (nft NAT)")
                out.verdict = "nat"
                self.i = len(self.words)
            elif word == "ct" and nxt == "helper" and self.peek(1) == "set":
                self.take(), self.take()
                out.helper = self.take().text
            elif word in ("ct", "meta") and nxt == "mark" and self.peek(1) == "set":
                self.take(), self.take(), self.take()
                out.sets_mark = True
            elif word == "fib":
                out.tests.append(self.fib())
            elif word in SINGLE:
                out.tests.append(self.match(SINGLE[word], word, out))
            elif (word, nxt) in SELECTORS:
                out.tests.append(self.selector(t, out))
            else:
                what = f"{word}{' ' + nxt if nxt else ''}"
                out.unknown.append(f"`{what}` is outside what the model reads")
                out.tests.append((lambda ctx: None, f"`{what}`"))
                while self.i < len(self.words) and not self.starts():
                    self.i += 1
        return out

    # -- expressions

    def selector(self, first: Token, out: _Parsed) -> tuple[Test, str]:
        second = self.take().text
        keys = [(SELECTORS[(first.text, second)], first.text, second)]
        while self.peek() == ".":
            self.take()
            a = self.take().text
            if a in SINGLE:
                keys.append((SINGLE[a], a, ""))
                continue
            b = self.take().text
            if (a, b) not in SELECTORS:
                raise Unreadable(self.rule.line, f"`{a} {b}` in a concatenation")
            keys.append((SELECTORS[(a, b)], a, b))
        return self.rhs(keys, out)

    def match(self, kind: str, word: str, out: _Parsed) -> tuple[Test, str]:
        return self.rhs([(kind, word, "")], out)

    def rhs(self, keys: list[tuple[str, str, str]], out: _Parsed) -> tuple[Test, str]:
        what = " . ".join(f"{w} {x}".strip() for _, w, x in keys)
        op = self.take().text if self.peek() in OPS else "=="
        if keys[0][0] == "flags" and self.peek() == "&":
            self.take()
        if self.peek() == "vmap":
            self.take()
            out.vmap = (keys, self.map_elements())
            out.verdict = "vmap"
            return (lambda ctx: True), what
        elements = self.elements()
        if keys[0][0] == "flags" and self.peek() in OPS:    # tcp flags & (syn | ack) == syn
            self.take()
            mask = elements
            elements = self.elements()
            return _flags_masked(mask, elements, op), what
        return _test(keys, op, elements, self.rule.line), what

    def elements(self) -> list[list[str]]:
        """A value, a comma list, a `{ set }` or an `@named` set: each element's components."""
        t = self.take()
        if t.kind == "punct" and t.text == "{":
            return _split(self.until_close())
        if t.text.startswith("@"):
            found = self.rs.sets.get((self.chain.family, self.chain.table, t.text[1:]))
            if found is None:
                raise Unreadable(t.line, f"named set {t.text} has no elements this reader can see")
            return _split([x for x in self.expand(found, 0)][1:-1] if found and found[0].text == "{" else found)
        parts = [t]
        while self.peek() in (".", ","):
            parts.append(self.take())
            parts.append(self.take())
        return _split(parts)

    def until_close(self) -> list[Token]:
        depth, out = 0, []
        while True:
            t = self.take()
            if t.kind == "punct" and t.text == "{":
                depth += 1
            elif t.kind == "punct" and t.text == "}":
                if depth == 0:
                    return out
                depth -= 1
            out.append(t)

    def map_elements(self) -> list[tuple[list[str], str, str | None]]:
        t = self.take()
        if t.kind == "punct" and t.text == "{":
            tokens = self.until_close()
        elif t.text.startswith("@"):
            found = self.rs.sets.get((self.chain.family, self.chain.table, t.text[1:]))
            if found is None:
                raise Unreadable(t.line, f"named map {t.text} has no elements this reader can see")
            tokens = list(self.expand(found, 0))
            if tokens and tokens[0].text == "{":
                tokens = tokens[1:-1]
        else:
            raise Unreadable(t.line, "vmap without elements")
        out = []
        for element in _split_tokens(tokens):
            words = []
            for w in element:
                if ":" in w and w.rsplit(":", 1)[1] in DECIDING + ("continue",) and w.count(":") == 1:
                    words += [w.split(":")[0], ":", w.split(":")[1]]
                elif w.endswith(":") and w.count(":") == 1:
                    words += [w[:-1], ":"]
                elif w.startswith(":") and w.count(":") == 1:
                    words += [":", w[1:]]
                else:
                    words.append(w)
            if ":" not in words:
                raise Unreadable(self.rule.line, "a verdict map element without `:`")
            k = words.index(":")
            key = [c for c in " ".join(words[:k]).split(" . ")]
            rest = words[k + 1:]
            out.append(([c.strip() for c in key], rest[0], rest[1] if len(rest) > 1 else None))
        return out

    def limit(self, out: _Parsed) -> tuple[Test, str]:
        """`limit rate [over] N/unit [burst N packets]`: matches the first packets (within the
        burst), and over: does not; what trips it is said (stateful)."""
        words = []
        while self.i < len(self.words) and self.peek() not in STATEMENTS and not self.starts():
            words.append(self.take().text)
        over = "over" in words
        text = " ".join(words)
        out.stateful = f"limit {text}: " + ("matches once packets arrive faster" if over else
                                            "matches the first packets (its burst), then at that rate")
        return (lambda ctx: not over), f"limit {text}"

    def fib(self) -> tuple[Test, str]:
        keys = []
        while self.peek() not in ("oif", "oifname", "type", None):
            t = self.take().text
            if t != ".":
                keys.append(t)
        result = self.take().text
        op = self.take().text if self.peek() in OPS else "=="
        values = [c[0] for c in self.elements()]
        what = f"fib {' . '.join(keys)} {result}"

        def test(ctx: _Ctx) -> bool | None:
            if result in ("oif", "oifname"):
                if set(values) <= {"missing", "exists"}:
                    hit = "exists" in values      # the lab's routes lead back: a reverse path exists
                else:
                    return None
            elif keys[:1] == ["daddr"] or keys[:1] == ["saddr"]:
                addr = ctx.flow.dst if keys[0] == "daddr" else ctx.flow.src
                if ctx.local is None:
                    return None
                kind = "local" if addr in ctx.local else ("multicast" if addr.is_multicast else "unicast")
                hit = kind in values
            else:
                return None
            return hit if op == "==" else not hit
        return test, what


def _split_tokens(tokens: list[Token]) -> list[list[str]]:
    """Elements of a `{ ... }` body (comma-separated), each as its words."""
    out: list[list[str]] = [[]]
    for t in tokens:
        if t.kind == "punct" and t.text == ",":
            out.append([])
        elif t.kind != "newline":
            out[-1].append(t.text)
    return [e for e in out if e]


def _split(tokens: list[Token]) -> list[list[str]]:
    """Elements, each as its components (a concatenation `a . b` has two)."""
    out = []
    for words in _split_tokens(tokens):
        parts: list[list[str]] = [[]]
        for w in words:
            if w == ".":
                parts.append([])
            else:
                parts[-1].append(w)
        out.append([" ".join(p) for p in parts])
    return out


def _value(kind: str, ctx: _Ctx):
    """What the connection shows a selector (None: not known; False: the selector cannot match
    this connection at all, e.g. an IPv4 address of an IPv6 packet)."""
    f = ctx.flow
    if kind in ("addr4", "addr6"):
        return f.src, f.dst
    if kind.startswith("port-"):
        proto = kind[5:]
        if (proto == "th" and f.proto not in ("tcp", "udp")) or (proto != "th" and f.proto != proto):
            return False
        return f.sport, f.dport
    return {"proto": f.proto, "nfproto": "ipv4" if f.src.version == 4 else "ipv6",
            "ethertype": "ip" if f.src.version == 4 else "ip6", "iif": f.in_interface, "oif": f.out_interface,
            "state": f.state.lower(), "direction": "original", "pkttype": "unicast",
            "mark": None if ctx.marks else 0,
            "status": {"dnat"} if f.dnat else set() | ({"expected"} if f.state == "RELATED" else set()),
            "flags": {"syn"} if ctx.first else {"ack", "psh"}, "icmp": "icmp"}.get(kind)


def _component(kind: str, word: str, which: str, text: str, ctx: _Ctx, line: int, op: str = "==") -> bool | None:
    """Does one selector's value match one element's component?"""
    f = ctx.flow
    if kind in ("addr4", "addr6"):
        addr = f.src if which == "saddr" else f.dst
        if addr.version != (4 if kind == "addr4" else 6):
            return False
        return addr in _network(text, line)
    if kind.startswith("port-"):
        if (word == "th" and f.proto not in ("tcp", "udp")) or (word != "th" and f.proto != word):
            return False
        port = f.sport if which == "sport" else f.dport
        if port is None:
            return False          # not known in advance: matches no port rule (as the static filter)
        low, high = _ports(text, line)
        return {"==": low <= port <= high, "!=": low <= port <= high, "<": port < low, ">": port > high,
                "<=": port <= high, ">=": port >= low}[op]
    value = _value(kind, ctx)
    if kind in ("iif", "oif") and value is None:
        return False              # not known: matches no interface rule (as the static filter)
    if value is None:
        return None
    if kind == "proto":
        name = PROTOCOLS.get(text)
        if name is None:
            raise Unreadable(line, f"protocol {text}")
        return value == name
    if kind in ("iif", "oif"):
        return fnmatch.fnmatchcase(value, text)
    if kind == "status":
        return text in value
    if kind == "flags":
        return set(text.split("|")) <= value
    if kind == "icmp":
        return f.proto == "icmp"
    if kind == "mark":
        try:
            wanted = int(text, 0)
        except ValueError:
            raise Unreadable(line, f"mark {text}") from None
        return {"==": value == wanted, "!=": value == wanted, "<": value < wanted, ">": value > wanted,
                "<=": value <= wanted, ">=": value >= wanted}[op]
    return value == text


def _test(keys: list[tuple[str, str, str]], op: str, elements: list[list[str]], line: int) -> Test:
    """The test of `keys OP elements`: any element matches (!=: none does)."""

    def test(ctx: _Ctx) -> bool | None:
        unknown = False
        for element in elements:
            if len(element) != len(keys):
                raise Unreadable(line, f"an element of {len(element)} parts for {len(keys)} keys")
            result: bool | None = True
            for (kind, word, which), text in zip(keys, element, strict=True):
                got = _component(kind, word, which, text, ctx, line, op if op not in ("==", "!=") else "==")
                if got is False:
                    result = False
                    break
                if got is None:
                    result = None
            if result is True:
                return op != "!="
            unknown = unknown or result is None
        if unknown:
            return None
        if op not in ("==", "!="):
            return False
        # an address or port selector of another protocol or family never matches, != neither
        if op == "!=" and any(_value(kind, ctx) is False or _wrong_family(kind, ctx) for kind, _, _ in keys):
            return False
        return op == "!="
    return test


def _wrong_family(kind: str, ctx: _Ctx) -> bool:
    return kind in ("addr4", "addr6") and ctx.flow.src.version != (4 if kind == "addr4" else 6)


def _flags_masked(mask: list[list[str]], value: list[list[str]], op: str) -> Test:
    bits = {w.strip("()") for e in mask for c in e for w in c.replace("|", " ").split()}
    want = {w.strip("()") for e in value for c in e for w in c.replace("|", " ").split()}

    def test(ctx: _Ctx) -> bool:
        hit = (({"syn"} if ctx.first else {"ack", "psh"}) & bits) == want
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


def _parsed(rs: Ruleset, chain: Chain, rule: Rule) -> _Parsed:
    cache = rs.__dict__.setdefault("_parsed", {})
    key = id(rule)
    if key not in cache:
        cache[key] = _Reader(rs, chain, rule).read()
    return cache[key]


def _marks(rs: Ruleset) -> bool:
    """Does anything in the ruleset set a mark (then a mark match is unknown)? A rule this reader
    cannot read is taken by its words (`mark set`)."""
    for chain in rs.chains.values():
        for rule in chain.rules:
            try:
                if _parsed(rs, chain, rule).sets_mark:
                    return True
            except Unreadable:
                words = [t.text for t in rule.words]
                if any(a == "mark" and b == "set" for a, b in zip(words, words[1:], strict=False)):
                    return True
    return False


def _forward_chains(rs: Ruleset, version: int, hook: str = "forward") -> list[Chain]:
    families = ("ip", "inet") if version == 4 else ("ip6", "inet")
    found = [c for c in rs.chains.values()
             if c.hook == hook and c.type == "filter" and c.family in families]
    return sorted(found, key=lambda c: c.priority or 0)


class _Branch(Exception):
    def __init__(self, line: int, what: str):
        self.line, self.what = line, what


def _run(rs: Ruleset, chain: Chain, ctx: _Ctx, assume: dict[int, bool], notes: list[str],
         depth: int = 0) -> tuple[str, int | None] | None:
    """The chain's verdict on the flow: (accept | drop | reject | return, line), None: fell off its end."""
    if depth > 16:
        raise Unreadable(chain.line, "jumps nest deeper than 16")
    for rule in chain.rules:
        p = _parsed(rs, chain, rule)
        if p.verdict not in DECIDING:
            continue                     # counters, logs, limits in front of a log: they decide nothing
        results = [test(ctx) for test, _ in p.tests]
        if False in results:
            continue
        if None in results:
            what = next(w for (_, w), r in zip(p.tests, results, strict=True) if r is None)
            if rule.line not in assume:
                raise _Branch(rule.line, (p.unknown[0] if p.unknown else f"{what} (not known for this connection)"))
            if not assume[rule.line]:
                continue
        if p.stateful:
            notes.append(f"{rule.line}: {p.stateful}, then {p.verdict}")
        word, target = p.verdict, p.target
        if word == "vmap":
            word, target = _vmap(p, ctx, rule.line)
            if word is None:
                continue
        if word in ("queue", "nat"):
            raise Unreadable(rule.line, p.unknown[0] if p.unknown else word)
        if word in ("accept", "drop", "reject", "return"):
            return word, rule.line
        if word in ("jump", "goto"):
            found = rs.chains.get((chain.family, chain.table, target))
            if found is None:
                raise Unreadable(rule.line, f"{word} to a chain this reader does not see")
            result = _run(rs, found, ctx, assume, notes, depth + 1)
            if result is not None and result[0] != "return":
                return result
            if word == "goto":
                return result or ("return", rule.line)
    return None


def _vmap(p: _Parsed, ctx: _Ctx, line: int) -> tuple[str | None, str | None]:
    keys, elements = p.vmap
    for key, word, target in elements:
        hit = _test(keys, "==", [key], line)(ctx)
        if hit is None:
            raise Unreadable(line, "a verdict map key not known for this connection")
        if hit:
            return word, target
    return None, None


def _judge(run: Callable[[dict[int, bool]], tuple[str, int | None]]) -> tuple[str, int | None]:
    """A walk run both ways where a rule's match is unknown: the verdict when both agree, else
    Unreadable naming the first such rule (firewall.saved does the same)."""
    pending: list[dict[int, bool]] = [{}]
    found: list[tuple[tuple[str, int | None], dict[int, bool]]] = []
    first: _Branch | None = None
    while pending:
        assume = pending.pop()
        if len(found) + len(pending) > 64:
            raise Unreadable(first.line if first else 0, first.what if first else "too many unknown matches")
        try:
            found.append((run(assume), assume))
        except _Branch as branch:
            first = first or branch
            pending += [{**assume, branch.line: True}, {**assume, branch.line: False}]
    if len({v[0] for v, _ in found}) > 1:
        assert first is not None
        raise Unreadable(first.line, first.what)
    return min(found, key=lambda item: sum(item[1].values()))[0]


def _decide(firewall: Firewall, flow: Flow, local: frozenset | None = None,
            hook: str = "forward", first: bool = True) -> tuple[tuple[str, int | None], list[str]]:
    rs = ruleset(firewall.nftables_text)
    ctx = _Ctx(flow, local, _marks(rs), first)
    notes: list[str] = []

    def run(assume: dict[int, bool]) -> tuple[str, int | None]:
        notes.clear()
        decided: int | None = None
        for chain in _forward_chains(rs, flow.src.version, hook):
            result = _run(rs, chain, ctx, assume, notes)
            if result is None or result[0] == "return":
                action, line = chain.policy, chain.policy_line or None
            else:
                action, line = result
            if action != "accept":
                return action, line
            decided = decided or line
        return "accept", decided
    return _judge(run), list(notes)


def verdict(firewall: Firewall, flow: Flow, local: frozenset | None = None,
            first: bool = True) -> tuple[str, int | None]:
    """The filter's model: what it does with a new connection (accept | drop | reject) and the line
    that decides (None: no chain decides; every forward chain's policy is accept, or there is none).
    Every match it can read is read; a match it cannot read matters only when the verdict differs
    with it true and false (then Unreadable, lab.devkit.types; unreadable() lists them all)."""
    return _decide(firewall, flow, local, first=first)[0]


def notes(firewall: Firewall, flow: Flow, local: frozenset | None = None) -> list[str]:
    """The stateful matches (limit) the verdict met on the way, and what trips each ("FILE:LINE: ...")."""
    name = Path(firewall.nftables).name if firewall.nftables else "ruleset"
    return [f"{name}:{n}" for n in _decide(firewall, flow, local)[1]]


def helper(firewall: Firewall, flow: Flow, local: frozenset | None = None) -> str | None:
    """"FILE:LINE" of the `ct helper set` (in a prerouting filter chain) that attaches a ct helper
    object of type "ftp" - the kernel FTP helper - to this connection, or None."""
    rs = ruleset(firewall.nftables_text)
    ctx = _Ctx(flow, local, _marks(rs))
    for chain in _forward_chains(rs, flow.src.version, "prerouting"):
        for rule in chain.rules:
            try:
                p = _parsed(rs, chain, rule)
                if any(test(ctx) is not True for test, _ in p.tests):
                    continue
            except Unreadable:
                continue                 # what it cannot read attaches no helper it knows of
            if p.helper is not None:
                kind = rs.helpers.get((chain.family, chain.table, p.helper.strip('"')))
                if kind == "ftp":
                    name = Path(firewall.nftables).name if firewall.nftables else "ruleset"
                    return f"{name}:{rule.line}"
            if p.verdict in ("accept", "drop", "reject"):
                break
    return None


verdict.helper = helper          # type: ignore[attr-defined]   (the path walk asks the model)
verdict.notes = notes            # type: ignore[attr-defined]


def unreadable(firewall: Firewall) -> list[str]:
    """What the model cannot read in rules that can decide a forwarded connection ("LINE: what");
    empty: verdict() reads all of it. Counters, logs and limits in front of a log decide nothing."""
    rs = ruleset(firewall.nftables_text)
    problems = [f"line {line}: `{what}` is outside what the model reads" for line, what in rs.unread]
    for chain in rs.chains.values():
        if chain.family not in ("ip", "ip6", "inet"):
            if chain.rules or chain.policy == "drop":
                problems.append(f"line {chain.line}: a chain of family {chain.family}")
            continue
        if chain.base and chain.type != "filter" and chain.rules:
            problems.append(f"line {chain.line}: chain {chain.name} of type {chain.type}")
            continue
        if chain.base and chain.hook in ("input", "output"):
            continue
        other_hook = chain.base and chain.hook != "forward"
        if other_hook and chain.policy == "drop":
            problems.append(f"line {chain.line}: chain {chain.name} on the {chain.hook} hook "
                            f"(the model reads the forward hook)")
        for rule in chain.rules:
            try:
                p = _parsed(rs, chain, rule)
            except Unreadable as exc:
                problems.append(f"line {exc.line}: {exc.what}")
                continue
            if p.verdict not in DECIDING:
                continue
            if other_hook and p.verdict not in ("accept", "continue"):
                problems.append(f"line {rule.line}: a rule that decides on the {chain.hook} hook "
                                f"(the model reads the forward hook)")
            problems += [f"line {rule.line}: {what}" for what in p.unknown]
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
