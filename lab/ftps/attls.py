"""AT-TLS policies (z/OS Policy Agent TTLS configuration): the subset that matters to FTP.

With `TLSMECHANISM ATTLS` a z/OS FTP endpoint does not configure TLS itself: the TCP/IP stack's
AT-TLS layer does, by a policy that the Policy Agent reads. FTP is an "application-controlled"
AT-TLS application: it tells the stack when to start TLS (after AUTH TLS) and when to stop it
(CCC). The lab's endpoints read such a policy (lab statement `ATTLSPOLICY file` in FTP.DATA) and take
from the rule that maps each connection: the handshake role, the protocol versions, the cipher
list, the key ring and certificate label, ApplicationControlled and SecondaryMap.

Public API
    load_policy(path) -> Policy                 # InputError naming file:line for every problem
    parse_policy(text, source="<policy>", base=None) -> Policy
    Policy.match(direction, local_port, remote_port, local_ip="", remote_ip="") -> Mapping | None
        direction "inbound" (the connection was accepted here) or "outbound" (opened from here);
        the rule of highest Priority wins, then the first name in alphabetical order (Policy Agent).
    Policy.ignored: [(line, statement, parameter)]   # accepted, has no effect in the lab
    Mapping: rule, enabled, role ("client" | "server" | "server-with-client-auth"), keyring,
        certificate_label, versions (("TLSV1.2", "TLSV1.3") as On), ciphers (OpenSSL names, in
        order), application_controlled, secondary_map, handshake_timeout, where (file:line)
    Mapping.unusable_for_ftp() -> str | None       # why FTP cannot start TLS with it
    Contexts(cert, key, ca, side): .get(mapping) -> pyOpenSSL context (cached per mapping)

The syntax (z/OS Communications Server IP Configuration Reference, "AT-TLS policy statements"):
`#` comments; a statement is `Kind [name]` followed by `{` ... `}` (braces on their own lines or at
the end of the statement's line); inside, one parameter a line (`Keyword value`) or a nested
statement (an inline TTLSKeyringParms, TTLSEnvironmentAdvancedParms, TTLSCipherParms, ...). Keywords
are case-insensitive, names are not.

Supported (everything else is a `file:line` problem, or listed in Policy.ignored when it is a real
AT-TLS parameter without meaning in the lab):
    TTLSRule name { LocalPortRange p[-q]  RemotePortRange p[-q]  LocalAddr a[/n]  RemoteAddr a[/n]
        Direction Inbound|Outbound|Both  Priority n  TTLSGroupActionRef g
        TTLSEnvironmentActionRef e  TTLSConnectionActionRef c  (Jobname, Userid: ignored) }
    TTLSGroupAction name { TTLSEnabled On|Off }
    TTLSEnvironmentAction name { HandshakeRole Client|Server|ServerWithClientAuth
        TTLSKeyringParms[Ref]  TTLSEnvironmentAdvancedParms[Ref]  TTLSCipherParms[Ref] }
    TTLSConnectionAction name { HandshakeRole  TTLSConnectionAdvancedParms[Ref]  TTLSCipherParms[Ref] }
    TTLSKeyringParms name { Keyring ring }
    TTLSEnvironmentAdvancedParms / TTLSConnectionAdvancedParms name { SSLv2 SSLv3 TLSv1 TLSv1.1
        TLSv1.2 TLSv1.3 On|Off  ApplicationControlled On|Off  SecondaryMap On|Off
        HandshakeTimeout n  CertificateLabel label }
    TTLSCipherParms name { V3CipherSuites codes|NAME  V3CipherSuites4Char codes|NAME }

Lab readings (a RACF key ring has no Linux equivalent):
- `Keyring` is read as the lab's KEYRING statement is: a PEM bundle or a folder of PEM files with the
  trusted CA certificates, `*AUTH*/*` = the endpoint's --ca file; a relative path is relative to
  the policy file. The endpoint's own certificate is its --cert/--key (the ring's default
  certificate), or `CertificateLabel L` = `L.pem` and `L.key` in the Keyring folder.
- Defaults are the documented ones of z/OS 2.1 (TLSv1 On, TLSv1.1 On, TLSv1.2 Off,
  ApplicationControlled Off, SecondaryMap Off, HandshakeTimeout 10); TLSv1.3 Off (added later,
  default Off: UNCONFIRMED). The lab's OpenSSL offers TLS 1.2 and 1.3 only, so an environment
  without `TLSv1.2 On` or `TLSv1.3 On` is a problem at load time, naming the line.
- V3CipherSuites: 2-character codes run together (`352F`) or one constant name
  (`TLS_RSA_WITH_AES_256_CBC_SHA`); V3CipherSuites4Char: 4-character codes (`C02F`) or a name.
  Codes OpenSSL 3 no longer has (RC4, DES, NULL, export) are problems. TLS_DHE_DSS_* suites exist
  but need a DSA certificate: with the lab's RSA certificates the handshake finds no shared cipher.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lab.ftps import tls
from lab.ftps.errors import InputError, Problem, read_input

# -- the statements and their parameters ----------------------------------------------------------

_ON_OFF = ("ON", "OFF")
_VERSIONS = ("SSLV2", "SSLV3", "TLSV1", "TLSV1.1", "TLSV1.2", "TLSV1.3")
#: documented defaults (z/OS 2.1; TLSv1.3 later, default Off)
_VERSION_DEFAULTS = {"SSLV2": False, "SSLV3": False, "TLSV1": True, "TLSV1.1": True, "TLSV1.2": False,
                     "TLSV1.3": False}
_LAB_VERSIONS = ("TLSV1.2", "TLSV1.3")

# Real AT-TLS parameters that have no meaning in the lab: accepted, listed in Policy.ignored.
_IGNORED = {"TRACE", "CTRACECLEARTEXT", "FIPS140", "SYSLOGFACILITY", "GROUPMAXCONNECTIONS",
            "ENVIRONMENTUSERINSTANCE", "JOBNAME", "USERID", "RESETCIPHERTIMER", "RENEGOTIATION",
            "CLIENTAUTHTYPE", "KEYRINGSTASHFILE", "KEYRINGPW", "V2CIPHERSUITES", "TTLSGSKADVANCEDPARMSREF",
            "TTLSSIGNATUREPARMSREF", "MIDDLEBOXCOMPATMODE", "CLIENTHANDSHAKESNI", "SERVERHANDSHAKESNI",
            "CERTIFICATELABEL2", "TRUNCATEDHMAC", "CLIENTEDHGROUPSIZE", "SERVEREDHGROUPSIZE",
            "PEERMINCERTVERSION", "PEERMINDHKEYSIZE", "PEERMINRSAKEYSIZE", "3DESKEYCHECK"}
_IGNORED_BLOCKS = {"TTLSGSKADVANCEDPARMS", "TTLSSIGNATUREPARMS", "TTLSGSKOCSPPARMS", "TTLSGSKLDAPPARMS",
                   "TTLSGSKHTTPCDPPARMS", "TTLSGROUPADVANCEDPARMS"}

_ADVANCED = {**{v: "onoff" for v in _VERSIONS}, "APPLICATIONCONTROLLED": "onoff", "SECONDARYMAP": "onoff",
             "HANDSHAKETIMEOUT": "seconds", "CERTIFICATELABEL": "text"}
#: statement kind -> {parameter: value kind}; "block:KIND" = an inline statement of that kind,
#: "ref:KIND" = the name of a statement of that kind
_SCHEMA: dict[str, dict[str, str]] = {
    "TTLSRULE": {"LOCALPORTRANGE": "ports", "REMOTEPORTRANGE": "ports", "LOCALADDR": "addr",
                 "REMOTEADDR": "addr", "DIRECTION": "direction", "PRIORITY": "priority",
                 "TTLSGROUPACTIONREF": "ref:TTLSGROUPACTION",
                 "TTLSENVIRONMENTACTIONREF": "ref:TTLSENVIRONMENTACTION",
                 "TTLSCONNECTIONACTIONREF": "ref:TTLSCONNECTIONACTION"},
    "TTLSGROUPACTION": {"TTLSENABLED": "onoff"},
    "TTLSENVIRONMENTACTION": {"HANDSHAKEROLE": "role",
                              "TTLSKEYRINGPARMS": "block:TTLSKEYRINGPARMS",
                              "TTLSKEYRINGPARMSREF": "ref:TTLSKEYRINGPARMS",
                              "TTLSENVIRONMENTADVANCEDPARMS": "block:TTLSENVIRONMENTADVANCEDPARMS",
                              "TTLSENVIRONMENTADVANCEDPARMSREF": "ref:TTLSENVIRONMENTADVANCEDPARMS",
                              "TTLSCIPHERPARMS": "block:TTLSCIPHERPARMS",
                              "TTLSCIPHERPARMSREF": "ref:TTLSCIPHERPARMS"},
    "TTLSCONNECTIONACTION": {"HANDSHAKEROLE": "role",
                             "TTLSCONNECTIONADVANCEDPARMS": "block:TTLSCONNECTIONADVANCEDPARMS",
                             "TTLSCONNECTIONADVANCEDPARMSREF": "ref:TTLSCONNECTIONADVANCEDPARMS",
                             "TTLSCIPHERPARMS": "block:TTLSCIPHERPARMS",
                             "TTLSCIPHERPARMSREF": "ref:TTLSCIPHERPARMS"},
    "TTLSKEYRINGPARMS": {"KEYRING": "text"},
    "TTLSENVIRONMENTADVANCEDPARMS": _ADVANCED,
    "TTLSCONNECTIONADVANCEDPARMS": _ADVANCED,
    "TTLSCIPHERPARMS": {"V3CIPHERSUITES": "ciphers2", "V3CIPHERSUITES4CHAR": "ciphers4"},
}
_REPEATABLE = {"V3CIPHERSUITES", "V3CIPHERSUITES4CHAR"}
_SPELLING = {k.upper(): k for k in (
    "TTLSRule", "TTLSGroupAction", "TTLSEnvironmentAction", "TTLSConnectionAction", "TTLSKeyringParms",
    "TTLSEnvironmentAdvancedParms", "TTLSConnectionAdvancedParms", "TTLSCipherParms")}
_ROLES = {"CLIENT": "client", "SERVER": "server", "SERVERWITHCLIENTAUTH": "server-with-client-auth"}

# IANA cipher suite codes and names (RFC 5246, 5288, 5289, 7905, 8446 registries): what AT-TLS
# V3CipherSuites may name. Which of them this OpenSSL offers is asked of OpenSSL itself (_openssl).
_IANA = {
    0x0001: "TLS_RSA_WITH_NULL_MD5", 0x0002: "TLS_RSA_WITH_NULL_SHA", 0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0006: "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", 0x0009: "TLS_RSA_WITH_DES_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", 0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA", 0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", 0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", 0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00A2: "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", 0x00A3: "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
_IANA_CODES = {name: code for code, name in _IANA.items()}


@cache
def _openssl() -> dict[int, str]:
    """IANA code -> OpenSSL cipher name, for every suite this OpenSSL has (at any security level)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers()}


