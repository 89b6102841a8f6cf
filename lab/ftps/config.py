"""Server and client settings with the z/OS FTP.DATA statement names.

An engineer can paste the security and firewall statements of a z/OS FTP.DATA file and get the
same behaviour from the lab's server and client (see reference/zos-ftp-and-rfcs.md sections 1-2).

Public API
----------
    ServerConfig(**statements)        # e.g. ServerConfig(PASSIVEDATAPORTS=(60000, 60100))
    ClientConfig(**statements)        # e.g. ClientConfig(SECURE_MECHANISM="TLS", EPSV4=True)
    ServerConfig.from_dict({"PASSIVEDATAPORTS": "(60000,60100)"}, source="topology.yaml")
    cfg.updated(**statements)         # a validated copy with some statements changed
    cfg.to_dict()                     # JSON-ready {statement: value}; from_dict(to_dict()) round-trips
    parse_ftpdata(path, side="server" | "client") -> ServerConfig | ClientConfig
    parse_ftpdata_text(text, side, source="<text>")
    cipher_list(names) -> (openssl_tls12_cipher_string, tls13_suites_or_None)

Field names are the statement names. Values are normalised: keywords are upper-case strings,
TRUE/FALSE are bools, numbers are ints/floats, PASSIVEDATAPORTS is a (low, high) tuple or None,
EXTENSIONS is a frozenset, CIPHERSUITE a tuple (order = preference). Every value is validated
when the object is built, from a file, a dict or keyword arguments; bad input raises
lab.ftps.errors.InputError naming the file:line (or the source) and the statement.

File syntax (FTP.DATA style): one statement a line, `STATEMENT value`; `;` starts a comment;
statement names and keywords are case-insensitive; EXTENSIONS, CIPHERSUITE and CERTUSERMAP may be
repeated (each line adds one). A statement of the other side (EPSV4 in a server file) is an error.

Lab defaults that differ from z/OS (the z/OS default in brackets):
    TLSRFCLEVEL RFC4217 [DRAFT]  - the lab's pictures use RFC4217 (DESIGN.md); DRAFT refuses CCC.
    EXTENSIONS AUTH_TLS AUTH_GSSAPI SIZE MDTM REST_STREAM UTF8 SSCN [none] - when a file or dict names any
        EXTENSIONS, exactly those are enabled. SSCN is a lab extension (not z/OS): SSCN ON makes
        the server the TLS client of its data connections (protected three-way transfers).
        AUTH_GSSAPI (Kerberos, RFC 2228) works when the server has a keytab (--keytab or KRB5_KTNAME).
    SECURE_PBSZ 16384 [UNCONFIRMED, believed 16384] - Kerberos protection buffer: the client asks
        for it with PBSZ, the server grants at most it (REPLYMODE ZOS: PBSZ outside 512..32768 is 501).
Lab statements that are not z/OS statements:
    server  REPLYMODE ZOS|RFC      reply codes where z/OS and RFC 4217 differ (425- vs 522, ...)
            LOGINDELAY seconds     delay before answering a failed login (default 1), times the
                                   failures of its address or user in LOGINWINDOW (it grows)
            LOGINLIMIT n           failed logins per client address and per user name within
                                   LOGINWINDOW; then PASS is refused without a look at the
                                   password until the oldest failure leaves the window
                                   (default 10; 0 = no limit; lab/ftps/throttle.py)
            LOGINWINDOW seconds    that window (default 300)
            LOGINTIMEOUT seconds   time from connecting (or REIN) to a completed login, the
                                   implicit TLS handshake included; then 421 and the connection
                                   is closed (default 60; 0 = no limit; lab/ftps/limits.py)
            MAXSESSIONS n          sessions of the server at once; one more connection gets
                                   `421 Too many users` and is closed (default 100; 0 = no limit)
            MAXSESSIONSPERADDRESS n  sessions at once from one client address (an IPv6 client:
                                   its /64); one more gets `421 There are too many connections
                                   from your internet address.` (default 10; 0 = no limit)
            CERTUSERMAP cert user  SECURE_LOGIN VERIFY_USER map: cert = subject CN or SHA-256
                                   fingerprint (hex, colons optional) -> user (stands in for RACF)
            IMPLICITPROT C|P       data protection of an implicit (TLSPORT) session before any PROT
    both    ATTLSPOLICY file       the AT-TLS policy (Policy Agent TTLS statements, lab/ftps/attls.py)
                                   that TLSMECHANISM ATTLS takes its TLS settings from (on z/OS the
                                   Policy Agent reads it); a relative name is relative to the
                                   FTP.DATA file. With ATTLS, KEYRING, CIPHERSUITE and TLSTIMEOUT
                                   are ignored (IBM), as is TLSMAXVERSION.
            TLSMAXVERSION TLSV1.2|TLSV1.3   highest TLS version offered; server default TLSV1.2
                                   because under TLS 1.3 the server must send session tickets on
                                   every data connection, and clients that never read during an
                                   upload (curl, lftp) then close with unread bytes: the kernel
                                   sends RST and the end of the upload is lost. pyOpenSSL cannot
                                   switch the tickets off (no SSL_CTX_set_num_tickets). Client
                                   default TLSV1.3.
    client  CCCNOOP TRUE|FALSE     send NOOP as the first clear command after CCC (default FALSE)
            DATACONNTIME seconds   data-connection connect/accept timeout (default 2: fail fast)
    z/OS timers used: server DATATIMEOUT, INACTIVE; client MYOPENTIME (connect + TLS + login),
    INACTTIME (wait for a reply or data); both FTPKEEPALIVE seconds: TCP keepalive on the control
    connection (lab/ftps/keepalive.py; its z/OS default and range are UNCONFIRMED, the lab's 0 = off).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from lab.ftps.errors import InputError, Problem, read_input

# -- value parsers: str -> normalised value, ValueError with a short reason on bad input --------


def _keyword(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        word = str(value).strip().upper()
        if word not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return word
    parse.__doc__ = " | ".join(allowed)
    return parse


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().upper()
    if word in ("TRUE", "YES", "1"):
        return True
    if word in ("FALSE", "NO", "0"):
        return False
    raise ValueError(f"{value!r} is not TRUE or FALSE")


def _number(low: float, high: float, kind: type = int) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip()):
                raise ValueError
            number = kind(value) if not isinstance(value, str) else kind(value.strip())
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{value!r} is not a number") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is outside {low}..{high}")
        return number
    return parse


_RANGE = re.compile(r"^\(?\s*(\d{1,5})\s*[, ]\s*(\d{1,5})\s*\)?$", re.ASCII)
_DECIMAL = re.compile(r"[+-]?\d+(\.\d+)?", re.ASCII)     # no `1_000`, no '٣' (int() takes both)


def _port_range(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        m = _RANGE.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} is not (low_port,high_port)")
        low, high = int(m.group(1)), int(m.group(2))
    else:
        try:
            low, high = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not (low_port,high_port)") from None
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"({low},{high}) must satisfy 1024 <= low <= high <= 65535")
    return (low, high)


def _text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("empty value")
    return text


# OpenSSL names for the z/OS System SSL CIPHERSUITE names (RSA key exchange only, TLS <= 1.2).
ZOS_CIPHERS = {
    "SSL_AES_128_SHA": "AES128-SHA",
    "SSL_AES_256_SHA": "AES256-SHA",
    "SSL_3DES_SHA": "DES-CBC3-SHA",
}
# Names z/OS accepts but OpenSSL 3 no longer offers (removed or moved to the legacy provider).
ZOS_CIPHERS_GONE = {
    "SSL_NULL_MD5": "NULL-MD5 (no encryption)",
    "SSL_NULL_SHA": "NULL-SHA (no encryption)",
    "SSL_RC4_MD5_EX": "EXP-RC4-MD5 (export, RC4)",
    "SSL_RC4_MD5": "RC4-MD5 (RC4)",
    "SSL_RC4_SHA": "RC4-SHA (RC4)",
    "SSL_RC2_MD5_EX": "EXP-RC2-CBC-MD5 (export, RC2)",
    "SSL_DES_SHA": "DES-CBC-SHA (single DES)",
}
_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
          "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256")


def _cipher(value: Any) -> str:
    name = str(value).strip()
    upper = name.upper()
    if upper in ZOS_CIPHERS or upper in _TLS13:
        return upper
    if upper in ZOS_CIPHERS_GONE:
        raise ValueError(f"{upper} = OpenSSL {ZOS_CIPHERS_GONE[upper]}: OpenSSL 3 no longer offers it; "
                         f"use SSL_AES_128_SHA, SSL_AES_256_SHA or a TLS 1.2/1.3 suite name")
    if not name or not re.fullmatch(r"[A-Za-z0-9_+:!@=.-]+", name):
        raise ValueError(f"{name!r} is not a cipher suite name")
    # An OpenSSL cipher name or string (lab extension): OpenSSL itself must know it.
    from OpenSSL import SSL
    try:
        SSL.Context(SSL.TLS_METHOD).set_cipher_list(name.encode())
    except SSL.Error:
        raise ValueError(f"{name!r} is neither a z/OS CIPHERSUITE name nor a cipher this OpenSSL offers") from None
    return name


def cipher_list(names: Iterable[str]) -> tuple[str | None, str | None]:
    """CIPHERSUITE values -> (OpenSSL TLS<=1.2 cipher string or None, TLS 1.3 suites or None).

    An empty list means "OpenSSL's defaults" (None, None). A list without TLS 1.3 names gives
    ("...", "") meaning: TLS 1.3 off (the z/OS names are TLS 1.2 RSA suites).
    """
    names = list(names)
    if not names:
        return None, None
    legacy = [ZOS_CIPHERS.get(n, n) for n in names if n not in _TLS13]
    modern = [n for n in names if n in _TLS13]
    return (":".join(legacy) if legacy else None), ":".join(modern)


_HEX_FP = re.compile(r"^[0-9A-Fa-f]{2}(:?[0-9A-Fa-f]{2}){31}$")


def normalise_cert_key(key: str) -> str:
    """A CERTUSERMAP key: a SHA-256 fingerprint (upper hex, no colons) or a subject CN as given."""
    key = key.strip()
    return key.replace(":", "").upper() if _HEX_FP.match(key) else key


def _certmap(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        parts = value.split()
        if len(parts) != 2:
            raise ValueError(f"{value!r}: want `CERTUSERMAP <subject-CN or sha256 fingerprint> <user>`")
        pairs = [(parts[0], parts[1])]
    elif isinstance(value, Iterable):            # several lines' worth (a topology's list)
        merged: dict[str, str] = {}
        for item in value:
            merged.update(_certmap(item))
        return merged
    else:
        raise ValueError(f"{value!r} is not a certificate->user map")
    return {normalise_cert_key(str(k)): str(v) for k, v in pairs}


#: z/OS's EXTENSIONS values, and the lab's SSCN (RFC 4217 has no server-to-server TLS; SSCN is the
#: glftpd/DrFTPD/FlashFXP extension that makes a server the TLS client of its data connections, for
#: protected three-way transfers; z/OS has no SSCN: a pasted z/OS FTP.DATA naming EXTENSIONS has none)
_EXTENSIONS = ("AUTH_TLS", "AUTH_GSSAPI", "SIZE", "MDTM", "UTF8", "REST_STREAM", "SSCN")


def _extension(value: Any) -> str:
    return _keyword(*_EXTENSIONS)(str(value).strip().upper())


# -- statement tables -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Spec:
    parse: Callable[[Any], Any]
    repeat: bool = False      # a file may repeat it; each line adds a value
    optional: bool = False    # None is a value (the statement is not set)


_COMMON: dict[str, _Spec] = {
    "SECURE_FTP": _Spec(_keyword("ALLOWED", "REQUIRED")),
    "SECURE_CTRLCONN": _Spec(_keyword("CLEAR", "SAFE", "PRIVATE")),
    "SECURE_DATACONN": _Spec(_keyword("NEVER", "CLEAR", "SAFE", "PRIVATE")),
    "SECURE_SESSION_REUSE": _Spec(_keyword("ALLOWED", "REQUIRED", "NONE")),
    "TLSRFCLEVEL": _Spec(_keyword("DRAFT", "RFC4217", "CCCNONOTIFY")),
    "TLSPORT": _Spec(_number(0, 65535)),
    "SECUREIMPLICITZOS": _Spec(_bool),
    "TLSTIMEOUT": _Spec(_number(0, 86400)),
    "TLSMECHANISM": _Spec(_keyword("FTP", "ATTLS")),
    "ATTLSPOLICY": _Spec(_text, optional=True),
    "CIPHERSUITE": _Spec(_cipher, repeat=True),
    "KEYRING": _Spec(_text, optional=True),
    "TLSMAXVERSION": _Spec(_keyword("TLSV1.2", "TLSV1.3")),
    "SECURE_PBSZ": _Spec(_number(512, 1 << 20)),
    "FTPKEEPALIVE": _Spec(_number(0, 86400)),
}
_SERVER: dict[str, _Spec] = {
    **_COMMON,
    "EXTENSIONS": _Spec(_extension, repeat=True),
    "SECURE_LOGIN": _Spec(_keyword("NO_CLIENT_AUTH", "REQUIRED", "VERIFY_USER")),
    "SECURE_PASSWORD": _Spec(_keyword("REQUIRED", "OPTIONAL")),
    "PASSIVEDATAPORTS": _Spec(_port_range, optional=True),
    "PASSIVEDATACONN": _Spec(_keyword("UNRESTRICTED", "NOREDIRECT")),
    "PORTCOMMAND": _Spec(_keyword("ACCEPT", "REJECT")),
    "PORTCOMMANDIPADDR": _Spec(_keyword("UNRESTRICTED", "NOREDIRECT")),
    "PORTCOMMANDPORT": _Spec(_keyword("UNRESTRICTED", "NOLOWPORTS")),
    "DATATIMEOUT": _Spec(_number(0, 86400)),
    "INACTIVE": _Spec(_number(0, 86400)),
    "REPLYMODE": _Spec(_keyword("ZOS", "RFC")),
    "LOGINDELAY": _Spec(_number(0, 60, float)),
    "LOGINLIMIT": _Spec(_number(0, 1000000)),
    "LOGINWINDOW": _Spec(_number(1, 86400)),
    "LOGINTIMEOUT": _Spec(_number(0, 86400)),
    "MAXSESSIONS": _Spec(_number(0, 1000000)),
    "MAXSESSIONSPERADDRESS": _Spec(_number(0, 1000000)),
    "CERTUSERMAP": _Spec(_certmap, repeat=True),
    "IMPLICITPROT": _Spec(_keyword("C", "P")),
}
_CLIENT: dict[str, _Spec] = {
    **_COMMON,
    "SECURE_MECHANISM": _Spec(_keyword("TLS", "GSSAPI", "NONE")),
    "SECURE_HOSTNAME": _Spec(_keyword("REQUIRED", "OPTIONAL")),
    "EPSV4": _Spec(_bool),
    "FWFRIENDLY": _Spec(_bool),
    "PASSIVEIGNOREADDR": _Spec(_bool),
    "MYOPENTIME": _Spec(_number(0, 86400, float)),
    "INACTTIME": _Spec(_number(0, 86400, float)),
    "CCCNOOP": _Spec(_bool),
    "DATACONNTIME": _Spec(_number(0.1, 3600, float)),
}


class _Statements:
    """Shared behaviour of ServerConfig and ClientConfig: validation, dict and file loading."""

    _SPEC: dict[str, _Spec] = {}
    SIDE = ""

    def __post_init__(self) -> None:
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                object.__setattr__(self, f.name, _normalise(self._SPEC[f.name], f.name, value))
            except ValueError as exc:
                problems.append(Problem("<settings>", 0, f.name, str(exc)))
        if not problems and getattr(self, "TLSMECHANISM", "FTP") == "ATTLS" and not getattr(self, "ATTLSPOLICY", None):
            problems.append(Problem("<settings>", 0, "TLSMECHANISM",
                                    "ATTLS takes TLS from an AT-TLS policy: give ATTLSPOLICY <file> too"))
        if problems:
            raise InputError(problems)

    @classmethod
    def statements(cls) -> list[str]:
        return sorted(cls._SPEC)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<settings>") -> Self:
        """Build from {statement: value}; keys are case-insensitive, values str or Python."""
        kwargs, problems = {}, []
        for key, value in values.items():
            name = str(key).strip().upper()
            if name not in cls._SPEC:
                problems.append(Problem(source, 0, str(key), _unknown(name, cls)))
                continue
            try:
                kwargs[name] = _normalise(cls._SPEC[name], name, value)
            except ValueError as exc:
                problems.append(Problem(source, 0, name, str(exc)))
        if problems:
            raise InputError(problems)
        return cls(**kwargs)

    def updated(self, **statements: Any) -> Self:
        """A validated copy with the given statements (names case-insensitive) replaced."""
        merged = dataclasses.asdict(self)
        merged.update({k.upper(): v for k, v in statements.items()})
        bad = [k for k in merged if k not in self._SPEC]
        if bad:
            raise InputError([Problem("<settings>", 0, k, _unknown(k, type(self))) for k in bad])
        return type(self).from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (sets become sorted lists, tuples lists)."""
        out = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


