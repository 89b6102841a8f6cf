"""An nftables ruleset as text: its tokens with their lines, its statements and blocks, its chains.

Pure. The nftables filter (firewall.nftables) reads a user's ruleset with it to name every drop
by its line, to insert the statement that has a drop observed, and to model the documented
subset for prediction. This is not nft's grammar: `nft` itself judges validity (`nft -c` at
check time). What this reader sees is enough for that job:

- tokens: words, "strings", punctuation ({ } ; , = != == < > <= >=), newlines; `#` comments
  and backslash-newline continuations are dropped, and every token keeps its line and column;
- statements end at `;` or a newline, except inside braces that are part of the statement (a set
  `{ 21, 990 }`, the spec of `add chain ... { type ...; policy drop; }`); `table ... {` and, in a
  table, `chain ... {` (and `set`, `map`, `ct helper` ... objects) open a block of statements;
- ct helper objects (`ct helper NAME { type "ftp" protocol tcp; }`): their type, in `helpers`;
- chains: `table [FAMILY] NAME { chain NAME { type T hook H priority P; policy X; rules } }`, and
  the command forms `add table`, `add chain F T C [{ spec }]`, `add rule F T C ...`,
  `insert rule F T C ...`, `flush ruleset`; `define NAME = VALUE` variables. Anything else is
  kept in `Ruleset.unread` (it may still load: it is only outside what the model reads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PUNCT = ("!=", "==", "<=", ">=", "{", "}", ";", ",", "=", "<", ">")
_WORD_END = set(" \t\r\n{};,\"#=!<>")
VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "continue", "queue")
#: The named priorities of the filter-type hooks (nft(8), "PRIORITY").
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
#: Objects a table may hold besides chains: their `{ ... }` is a block of their own.
TABLE_OBJECTS = ("set", "map", "flowtable", "ct", "counter", "quota", "limit", "secmark", "synproxy")


@dataclass(frozen=True)
class Token:
    text: str
    line: int           # 1-based
    col: int            # 0-based, in its line
    kind: str           # word | string | punct | newline


@dataclass
class Statement:
    words: list[Token]                     # its tokens (a set's braces included)
    block: list[Statement] | None = None   # the statements of the block it opens
    close: Token | None = None             # that block's closing brace

    @property
    def line(self) -> int:
        return self.words[0].line

    def head(self, n: int) -> list[str]:
        return [t.text for t in self.words[:n]]


def tokenize(text: str) -> list[Token]:
    """The tokens of an nft file; a string keeps its quotes off. Raises ValueError on an
    unterminated string (nft would refuse the file too)."""
    out: list[Token] = []
    line, col, i, n = 1, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and text[i + 1:i + 2] == "\n":           # continuation
            i, line, col = i + 2, line + 1, 0
        elif c == "\n":
            out.append(Token("\n", line, col, "newline"))
            i, line, col = i + 1, line + 1, 0
        elif c in " \t\r":
            i, col = i + 1, col + 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0 or "\n" in text[i:end]:
                raise ValueError(f"line {line}: unterminated string")
            out.append(Token(text[i + 1:end], line, col, "string"))
            col += end + 1 - i
            i = end + 1
        elif (p := next((p for p in PUNCT if text.startswith(p, i)), None)) is not None:
            out.append(Token(p, line, col, "punct"))
            i, col = i + len(p), col + len(p)
        else:
            j = i
            while j < n and text[j] not in _WORD_END:
                j += 1
            if j == i:           # a lone '!' or the like: one character of its own
                j = i + 1
            out.append(Token(text[i:j], line, col, "word"))
            col += j - i
            i = j
    return out


def _opens_block(context: str, words: list[Token]) -> str | None:
    """The context of the block a `{` opens after these words, or None (a set or spec brace)."""
    first = words[0].text if words else ""
    if context == "top" and first == "table":
        return "table"
    if context == "table" and first == "chain":
        return "chain"
    if context == "table" and first in TABLE_OBJECTS:
        return "object"
    return None


def _statements(toks: list[Token], i: int, context: str) -> tuple[list[Statement], int, Token | None]:
    """Statements from toks[i] to the closing brace of this block (or the end); (them, next i, brace)."""
    out: list[Statement] = []
    words: list[Token] = []
    depth = 0
    while i < len(toks):
        t = toks[i]
        if depth == 0 and t.kind in ("newline", "punct") and t.text in ("\n", ";", "}"):
            if words:
                out.append(Statement(words))
                words = []
            if t.text == "}":
                return out, i + 1, t
            i += 1
            continue
        if t.text == "{" and t.kind == "punct":
            inner = _opens_block(context, words) if depth == 0 else None
            if inner is not None:
                block, i, close = _statements(toks, i + 1, inner)
                out.append(Statement(words, block, close))
                words = []
                continue
            depth += 1
        elif t.text == "}" and t.kind == "punct":
            depth -= 1
        if t.kind != "newline":
            words.append(t)
        i += 1
    if words:
        out.append(Statement(words))
    return out, i, None


def parse(text: str) -> list[Statement]:
    """The top-level statements of an nft file (ValueError: an unterminated string, a stray '}')."""
    toks = tokenize(text)
    statements, i, close = _statements(toks, 0, "top")
    if close is not None:
        raise ValueError(f"line {close.line}: '}}' closes nothing")
    return statements


# -- the chains of a ruleset ------------------------------------------------------------------------

@dataclass
class Rule:
    line: int
    words: list[Token]                      # as written (variables not yet expanded)
    text: str = ""                          # the rule as its line shows it

    @property
    def verdict(self) -> Token | None:
        """The rule's verdict keyword (at the rule's own level, not inside a map), or None."""
        depth = 0
        for t in self.words:
            if t.kind == "punct" and t.text == "{":
                depth += 1
            elif t.kind == "punct" and t.text == "}":
                depth -= 1
            elif depth == 0 and t.kind == "word" and t.text in VERDICTS:
                return t
        return None


@dataclass
class Chain:
    family: str
    table: str
    name: str
    line: int
    type: str | None = None                 # filter | nat | route (base chains)
    hook: str | None = None
    priority: int | None = None
    policy: str = "accept"
    policy_line: int = 0
    rules: list[Rule] = field(default_factory=list)

    @property
    def base(self) -> bool:
        return self.hook is not None

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.name}"


@dataclass
class Ruleset:
    chains: dict[tuple[str, str, str], Chain] = field(default_factory=dict)   # (family, table, name)
    defines: dict[str, list[Token]] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], list[Token]] = field(default_factory=dict)  # named sets' elements
    helpers: dict[tuple[str, str, str], str] = field(default_factory=dict)  # ct helper objects: their type
    unread: list[tuple[int, str]] = field(default_factory=list)   # (line, what) outside this reader

    def chain(self, family: str, table: str, name: str, line: int) -> Chain:
        return self.chains.setdefault((family, table, name), Chain(family, table, name, line))


def _family_table(words: list[str]) -> tuple[str, str, list[str]]:
    """`inet filter rest...` or `filter rest...` (family ip) -> (family, table, rest)."""
    if words and words[0] in FAMILIES:
        return words[0], (words[1] if len(words) > 1 else ""), words[2:]
    return "ip", (words[0] if words else ""), words[1:]


def _spec(chain: Chain, words: list[Token], unread: list[tuple[int, str]]) -> None:
    """A chain's `type T hook H [device D] priority P` and `policy X` statement (word tokens)."""
    texts = [t.text for t in words]
    if texts[:1] == ["policy"] and len(texts) == 2:
        chain.policy, chain.policy_line = texts[1], words[0].line
    elif texts[:1] == ["type"] and "hook" in texts and "priority" in texts:
        chain.type, chain.hook = texts[1], texts[texts.index("hook") + 1]
        chain.priority = priority(texts[texts.index("priority") + 1:])
        if chain.priority is None:
            unread.append((words[0].line, "priority " + " ".join(texts[texts.index("priority") + 1:])))
    elif texts[:1] in (["comment"], ["devices"]):
        pass
    else:
        chain.rules.append(Rule(words[0].line, words))