def _cipher_codes(value: str, width: int) -> list[int]:
    """V3CipherSuites / V3CipherSuites4Char value -> IANA codes (ValueError with a short reason)."""
    upper = value.upper()
    if upper in _IANA_CODES:
        return [_IANA_CODES[upper]]
    if upper.startswith(("TLS_", "SSL_")):
        raise ValueError(f"{value} is not a cipher suite name the lab knows")
    if not re.fullmatch(r"[0-9A-F]+", upper) or len(upper) % width:
        raise ValueError(f"{value!r} is neither a cipher suite name nor {width}-character hex codes")
    return [int(upper[i:i + width], 16) for i in range(0, len(upper), width)]


def _openssl_name(code: int) -> str:
    name = _openssl().get(code)
    if name is None:
        iana = _IANA.get(code, "an unknown suite")
        raise ValueError(f"{code:04X} ({iana}) is not offered by this OpenSSL (OpenSSL 3 dropped RC4, DES, "
                         f"NULL and export suites)")
    return name


# -- the parse tree -------------------------------------------------------------------------------

@dataclass
class _Stmt:
    kind: str                   # upper case
    name: str
    line: int
    params: dict[str, tuple[int, list[str], str]] = field(default_factory=dict)  # KEY -> (line, values, spelling)
    blocks: dict[str, _Stmt] = field(default_factory=dict)                     # KIND -> inline statement
    ignored: set[str] = field(default_factory=set)                             # ignored parameters given