def _normalise(spec: _Spec, name: str, value: Any) -> Any:
    if spec.parse is _certmap:
        return _certmap(value) if value else {}
    if spec.repeat:
        if isinstance(value, str) or (value is not None and not isinstance(value, Iterable)):
            value = [value]
        items = tuple(spec.parse(v) for v in (value or ()))
        return frozenset(items) if name == "EXTENSIONS" else items
    if value is None and spec.optional:
        return None
    return spec.parse(value)


def _unknown(name: str, cls: type) -> str:
    other_side, other = ("client", _CLIENT) if cls.SIDE == "server" else ("server", _SERVER)
    if name in other:
        return f"{name} is a {other_side} statement, not valid for the {cls.SIDE}"
    close = difflib.get_close_matches(name, cls._SPEC, n=1)
    return f"unknown statement {name}" + (f" (did you mean {close[0]}?)" if close else "")


@dataclass(frozen=True)
class _CommonStatements(_Statements):
    """The statements of both sides (table _COMMON), with their defaults."""

    SECURE_FTP: str = "ALLOWED"
    SECURE_CTRLCONN: str = "CLEAR"
    SECURE_DATACONN: str = "CLEAR"
    SECURE_SESSION_REUSE: str = "ALLOWED"
    TLSRFCLEVEL: str = "RFC4217"
    TLSPORT: int = 990
    SECUREIMPLICITZOS: bool = True
    TLSTIMEOUT: int = 100
    TLSMECHANISM: str = "FTP"
    ATTLSPOLICY: str | None = None
    CIPHERSUITE: tuple = ()
    KEYRING: str | None = None
    TLSMAXVERSION: str = "TLSV1.3"
    SECURE_PBSZ: int = 16384
    FTPKEEPALIVE: int = 0               # z/OS default UNCONFIRMED; 0 = off (lab/ftps/keepalive.py)