def priority(words: list[str]) -> int | None:
    """`0`, `-150`, `filter`, `filter + 10`, `mangle - 5` -> the number; None if unreadable."""
    text = " ".join(words).strip()
    m = re.fullmatch(r"(-?\d+|[a-z]+)(?:\s*([+-])\s*(\d+))?", text)
    if not m:
        return None
    base = int(m.group(1)) if m.group(1).lstrip("-").isdigit() else PRIORITIES.get(m.group(1))
    if base is None:
        return None
    return base + (int(m.group(3)) * (1 if m.group(2) == "+" else -1) if m.group(2) else 0)


def _split_spec(words: list[Token]) -> list[list[Token]]:
    """The statements inside an `add chain ... { type ...; policy ...; }` brace."""
    inner = words[words.index(next(t for t in words if t.text == "{")) + 1:]
    parts: list[list[Token]] = [[]]
    for t in inner:
        if t.text in (";", "}") and t.kind == "punct":
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def chains(statements: list[Statement]) -> Ruleset:
    """The chains, rules, variables and named sets of a parsed file, as `nft -f` would build them."""
    rs = Ruleset()
    for st in statements:
        head = st.head(4)
        if head[:1] == ["table"] and st.block is not None:
            family, table, _ = _family_table([t.text for t in st.words[1:]])
            _table(rs, family, table, st.block)
        elif head[:2] == ["flush", "ruleset"]:
            rs.chains.clear()
        elif head[:1] == ["define"] and len(st.words) >= 4 and st.words[2].text == "=":
            rs.defines[st.words[1].text] = st.words[3:]
        elif head[:2] in (["add", "table"], ["create", "table"]):
            pass
        elif head[:2] in (["add", "chain"], ["create", "chain"]):
            family, table, rest = _family_table([t.text for t in st.words[2:]])
            chain = rs.chain(family, table, rest[0] if rest else "", st.line)
            if any(t.text == "{" for t in st.words):
                for part in _split_spec(st.words):
                    _spec(chain, part, rs.unread)
        elif head[:2] in (["add", "rule"], ["insert", "rule"]):
            texts = [t.text for t in st.words[2:]]
            family, table, rest = _family_table(texts)
            skip = 2 + (len(texts) - len(rest)) + 1       # "add rule", family/table, chain
            chain = rs.chain(family, table, rest[0] if rest else "", st.line)
            rule = Rule(st.line, st.words[skip:])
            if head[0] == "insert":
                chain.rules.insert(0, rule)
            else:
                chain.rules.append(rule)
        else:
            rs.unread.append((st.line, " ".join(st.head(3))))
    return rs