_TOKEN = re.compile(r"[{}]|[^\s{}]+")


def _tokens(text: str) -> list[list[tuple[int, str]]]:
    """The text as lines of (line number, token); `#` comments dropped, braces their own tokens."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        toks = [(lineno, t) for t in _TOKEN.findall(line)]
        if toks:
            out.append(toks)
    return out


class _Parser:
    def __init__(self, text: str, source: str):
        self.lines = _tokens(text)
        self.source = source
        self.problems: list[Problem] = []
        self.ignored: list[tuple[int, str, str]] = []
        self.i = 0             # index into lines
        self.pending: list[tuple[int, str]] = []

    def problem(self, line: int, fieldname: str, message: str) -> None:
        self.problems.append(Problem(self.source, line, fieldname, message))

    def _next_line(self) -> list[tuple[int, str]] | None:
        """The next line's tokens (the rest of the current line first)."""
        if self.pending:
            toks, self.pending = self.pending, []
            return toks
        if self.i >= len(self.lines):
            return None
        self.i += 1
        return list(self.lines[self.i - 1])

    def _open_brace(self, head: list[tuple[int, str]]) -> bool:
        """Is the statement whose line is `head` followed by `{` (at its end or on the next line)?
        The brace (and anything after it on that line) is consumed."""
        if head and head[-1][1] == "{":
            head.pop()
            return True
        if "{" in (t for _, t in head):
            k = [t for _, t in head].index("{")
            self.pending = head[k + 1:]
            del head[k:]
            return True
        nxt = self._next_line()
        if nxt and nxt[0][1] == "{":
            self.pending = nxt[1:]
            return True
        if nxt:
            self.pending = nxt
        return False

    def parse(self) -> list[_Stmt]:
        tops = []
        while (head := self._next_line()) is not None:
            line, word = head[0]
            if word in "{}":
                self.problem(line, word, "a brace without a statement")
                continue
            kind = word.upper()
            if kind not in _SCHEMA:
                self.problem(line, word, _unknown_statement(word))
                if self._open_brace(head):
                    self._skip_block(line)
                continue
            stmt = self._statement(kind, head)
            if stmt is not None:
                tops.append(stmt)
        return tops

    def _skip_block(self, opened: int) -> None:
        depth = 1
        while depth and (toks := self._next_line()) is not None:
            for _, t in toks:
                depth += {"{": 1, "}": -1}.get(t, 0)
        if depth:
            self.problem(opened, "", "the { opened here is never closed")

    def _statement(self, kind: str, head: list[tuple[int, str]]) -> _Stmt | None:
        line = head[0][0]
        shown = _SPELLING.get(kind, kind)
        if not self._open_brace(head):
            self.problem(line, shown, "expected { after the statement (and its name)")
            return None
        if len(head) > 2:
            self.problem(line, shown, f"one name expected, got {' '.join(t for _, t in head[1:])}")
        stmt = _Stmt(kind, head[1][1] if len(head) > 1 else "", line)
        schema = _SCHEMA[kind]
        while True:
            toks = self._next_line()
            if toks is None:
                self.problem(line, shown, f"the {{ of {shown} {stmt.name} is never closed".replace("  ", " "))
                return stmt
            pline, word = toks[0]
            if word == "}":
                if len(toks) > 1:
                    self.pending = toks[1:]
                return stmt
            if word == "{":
                self.problem(pline, shown, "a brace without a statement")
                continue
            key = word.upper()
            if key in _IGNORED_BLOCKS or (key in _IGNORED and key not in schema):
                self.ignored.append((pline, shown, word))
                stmt.ignored.add(key)
                if self._block_follows(toks):
                    self._skip_block(pline)
                continue
            kindspec = schema.get(key)
            if kindspec is None:
                self.problem(pline, word, f"not a parameter of {shown}" + _hint(key))
                if self._block_follows(toks):
                    self._skip_block(pline)
                continue
            if kindspec.startswith("block:"):
                inner = self._statement(kindspec[6:], toks)
                if inner is not None:
                    if kindspec[6:] in stmt.blocks:
                        self.problem(pline, word, "given twice in this statement")
                    stmt.blocks[kindspec[6:]] = inner
                continue
            values = [t for _, t in toks[1:]]
            if "{" in values or "}" in values:
                self.problem(pline, word, "a parameter and a brace on one line: put braces on lines of their own")
                values = [v for v in values if v not in "{}"]
            if not values:
                self.problem(pline, word, "missing value")
                continue
            if key in stmt.params and key not in _REPEATABLE:
                self.problem(pline, word, f"given twice (also on line {stmt.params[key][0]})")
                continue
            old = stmt.params.get(key, (pline, [], word))[1]
            stmt.params[key] = (pline, old + values, word)

    def _block_follows(self, toks: list[tuple[int, str]]) -> bool:
        return self._open_brace(toks)