@dataclass(frozen=True)
class ServerConfig(_CommonStatements):
    """The z/OS FTP server statements the lab implements (defaults: z/OS, except as noted above)."""

    EXTENSIONS: frozenset = frozenset(_EXTENSIONS)
    SECURE_LOGIN: str = "NO_CLIENT_AUTH"
    SECURE_PASSWORD: str = "REQUIRED"
    TLSMAXVERSION: str = "TLSV1.2"     # see "Lab statements" above: TLS 1.3 tickets vs uploads
    PASSIVEDATAPORTS: tuple[int, int] | None = None
    PASSIVEDATACONN: str = "UNRESTRICTED"
    PORTCOMMAND: str = "ACCEPT"
    PORTCOMMANDIPADDR: str = "UNRESTRICTED"
    PORTCOMMANDPORT: str = "UNRESTRICTED"
    DATATIMEOUT: int = 300
    INACTIVE: int = 300
    REPLYMODE: str = "ZOS"
    LOGINDELAY: float = 1.0
    LOGINLIMIT: int = 10
    LOGINWINDOW: int = 300
    LOGINTIMEOUT: int = 60
    MAXSESSIONS: int = 100
    MAXSESSIONSPERADDRESS: int = 10
    CERTUSERMAP: dict = field(default_factory=dict)
    IMPLICITPROT: str = "P"

    _SPEC = _SERVER
    SIDE = "server"