def _table(rs: Ruleset, family: str, table: str, body: list[Statement]) -> None:
    for st in body:
        head = st.head(2)
        if head[:1] == ["chain"] and st.block is not None and len(st.words) >= 2:
            chain = rs.chain(family, table, st.words[1].text, st.line)
            for inner in st.block:
                _spec(chain, inner.words, rs.unread)
        elif head[:1] in (["set"], ["map"]) and st.block is not None and len(st.words) >= 2:
            for inner in st.block:
                if inner.words and inner.words[0].text == "elements":
                    rs.sets[(family, table, st.words[1].text)] = inner.words[2:]
        elif head[:2] == ["ct", "helper"] and st.block is not None and len(st.words) >= 3:
            for inner in st.block:
                if inner.words and inner.words[0].text == "type" and len(inner.words) > 1:
                    rs.helpers[(family, table, st.words[2].text)] = inner.words[1].text
        elif head[:1] == ["flags"] or (head[:1] and head[0] in TABLE_OBJECTS):
            pass
        else:
            rs.unread.append((st.line, " ".join(st.head(3))))


def read(text: str) -> Ruleset:
    """parse() then chains(); each rule's `text` is its line as written."""
    rs = chains(parse(text))
    lines = text.splitlines()
    for chain in rs.chains.values():
        for rule in chain.rules:
            rule.text = lines[rule.line - 1].strip() if 0 < rule.line <= len(lines) else ""
    return rs