def _unknown_statement(word: str) -> str:
    near = {"TTLRULE": "TTLSRule", "TTLGROUPACTION": "TTLSGroupAction",
            "TTLENVIRONMENTACTION": "TTLSEnvironmentAction"}.get(word.upper())
    return f"unknown statement (did you mean {near}?)" if near else \
        f"not an AT-TLS statement the lab reads ({', '.join(_SPELLING.values())})"


def _hint(key: str) -> str:
    if key in ("TTLENABLED",):
        return " (did you mean TTLSEnabled?)"
    if key in ("TLSSV1.1", "TLSSV1.2", "TLSSV1.3"):
        return f" (did you mean {key.replace('TLSSV', 'TLSv')}?)"
    if key.startswith("TTL") and not key.startswith("TTLS"):
        return " (AT-TLS statement names start with TTLS)"
    return ""


# -- the policy -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mapping:
    """What AT-TLS applies to one connection: the actions of the rule that maps it, merged."""

    rule: str
    where: str
    enabled: bool
    role: str = "server"
    keyring: str | None = None
    certificate_label: str | None = None
    versions: tuple[str, ...] = ()
    ciphers: tuple[str, ...] = ()
    application_controlled: bool = False
    secondary_map: bool = False
    handshake_timeout: int = 10
    keyring_line: int = field(default=0, compare=False)     # where the policy names them (check_files)
    label_line: int = field(default=0, compare=False)

    def unusable_for_ftp(self) -> str | None:
        """Why FTP cannot use this mapping to start TLS (None: it can)."""
        if not self.enabled:
            return f"AT-TLS rule {self.rule} ({self.where}) has TTLSEnabled Off"
        if not self.application_controlled:
            # IBM: FTP needs ApplicationControlled On to start and stop TLS itself (UNCONFIRMED:
            # what z/OS FTP replies; the lab refuses AUTH and says why).
            return (f"AT-TLS rule {self.rule} ({self.where}) is not ApplicationControlled On: FTP cannot "
                    f"start TLS after AUTH or stop it at CCC")
        return None