@dataclass(frozen=True)
class ClientConfig(_CommonStatements):
    """The z/OS FTP client statements the lab implements."""

    SECURE_MECHANISM: str = "NONE"
    SECURE_HOSTNAME: str = "OPTIONAL"
    EPSV4: bool = False
    FWFRIENDLY: bool = False
    PASSIVEIGNOREADDR: bool = False
    MYOPENTIME: float = 30.0
    INACTTIME: float = 120.0
    CCCNOOP: bool = False
    DATACONNTIME: float = 2.0

    _SPEC = _CLIENT
    SIDE = "client"


# -- FTP.DATA files ---------------------------------------------------------------------------

_BLANKS = re.compile(r"[ \t]+")     # between a statement and its value

def parse_ftpdata_text(text: str, side: str = "server", source: str = "<text>") -> ServerConfig | ClientConfig:
    """Statements in FTP.DATA syntax -> ServerConfig or ClientConfig (side = "server"/"client")."""
    cls = {"server": ServerConfig, "client": ClientConfig}.get(side)
    if cls is None:
        raise InputError(f"side must be server or client, not {side!r}")
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        name, _, value = _BLANKS.sub(" ", line, count=1).partition(" ")
        name, value = name.upper(), value.strip()
        spec = cls._SPEC.get(name)
        if spec is None:
            problems.append(Problem(source, lineno, name, _unknown(name, cls)))
            continue
        if not value:
            problems.append(Problem(source, lineno, name, "missing value"))
            continue
        try:
            if spec.parse is _certmap:
                values.setdefault(name, {}).update(_certmap(value))
            elif spec.repeat:
                values.setdefault(name, []).append(spec.parse(value))
            else:
                if name in seen:
                    problems.append(Problem(source, lineno, name, f"given twice (also on line {seen[name]})"))
                seen[name] = lineno
                values[name] = spec.parse(value)
        except ValueError as exc:
            problems.append(Problem(source, lineno, name, str(exc)))
    if problems:
        raise InputError(problems)
    try:
        return cls(**values)
    except InputError as exc:       # cross-value problems found at construction: at the statement's line
        raise InputError([dataclasses.replace(p, file=source, line=seen.get(p.field, 0))
                          for p in exc.problems]) from None