@dataclass
class _Rule:
    name: str
    line: int
    direction: str
    priority: int
    local_ports: tuple[int, int] | None
    remote_ports: tuple[int, int] | None
    local_addr: ipaddress._BaseNetwork | None
    remote_addr: ipaddress._BaseNetwork | None
    mapping: Mapping


@dataclass
class Policy:
    source: str
    rules: list[_Rule]
    ignored: list[tuple[int, str, str]]

    def match(self, direction: str, local_port: int, remote_port: int, local_ip: str = "",
              remote_ip: str = "") -> Mapping | None:
        """The mapping of the rule that maps this connection (None: AT-TLS leaves it alone)."""
        for rule in self.rules:           # already in Policy Agent order
            if rule.direction not in ("BOTH", direction.upper()):
                continue
            if not _in(rule.local_ports, local_port) or not _in(rule.remote_ports, remote_port):
                continue
            if not _addr_in(rule.local_addr, local_ip) or not _addr_in(rule.remote_addr, remote_ip):
                continue
            return rule.mapping
        return None

    def ignored_text(self) -> list[str]:
        return [f"{self.source}:{line}: {stmt} {param}: has no effect in the lab" for line, stmt, param in self.ignored]


def _in(rng: tuple[int, int] | None, port: int) -> bool:
    return rng is None or rng[0] <= port <= rng[1]


def _addr_in(net, ip: str) -> bool:
    if net is None:
        return True
    try:
        return ipaddress.ip_address(ip.removeprefix("::ffff:") if "." in ip else ip) in net
    except ValueError:
        return False


def load_policy(path: str | Path) -> Policy:
    """Read an AT-TLS policy file; every problem as `file:line: field: problem` (InputError)."""
    text = read_input(path, "AT-TLS policy file")
    return parse_policy(text, str(path), Path(path).resolve().parent)


def parse_policy(text: str, source: str = "<policy>", base: Path | None = None) -> Policy:
    parser = _Parser(text, source)
    stmts = parser.parse()
    named: dict[str, dict[str, _Stmt]] = {}
    for s in stmts:
        table = named.setdefault(s.kind, {})
        if not s.name:
            parser.problem(s.line, _SPELLING[s.kind], "a statement outside another one needs a name")
        elif s.name in table:
            parser.problem(s.line, s.name, f"{_SPELLING[s.kind]} {s.name} is defined twice "
                                           f"(also on line {table[s.name].line})")
        else:
            table[s.name] = s
    for s in stmts:
        _check_values(s, parser)
    rules = [r for s in stmts if s.kind == "TTLSRULE" and (r := _rule(s, named, parser, base))]
    if parser.problems:
        # once each: rules that share an action meet its problems once per rule
        unique = {(p.line, p.field, p.message): p for p in parser.problems}
        raise InputError(sorted(unique.values(), key=lambda p: p.line))
    # Policy Agent order: highest Priority first, then rule names alphabetically.
    rules.sort(key=lambda r: (-r.priority, r.name))
    return Policy(source, rules, parser.ignored)


def _check_values(s: _Stmt, parser: _Parser) -> None:
    """Each parameter's value against its kind (nested statements too)."""
    for key, (line, values, word) in s.params.items():
        try:
            _value(_SCHEMA[s.kind][key], values)
        except ValueError as exc:
            parser.problem(line, word, str(exc))
    for inner in s.blocks.values():
        _check_values(inner, parser)


def _value(kind: str, values: list[str]):
    """One parameter's value, parsed (ValueError: why not)."""
    multi = kind in ("ciphers2", "ciphers4")
    if len(values) != 1 and not multi:
        raise ValueError(f"one value expected, got {' '.join(values)}")
    v = values[0]
    if kind == "onoff":
        if v.upper() not in _ON_OFF:
            raise ValueError(f"{v!r} is not On or Off")
        return v.upper() == "ON"
    if kind == "ports":
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", v)
        if not m or not 0 <= int(m.group(1)) <= int(m.group(2) or m.group(1)) <= 65535:
            raise ValueError(f"{v!r} is not a port or a range low-high (0..65535)")
        return int(m.group(1)), int(m.group(2) or m.group(1))
    if kind == "addr":
        try:
            return ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise ValueError(f"{v!r} is not an address or prefix") from None
    if kind == "direction":
        if v.upper() not in ("INBOUND", "OUTBOUND", "BOTH"):
            raise ValueError(f"{v!r} is not Inbound, Outbound or Both")
        return v.upper()
    if kind in ("priority", "seconds"):
        low, high = (1, 2_000_000_000) if kind == "priority" else (0, 86400)
        if not v.isdigit() or not low <= int(v) <= high:
            raise ValueError(f"{v!r} is not a number in {low}..{high}")
        return int(v)
    if kind == "role":
        if v.upper() not in _ROLES:
            raise ValueError(f"{v!r} is not Client, Server or ServerWithClientAuth")
        return _ROLES[v.upper()]
    if multi:
        codes = [c for value in values for c in _cipher_codes(value, 2 if kind == "ciphers2" else 4)]
        return [_openssl_name(c) for c in codes]
    return v


def _param(stmt: _Stmt | None, key: str, default=None):
    if stmt is None or key not in stmt.params:
        return default
    try:
        return _value(_SCHEMA[stmt.kind][key], stmt.params[key][1])
    except ValueError:
        return default                 # reported by _check_values


def _resolve(owner: _Stmt | None, kind: str, named: dict[str, dict[str, _Stmt]], parser: _Parser) -> _Stmt | None:
    """The `kind` statement of owner: inline, or referenced by name (a missing name is a problem)."""
    if owner is None:
        return None
    if kind in owner.blocks:
        return owner.blocks[kind]
    ref = kind + "REF"
    if ref not in owner.params:
        return None
    line, values, _ = owner.params[ref]
    target = named.get(kind, {}).get(values[0])
    if target is None:
        parser.problem(line, _SPELLING.get(kind, kind) + "Ref", f"no {_SPELLING.get(kind, kind)} named {values[0]}")
    return target


def _rule(s: _Stmt, named, parser: _Parser, base: Path | None) -> _Rule | None:
    where = f"{parser.source}:{s.line}"
    if "DIRECTION" not in s.params:
        parser.problem(s.line, s.name, "TTLSRule needs Direction (Inbound, Outbound or Both)")
        return None
    conditions = {"LOCALPORTRANGE", "REMOTEPORTRANGE", "LOCALADDR", "REMOTEADDR"}
    if not conditions & set(s.params) and not {"JOBNAME", "USERID"} & s.ignored:
        parser.problem(s.line, s.name, "TTLSRule needs a condition besides Direction "
                                       "(LocalPortRange, RemotePortRange, LocalAddr or RemoteAddr)")
    if "TTLSGROUPACTIONREF" not in s.params:
        parser.problem(s.line, s.name, "TTLSRule needs TTLSGroupActionRef")
        return None
    group = _resolve(s, "TTLSGROUPACTION", named, parser)
    env = _resolve(s, "TTLSENVIRONMENTACTION", named, parser)
    conn = _resolve(s, "TTLSCONNECTIONACTION", named, parser)
    if group is None:
        return None
    if "TTLSENABLED" not in group.params:
        parser.problem(group.line, group.name, "TTLSGroupAction needs TTLSEnabled On or Off")
        return None
    enabled = _param(group, "TTLSENABLED", False)
    if enabled and env is None and "TTLSENVIRONMENTACTIONREF" not in s.params:
        parser.problem(s.line, s.name, "TTLSEnabled On needs TTLSEnvironmentActionRef")
        return None
    mapping = Mapping(s.name, where, False)
    if enabled and env is not None:
        mapping = _merge(s.name, where, env, conn, named, parser, base)
    return _Rule(s.name, s.line, _param(s, "DIRECTION"), _param(s, "PRIORITY", 1),
                 _param(s, "LOCALPORTRANGE"), _param(s, "REMOTEPORTRANGE"), _param(s, "LOCALADDR"),
                 _param(s, "REMOTEADDR"), mapping)