def parse_ftpdata(path: str | Path, side: str = "server") -> ServerConfig | ClientConfig:
    """Read an FTP.DATA-style file -> ServerConfig or ClientConfig. Errors name file:line.
    A relative ATTLSPOLICY is taken relative to the file's folder."""
    text = read_input(path, "FTP.DATA file")
    cfg = parse_ftpdata_text(text, side, str(path))
    if cfg.ATTLSPOLICY and not Path(cfg.ATTLSPOLICY).is_absolute():
        cfg = dataclasses.replace(cfg, ATTLSPOLICY=str(Path(path).parent / cfg.ATTLSPOLICY))
    return cfg


def check_files(cfg: ServerConfig | ClientConfig, path: str | Path | None = None, cert=None, key=None,
                ca=None) -> None:
    """Every file the configuration names, read when it is loaded, not at the first session: the
    KEYRING (a PEM bundle, a folder of PEM files, or *AUTH*/* = the --ca file) and, with
    TLSMECHANISM ATTLS, the AT-TLS policy and every file its rules name (lab.ftps.attls.check_files).
    All problems at once as `file:line: statement: problem` (InputError); `path` is the FTP.DATA
    file the configuration was read from (its lines are named), cert/key/ca the command line's."""
    from lab.ftps import attls, pki, tls

    lines = _statement_lines(read_input(path, "FTP.DATA file")) if path is not None else {}
    source = str(path) if path is not None else "<settings>"
    problems: list[Problem] = []
    if cfg.TLSMECHANISM == "ATTLS":
        if not cfg.ATTLSPOLICY:
            problems.append(Problem(source, lines.get("TLSMECHANISM", 0), "TLSMECHANISM",
                                    "TLSMECHANISM ATTLS needs ATTLSPOLICY (the AT-TLS policy file)"))
        else:
            try:
                attls.check_files(attls.load_policy(cfg.ATTLSPOLICY), cert, key, ca)
            except InputError as exc:
                problems += [p if p.line else Problem(source, lines.get("ATTLSPOLICY", 0), "ATTLSPOLICY",
                                                      f"{p.file}: {p.message}") for p in exc.problems]
    elif cfg.KEYRING:
        try:
            files = tls.keyring_files(cfg.KEYRING, ca)
        except OSError as exc:
            files = []
            problems.append(Problem(source, lines.get("KEYRING", 0), "KEYRING", f"{cfg.KEYRING}: {exc.strerror}"))
        if not files and not problems and Path(cfg.KEYRING).is_dir():
            problems.append(Problem(source, lines.get("KEYRING", 0), "KEYRING",
                                    f"{cfg.KEYRING}: a folder without a .pem or .crt file"))
        for f in files:
            try:
                pki.load_certificates(f, "KEYRING")
            except InputError as exc:
                what = "--ca" if ca is not None and Path(f) == Path(ca) else "KEYRING"
                hint = " (a z/OS key ring name? the lab reads a PEM file or a folder of PEM files)" \
                    if what == "KEYRING" and not Path(cfg.KEYRING).exists() and "/" in cfg.KEYRING else ""
                problems += [Problem(source if what == "KEYRING" else "<command line>",
                                     lines.get("KEYRING", 0) if what == "KEYRING" else 0, what,
                                     f"{p.file}: {p.message}{hint}") for p in exc.problems]
    if problems:
        raise InputError(problems)


def _statement_lines(text: str) -> dict[str, int]:
    """Statement name -> the line it is first given on (FTP.DATA syntax, as parse_ftpdata_text reads it)."""
    found: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if line:
            found.setdefault(_BLANKS.sub(" ", line, count=1).partition(" ")[0].upper(), lineno)
    return found