def _merge(rule: str, where: str, env: _Stmt, conn: _Stmt | None, named, parser: _Parser,
           base: Path | None) -> Mapping:
    """Environment action, overridden by the connection action where that one says something."""
    if "HANDSHAKEROLE" not in env.params:
        parser.problem(env.line, env.name, "TTLSEnvironmentAction needs HandshakeRole")
    ring_stmt = _resolve(env, "TTLSKEYRINGPARMS", named, parser)
    keyring = _param(ring_stmt, "KEYRING")
    keyring_line = ring_stmt.params["KEYRING"][0] if keyring else 0
    if keyring and base is not None and keyring != "*AUTH*/*" and not Path(keyring).is_absolute():
        keyring = str(base / keyring)
    env_adv = _resolve(env, "TTLSENVIRONMENTADVANCEDPARMS", named, parser)
    conn_adv = _resolve(conn, "TTLSCONNECTIONADVANCEDPARMS", named, parser)
    ciphers = _resolve(conn, "TTLSCIPHERPARMS", named, parser) or _resolve(env, "TTLSCIPHERPARMS", named, parser)

    def adv(key: str, default):
        return _param(conn_adv, key, _param(env_adv, key, default))

    versions = tuple(v for v in _LAB_VERSIONS if adv(v, _VERSION_DEFAULTS[v]))
    if not versions:
        line = (env_adv or env).line
        parser.problem(line, env.name, "neither TLSv1.2 nor TLSv1.3 is On (TLSv1.2 defaults to Off in AT-TLS); "
                                       "the lab's OpenSSL offers TLS 1.2 and 1.3 only: code TLSv1.2 On")
    suites = ()
    if ciphers is not None:
        suites = tuple(_param(ciphers, "V3CIPHERSUITES", []) or []) + \
            tuple(_param(ciphers, "V3CIPHERSUITES4CHAR", []) or [])
        if versions and (why := _no_usable_cipher(versions, suites)):
            key = next(k for k in ("V3CIPHERSUITES", "V3CIPHERSUITES4CHAR", "") if k in ciphers.params or not k)
            line, word = (ciphers.params[key][0], ciphers.params[key][2]) if key else (ciphers.line, ciphers.name)
            parser.problem(line, word, why)
    label_stmt = next((a for a in (conn_adv, env_adv) if a is not None and "CERTIFICATELABEL" in a.params), None)
    return Mapping(rule, where, True, role=_param(conn, "HANDSHAKEROLE", _param(env, "HANDSHAKEROLE", "server")),
                   keyring=keyring, certificate_label=adv("CERTIFICATELABEL", None), versions=versions,
                   ciphers=suites, application_controlled=adv("APPLICATIONCONTROLLED", False),
                   secondary_map=adv("SECONDARYMAP", False), handshake_timeout=adv("HANDSHAKETIMEOUT", 10),
                   keyring_line=keyring_line,
                   label_line=label_stmt.params["CERTIFICATELABEL"][0] if label_stmt is not None else 0)


def _no_usable_cipher(versions: tuple[str, ...], suites: tuple[str, ...]) -> str | None:
    """Why no cipher suite of the policy can be used with the TLS versions it turns on (None: one can)."""
    if not suites:
        return None
    tls13 = [c for c in suites if c in TLS13_SUITES]
    older = [c for c in suites if c not in TLS13_SUITES]
    if ("TLSV1.3" in versions and tls13) or ("TLSV1.2" in versions and older):
        return None
    on = " and ".join(v.replace("TLSV", "TLSv") for v in versions)
    if older:
        return (f"no cipher suite is usable: only {on} is On, and every suite named is a TLS 1.2 one "
                f"({', '.join(older)}); name a TLS 1.3 suite (1301, 1302, 1303) or code TLSv1.2 On")
    return (f"no cipher suite is usable: only {on} is On, and every suite named is a TLS 1.3 one "
            f"({', '.join(tls13)}); name a TLS 1.2 suite or code TLSv1.3 On")


#: OpenSSL's names of the TLS 1.3 suites (RFC 8446; the IANA names, 1301-1305)
TLS13_SUITES = frozenset(("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                          "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"))


# -- TLS contexts for mappings --------------------------------------------------------------------

class Contexts:
    """The pyOpenSSL context of each mapping, made once (a server's data connections resume the
    control connection's session only through the same context's session cache).

    side: "server" or "client" (the FTP role; the TLS role is the mapping's HandshakeRole).
    cert/key: the endpoint's certificate (the key ring's default one); ca: its --ca file."""

    def __init__(self, cert=None, key=None, ca=None, verify: bool | None = None):
        self.cert, self.key, self.ca, self.verify = cert, key, ca, verify
        self._made: dict[Mapping, object] = {}

    def get(self, mapping: Mapping):
        if mapping in self._made:
            return self._made[mapping]
        cas = tls.keyring_files(mapping.keyring, self.ca)
        cert, key = self.cert, self.key
        if mapping.certificate_label:
            ring = Path(mapping.keyring or ".")
            cert = ring / f"{mapping.certificate_label}.pem"
            key = ring / f"{mapping.certificate_label}.key"
        low = mapping.versions[0] if mapping.versions else "TLSV1.2"
        high = mapping.versions[-1] if mapping.versions else "TLSV1.2"
        if mapping.role == "client":
            ctx = tls.client_context(cas, cert, key, verify=bool(cas) if self.verify is None else self.verify,
                                     ciphers=mapping.ciphers, max_version=high, min_version=low)
        else:
            if cert is None:
                raise tls.TLSSetupError(mapping.where, "HandshakeRole Server needs a certificate: "
                                                       "--cert/--key or CertificateLabel")
            auth = "required" if mapping.role == "server-with-client-auth" else "none"
            ctx = tls.server_context(cert, key or cert, cas, client_auth=auth, ciphers=mapping.ciphers,
                                     max_version=high, min_version=low)
        self._made[mapping] = ctx
        return ctx


# -- the files a policy names, read at start ------------------------------------------------------

def check_files(policy: Policy, cert=None, key=None, ca=None) -> None:
    """Every file the policy's enabled rules name, read now and not at the first handshake: each
    Keyring (a PEM bundle or a folder of PEM files; `*AUTH*/*` = the --ca file), each
    CertificateLabel's pair (LABEL.pem and LABEL.key in the Keyring folder), a server role's
    certificate; then each mapping's TLS context made as a handshake would make it. All problems
    at once, as `policy:line: statement: problem` (InputError); cert/key/ca: the command line's."""
    from lab.ftps import pki

    problems: dict[tuple[int, str, str], None] = {}
    mine: list[str] = []                 # this rule's

    def problem(line: int, what: str, message: str) -> None:
        problems[(line, what, message)] = None
        mine.append(message)

    def refused(exc: InputError) -> str:
        return "; ".join(f"{p.file}: {p.message}" if p.file else p.message for p in exc.problems)

    contexts = Contexts(cert, key, ca)
    for rule in policy.rules:
        m = rule.mapping
        if not m.enabled:
            continue
        mine.clear()
        ring = m.keyring
        if ring and ring.strip().upper() != "*AUTH*/*":       # *AUTH*/*: the --ca file, checked by its caller
            path = Path(ring)
            try:
                files = sorted(f for f in path.iterdir() if f.suffix in (".pem", ".crt")) if path.is_dir() else [path]
            except OSError as exc:
                problem(m.keyring_line, "Keyring", f"{ring}: {exc.strerror}")
                files = []
            if path.is_dir() and not files and not m.certificate_label:
                problem(m.keyring_line, "Keyring", f"{ring}: a folder without a .pem or .crt file")
            for f in files:
                if path.is_dir() and m.certificate_label and f.name == f"{m.certificate_label}.pem":
                    continue           # the endpoint's own certificate, checked with its key below
                try:
                    pki.load_certificates(f, "Keyring")
                except InputError as exc:
                    hint = "" if path.exists() else \
                        " (a z/OS key ring name? the lab reads a PEM file or a folder of PEM files)"
                    problem(m.keyring_line, "Keyring", refused(exc) + hint)
        if m.certificate_label:
            folder = Path(ring or ".")
            try:
                pki.check_pair(folder / f"{m.certificate_label}.pem", folder / f"{m.certificate_label}.key",
                               "CertificateLabel", "CertificateLabel")
            except InputError as exc:
                problem(m.label_line or rule.line, "CertificateLabel", refused(exc))
        elif m.role != "client" and cert is None:
            problem(rule.line, rule.name, f"HandshakeRole {'ServerWithClientAuth' if m.role != 'server' else 'Server'} "
                                          f"needs a certificate: --cert/--key or CertificateLabel")
        if not mine:
            try:
                contexts.get(m)
            except tls.TLSSetupError as exc:
                problem(rule.line, rule.name, f"{exc.path}: {exc.reason}")
            except InputError as exc:
                problem(rule.line, rule.name, refused(exc))
    if problems:
        raise InputError([Problem(policy.source, line, what, message)
                          for line, what, message in sorted(problems, key=lambda p: p[0])])
