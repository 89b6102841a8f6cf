"""Property tests (hypothesis) for the parsers users feed by hand: topology files (lab.topology.loader),
scenario files (lab.matrix.scenario) and FTP.DATA statements (lab.ftps.config).

Whatever the input - random text, a shipped picture with a key dropped, a value of the wrong
type, random bytes pasted in, a cut-off file, statement lines with NULs, non-UTF-8 bytes or
100 kB values - the parsers either load it or raise lab.errors.InputError whose every problem
names the file and, for text with lines, a line that exists. Nothing else escapes, nothing
hangs (each example has a deadline; the file is bounded by its example counts). Valid input
still loads after round trips (YAML re-dumps, JSON, CRLF, comments; to_dict/from_dict and back
to FTP.DATA text) and means the same thing.

A crash found here that is not fixed yet is listed in KNOWN_DEFECTS: the properties skip
inputs that hit it (so they keep guarding everything else), and the minimal example is a
strict xfail test below, which turns into a failure the day the defect is fixed.
"""

from __future__ import annotations

import dataclasses
import json
import string
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lab import SCENARIO_DIR, TOPOLOGY_DIR
from lab.errors import InputError
from lab.ftps.config import ClientConfig, ServerConfig, parse_ftpdata, parse_ftpdata_text
from lab.matrix import scenario
from lab.topology import loader as topo

pytestmark = pytest.mark.timeout(120)

SHIPPED = sorted(p.stem for p in TOPOLOGY_DIR.glob("*.yaml"))
TEXTS = {name: (TOPOLOGY_DIR / f"{name}.yaml").read_text() for name in SHIPPED}
TREES = {name: yaml.safe_load(text) for name, text in TEXTS.items()}


def tree_of(name: str) -> Any:
    """A deep copy of a shipped picture's YAML tree (`alg: off` in it reads as false: YAML 1.1)."""
    return json.loads(json.dumps(TREES[name]))


# The deadline per example catches the slow path a hang would be (generous: a loaded CI machine is
# slow, not wrong); the example counts keep the whole file well under 20 s on the lab's 2 cores.
# FTLAB_FUZZ=random (tests/conftest.py) draws new examples, ten times as many.
_SCALE = 10 if settings.default.max_examples >= 1000 else 1
FUZZ = settings(max_examples=150 * _SCALE, deadline=10_000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=40 * _SCALE)


# -- the properties ------------------------------------------------------------------------------

def line_count(text: str) -> int:
    """Lines of the text as any of the parsers may count them (every line-break character Python
    knows, and the empty line after a final newline, where 'unexpected end of file' points)."""
    return len((text + "x").splitlines())


def check_problems(exc: InputError, file: str, text: str | None) -> None:
    assert exc.problems, "an InputError must list at least one problem"
    for p in exc.problems:
        assert p.file == file, f"problem names {p.file!r}, not the file {file!r}: {p}"
        assert p.message, f"problem without a message: {p!r}"
        if text is not None and text.strip():
            assert 1 <= p.line <= line_count(text), \
                f"line {p.line} is not a line of the {line_count(text)}-line text: {p}"


# Crashes found by these properties and not fixed yet: what it is -> how to recognise it.
# Each has a strict-xfail regression test at the end of this file with its minimal example.
def raised_in(exc: BaseException, module_file: str) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(module_file)


KNOWN_DEFECTS: dict[str, Any] = {}


def known_defect(exc: BaseException) -> bool:
    return any(matches(exc) for matches in KNOWN_DEFECTS.values())


def loads_cleanly(text: str, file: str = "fuzz.yaml") -> topo.Topology | None:
    """topo.loads, with the properties checked; None when the input was refused (cleanly)."""
    try:
        return topo.loads(text, file)
    except InputError as exc:
        check_problems(exc, file, text)
        return None
    except Exception as exc:    # noqa: BLE001 - anything else is the defect under test
        if known_defect(exc):
            reject()
        raise


def statements_cleanly(text: str, side: str, source: str = "FTP.DATA"):
    try:
        return parse_ftpdata_text(text, side, source)
    except InputError as exc:
        check_problems(exc, source, text)
        return None
    except Exception as exc:    # noqa: BLE001
        if known_defect(exc):
            reject()
        raise


def from_dict_cleanly(cls: type, values: dict):
    try:
        return cls.from_dict(values, "settings.yaml")
    except InputError as exc:
        check_problems(exc, "settings.yaml", None)
        return None
    except Exception as exc:    # noqa: BLE001
        if known_defect(exc):
            reject()
        raise


# -- strategies ------------------------------------------------------------------------------------

# Text as a file may really hold it: any code point (lone surrogates included, as
# surrogateescape produces them), control characters, NULs, every kind of line break.
NASTY = ["\x00", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff", "\ud800", "\t",
         "\x1b[2J", "%", "&a", "*a", "!!int", "!!float", "!!timestamp", "!!binary", "!!set", "!!python/object",
         "<<:", "? ", "- ", ": ", "{", "}", "[", "]", "'", '"', "#", "|", ">", "---", "...", "~", "null"]
any_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec=None), max_size=200),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.lists(st.sampled_from(NASTY) | st.text(string.ascii_letters + string.digits + " :-/.,()", max_size=8),
             max_size=40).map("".join),
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["off", "on", "no", "yes", "default", "0.0.0.0/0", "10.1.1.10", "10.1.1.10/33",
                     "60000-60100", "60100-60000", "1024:65535", "0", "65536", "(60000,60100)",
                     "tcp", "udp", "icmp", "any", "host", "router", "static", "dynamic", "accept", "drop",
                     "client", "server", "internet", "nat-c", "fw", "1.2.3.4/24", "x" * 5000]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=4), max_leaves=12)


def paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a YAML tree (lists by index)."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += paths(v, prefix + (i,))
    return found


def parent_of(tree: Any, path: tuple) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def mutate(draw, tree: Any, key_names: list[str]) -> str:
    """One to three structural mutations of a YAML tree (drop, retype, duplicate, rename), dumped."""
    for _ in range(draw(st.integers(1, 3))):
        where = paths(tree)
        if not where:
            break
        path = draw(st.sampled_from(where))
        parent = parent_of(tree, path)
        action = draw(st.sampled_from(["drop", "retype", "duplicate", "rename"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "retype":
            parent[path[-1]] = draw(values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[path[-1]])))
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12) | st.sampled_from(key_names))] = parent.pop(path[-1])
    flow = draw(st.sampled_from([None, False, True]))
    return yaml.safe_dump(tree, default_flow_style=flow, sort_keys=draw(st.booleans()), allow_unicode=True)


@st.composite
def mutated_topologies(draw) -> str:
    """A shipped picture with one or more structural mutations, dumped back to YAML text."""
    return mutate(draw, tree_of(draw(st.sampled_from(SHIPPED))),
                  sorted(topo.TOP_KEYS | topo.NODE_KEYS | topo.RULE_KEYS | topo.FTP_KEYS))


@st.composite
def damaged_texts(draw) -> str:
    """A shipped picture's text with random bytes pasted in, a cut, or its lines shuffled."""
    text = TEXTS[draw(st.sampled_from(SHIPPED))]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["insert", "truncate", "delete-line", "repeat-line", "swap-lines",
                                       "indent"]))
        lines = text.split("\n")
        if action == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(any_text) + text[at:]
        elif action == "truncate":
            text = text[:draw(st.integers(0, len(text)))]
        elif len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if action == "delete-line":
                del lines[i]
            elif action == "repeat-line":
                lines.insert(j, lines[i])
            elif action == "swap-lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
            text = "\n".join(lines)
    return text


# -- topology files ------------------------------------------------------------------------------

@FUZZ
@given(any_text)
def test_random_text_is_loaded_or_refused_cleanly(text):
    loads_cleanly(text)


@FUZZ
@given(mutated_topologies())
def test_mutated_shipped_topology_is_loaded_or_refused_cleanly(text):
    loads_cleanly(text)


@FUZZ
@given(damaged_texts())
def test_damaged_shipped_topology_text_is_loaded_or_refused_cleanly(text):
    loads_cleanly(text)


@FEW
@given(st.sampled_from(SHIPPED), st.sampled_from(sorted(topo.TOP_REQUIRED)))
def test_a_missing_required_key_is_named_at_a_line(name, key):
    tree = dict(TREES[name])
    del tree[key]
    text = yaml.safe_dump(tree, sort_keys=False)
    with pytest.raises(InputError) as info:
        topo.loads(text, "picture.yaml")
    check_problems(info.value, "picture.yaml", text)
    assert any(repr(key) in p.message for p in info.value.problems), info.value


@settings(FEW, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.binary(max_size=400) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_a_file_of_random_bytes_is_loaded_or_refused_cleanly(tmp_path_factory, data):
    """topo.load reads a user's file from disk: the bytes need not be UTF-8."""
    path = tmp_path_factory.mktemp("topo") / "user.yaml"
    path.write_bytes(data)
    try:
        topo.load(path)
    except InputError as exc:
        check_problems(exc, str(path), data.decode("utf-8", "replace"))
    except Exception as exc:    # noqa: BLE001
        if known_defect(exc):
            reject()
        raise


def shape(t: topo.Topology) -> Any:
    """What a topology means, without where it was written (lines, source file)."""
    def strip(value):
        if isinstance(value, dict) and {"a", "b", "a_interface", "b_interface"} <= set(value):
            # a link: which end is written first does not matter
            return sorted([(value["a"], value["a_interface"]), (value["b"], value["b_interface"])])
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("line", "source")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return strip(dataclasses.asdict(t))


def crlf_with_comments(text: str) -> str:
    return "# re-saved on Windows\r\n" + "\r\n".join(line + ("  # note" if line.strip() and
                                                             not line.rstrip().endswith(("|", ">")) and
                                                             "#" not in line else "")
                                                   for line in text.split("\n"))


ROUND_TRIPS = {
    "as shipped": lambda name: TEXTS[name],
    "block re-dump": lambda name: yaml.safe_dump(TREES[name], default_flow_style=False, sort_keys=False),
    "flow re-dump": lambda name: yaml.safe_dump(TREES[name], default_flow_style=True),
    "sorted keys": lambda name: yaml.safe_dump(TREES[name], sort_keys=True),
    "json": lambda name: json.dumps(TREES[name], indent=1),
    "crlf and comments": lambda name: crlf_with_comments(TEXTS[name]),
}
@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_topology_survives_round_trips(name, how):
    original = topo.loads(TEXTS[name], f"{name}.yaml")
    again = topo.loads(ROUND_TRIPS[how](name), f"{name}.yaml")
    assert shape(again) == shape(original)


# -- scenario files --------------------------------------------------------------------------------

SCENARIO_TEXT = (SCENARIO_DIR / "default.yaml").read_text()
SCENARIO_TREE = yaml.safe_load(SCENARIO_TEXT)
SCENARIO_KEYS = sorted(scenario.TOP_KEYS | {"reasoning", "alg", "filter", "permits", "security", "data",
                                            "variant", "client_statements", "broken", "active_source_port"})


def scenario_loads_cleanly(text: str, tmp: Any) -> scenario.Scenarios | None:
    path = tmp.mktemp("scen") / "s.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return scenario.load(path)
    except InputError as exc:
        check_problems(exc, str(path), text)
        return None


@st.composite
def mutated_scenarios(draw) -> str:
    """scenarios/default.yaml with one or more structural mutations, dumped back to YAML text."""
    return mutate(draw, json.loads(json.dumps(SCENARIO_TREE)), SCENARIO_KEYS)


@FUZZ
@given(mutated_scenarios())
def test_mutated_scenario_file_is_loaded_or_refused_cleanly(tmp_path_factory, text):
    scenario_loads_cleanly(text, tmp_path_factory)


@FEW
@given(any_text)
def test_random_text_as_a_scenario_file_is_refused_cleanly(tmp_path_factory, text):
    scenario_loads_cleanly(text, tmp_path_factory)


# -- FTP.DATA statements --------------------------------------------------------------------------

# Valid values per statement (what a z/OS FTP.DATA holds; the lab's own statements too).
VALID: dict[str, list[str]] = {
    "SECURE_FTP": ["ALLOWED", "REQUIRED", "required"],
    "SECURE_CTRLCONN": ["CLEAR", "SAFE", "PRIVATE"],
    "SECURE_DATACONN": ["NEVER", "CLEAR", "SAFE", "PRIVATE"],
    "SECURE_SESSION_REUSE": ["ALLOWED", "REQUIRED", "NONE"],
    "TLSRFCLEVEL": ["DRAFT", "RFC4217", "CCCNONOTIFY"],
    "TLSPORT": ["990", "0", "65535"],
    "SECUREIMPLICITZOS": ["TRUE", "FALSE"],
    "TLSTIMEOUT": ["100", "0", "86400"],
    "TLSMECHANISM": ["FTP"],                 # ATTLS needs ATTLSPOLICY too: tests/unit/test_ftps_attls.py
    "ATTLSPOLICY": ["/etc/pagent/ftp.policy", "ftp.policy"],
    "CIPHERSUITE": ["SSL_AES_128_SHA", "SSL_AES_256_SHA", "TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"],
    "KEYRING": ["FTPRING", "/etc/ftp/keyring.kdb"],
    "TLSMAXVERSION": ["TLSV1.2", "TLSV1.3"],
    "FTPKEEPALIVE": ["0", "60", "86400"],
    "EXTENSIONS": ["AUTH_TLS", "SIZE", "MDTM", "UTF8", "REST_STREAM"],
    "SECURE_LOGIN": ["NO_CLIENT_AUTH", "REQUIRED", "VERIFY_USER"],
    "SECURE_PASSWORD": ["REQUIRED", "OPTIONAL"],
    "PASSIVEDATAPORTS": ["(60000,60100)", "(1024,65535)", "(60000 60000)"],
    "PASSIVEDATACONN": ["UNRESTRICTED", "NOREDIRECT"],
    "PORTCOMMAND": ["ACCEPT", "REJECT"],
    "PORTCOMMANDIPADDR": ["UNRESTRICTED", "NOREDIRECT"],
    "PORTCOMMANDPORT": ["UNRESTRICTED", "NOLOWPORTS"],
    "DATATIMEOUT": ["300", "0"],
    "INACTIVE": ["300", "86400"],
    "REPLYMODE": ["ZOS", "RFC"],
    "LOGINDELAY": ["1", "0.25", "60"],
    "LOGINLIMIT": ["10", "0", "1000000"],
    "LOGINWINDOW": ["300", "1", "86400"],
    "LOGINTIMEOUT": ["60", "0", "86400"],
    "MAXSESSIONS": ["100", "0", "1000000"],
    "MAXSESSIONSPERADDRESS": ["10", "0", "1000000"],
    "CERTUSERMAP": ["alice lab", "bob user2",
                    "AB:" * 31 + "AB lab"],
    "IMPLICITPROT": ["C", "P"],
    "SECURE_MECHANISM": ["TLS", "GSSAPI", "NONE"],
    "SECURE_PBSZ": ["16384", "512", "1048576"],
    "SECURE_HOSTNAME": ["REQUIRED", "OPTIONAL"],
    "EPSV4": ["TRUE", "FALSE"],
    "FWFRIENDLY": ["TRUE", "FALSE"],
    "PASSIVEIGNOREADDR": ["TRUE", "FALSE"],
    "MYOPENTIME": ["30", "0.5"],
    "INACTTIME": ["120", "1"],
    "CCCNOOP": ["TRUE", "FALSE"],
    "DATACONNTIME": ["2", "0.1", "3600"],
}
REPEATED = {"EXTENSIONS", "CIPHERSUITE", "CERTUSERMAP"}
SIDES = {"server": ServerConfig, "client": ClientConfig}
ALL_NAMES = sorted(set(ServerConfig.statements()) | set(ClientConfig.statements()) | set(VALID))


def test_valid_table_covers_every_statement():
    """So a new statement is fuzzed with good values too, not only with junk."""
    assert set(ServerConfig.statements()) | set(ClientConfig.statements()) <= set(VALID)


statement_values = st.one_of(
    st.sampled_from(sorted({v for vs in VALID.values() for v in vs})),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None), max_size=40),
    st.sampled_from(["", " ", "\x00", "(60000,\x0060100)", "(0,0)", "(65535,1024)", "(60000,60100",
                     "nan", "inf", "-inf", "1e309", "9" * 400, "1_000", "٣", "TRUE FALSE", "a b c",
                     "AUTH_GSSAPI", "SSL_RC4_SHA", "ALL:!aNULL", "x" * 100_000, "; comment only"]),
)


@st.composite
def statement_lines(draw) -> str:
    """One FTP.DATA line: a real statement (any case, any spacing) with a random value, or junk."""
    kind = draw(st.sampled_from(["statement", "statement", "statement", "junk", "comment", "blank"]))
    if kind == "junk":
        return draw(any_text).replace("\n", " ")
    if kind == "comment":
        return "; " + draw(st.text(max_size=40)).replace("\n", " ")
    if kind == "blank":
        return draw(st.sampled_from(["", "   ", "\t"]))
    name = draw(st.sampled_from(ALL_NAMES))
    name = draw(st.sampled_from([name, name.lower(), name.title()]))
    gap = draw(st.sampled_from([" ", "  ", "\t", " \t ", ""]))
    tail = draw(st.sampled_from(["", "  ; why", "\t;x"]))
    return draw(st.sampled_from(["", " "])) + name + gap + draw(statement_values).replace("\n", " ") + tail


ftpdata_texts = st.lists(statement_lines(), max_size=25).map("\n".join)


@FUZZ
@given(ftpdata_texts, st.sampled_from(sorted(SIDES)))
def test_random_statement_lines_are_parsed_or_refused_cleanly(text, side):
    cfg = statements_cleanly(text, side)
    if cfg is not None:
        assert isinstance(cfg, SIDES[side])


@FEW
@given(st.lists(statement_lines(), max_size=15).map("\n".join), st.sampled_from(sorted(SIDES)),
       st.sampled_from(["utf-8", "latin-1", "utf-16", "cp037"]), st.binary(max_size=60))
def test_statement_file_in_any_encoding_is_parsed_or_refused_cleanly(tmp_path_factory, text, side,
                                                                      encoding, junk):
    """parse_ftpdata reads bytes from disk: UTF-16, EBCDIC (cp037: a file copied off z/OS in
    binary) and random bytes must end as clean problems naming the file and a line."""
    path = tmp_path_factory.mktemp("ftpdata") / "FTP.DATA"
    data = text.encode(encoding, "surrogatepass" if encoding == "utf-8" else "replace") + junk
    path.write_bytes(data)
    try:
        parse_ftpdata(path, side=side)
    except InputError as exc:
        check_problems(exc, str(path), data.decode("utf-8", "replace"))
    except Exception as exc:    # noqa: BLE001
        if known_defect(exc):
            reject()
        raise


@FUZZ
@given(st.dictionaries(st.sampled_from(ALL_NAMES) | st.text(max_size=12) | st.integers(), values,
                       max_size=6),
       st.sampled_from(sorted(SIDES)))
def test_from_dict_with_values_of_any_type_is_built_or_refused_cleanly(values_, side):
    """from_dict is what a topology's server_statements/client_statements and the API feed."""
    cfg = from_dict_cleanly(SIDES[side], values_)
    if cfg is not None:
        assert isinstance(cfg, SIDES[side])


@st.composite
def valid_statement_sets(draw) -> tuple[str, dict[str, list[str]]]:
    side = draw(st.sampled_from(sorted(SIDES)))
    names = draw(st.lists(st.sampled_from(SIDES[side].statements()), unique=True, max_size=12))
    chosen = {}
    for name in names:
        pool = VALID[name]
        if name in REPEATED:
            chosen[name] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        else:
            chosen[name] = [draw(st.sampled_from(pool))]
    return side, chosen


def as_value(name: str, values_: list[str]) -> Any:
    """How a dict gives a statement: text, a list for the repeated ones, {cert: user} for CERTUSERMAP
    (from_dict takes no list of "cert user" lines: see the report of issue 6)."""
    if name == "CERTUSERMAP":
        return dict(v.split() for v in values_)
    return values_ if name in REPEATED else values_[0]


def as_ftpdata(statements: dict[str, list[str]]) -> str:
    return "".join(f"{name} {value}\n" for name, vs in statements.items() for value in vs)


def dict_to_ftpdata(values_: dict[str, Any]) -> str:
    """to_dict() output written back as FTP.DATA lines (the reverse of parse_ftpdata_text)."""
    lines = []
    for name, value in values_.items():
        if value is None:
            continue
        if name == "CERTUSERMAP":
            lines += [f"{name} {k} {v}" for k, v in value.items()]
        elif name == "PASSIVEDATAPORTS":
            lines.append(f"{name} ({value[0]},{value[1]})")
        elif isinstance(value, list):
            lines += [f"{name} {v}" for v in value]
        elif isinstance(value, bool):
            lines.append(f"{name} {'TRUE' if value else 'FALSE'}")
        else:
            lines.append(f"{name} {value}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(valid_statement_sets())
def test_valid_statements_load_and_round_trip(case):
    side, statements = case
    cls = SIDES[side]
    cfg = parse_ftpdata_text(as_ftpdata(statements), side, "FTP.DATA")
    # The same statements as a topology gives them ({name: text}, the repeated ones one a line).
    assert cls.from_dict({n: as_value(n, vs) for n, vs in statements.items()}) == cfg
    # to_dict -> from_dict, and to_dict -> FTP.DATA text -> parse: the same settings.
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert parse_ftpdata_text(dict_to_ftpdata(cfg.to_dict()), side, "again") == cfg


@FEW
@given(valid_statement_sets(), st.sampled_from(SHIPPED))
def test_valid_statements_load_inside_a_shipped_topology(case, name):
    side, statements = case
    tree = tree_of(name)
    key = f"{side}_statements"
    # Each repeated statement once: a YAML mapping holds a name only once. A topology resolves
    # KEYRING to a file beside it or the lab's CA (tests/unit/test_check_time.py): the lab's CA here.
    tree["ftp"][key] = {n: "*AUTH*/*" if n == "KEYRING" else vs[0] for n, vs in statements.items()}
    t = topo.loads(yaml.safe_dump(tree, sort_keys=False), f"{name}.yaml")
    assert SIDES[side].from_dict(getattr(t.ftp, key)) == SIDES[side].from_dict(tree["ftp"][key])


# -- defects found by the properties above: minimal examples ---------------------------------------
# A crash found and not fixed yet gets a KNOWN_DEFECTS entry and its example here, marked
# pytest.mark.xfail(strict=True, raises=<the crash>, reason=...) until it is fixed.


@pytest.mark.parametrize("text", [
    pytest.param("name: a\x00b\n", id="NUL"),
    pytest.param("\x1f", id="unit-separator"),
    pytest.param("name: \ud800\n", id="lone-surrogate"),
    pytest.param("!!int", id="empty-int"),
    pytest.param("name: !!float x\n", id="bad-float"),
    pytest.param("name: !!timestamp 2020-13-45\n", id="bad-date"),
    pytest.param("!!timestamp", id="empty-timestamp"),
    pytest.param("[" * 500, id="nesting-500"),
])
def test_topology_text_defect(text):
    with pytest.raises(InputError) as info:
        topo.loads(text, "user.yaml")
    check_problems(info.value, "user.yaml", text)


@pytest.mark.parametrize("role", ["client", "server"])
def test_ftp_end_without_a_value(role):
    text = TEXTS["client-nat"].replace(f"  {role}: {role}\n", f"  {role}:\n", 1)
    assert text != TEXTS["client-nat"]
    with pytest.raises(InputError) as info:
        topo.loads(text, "client-nat.yaml")
    check_problems(info.value, "client-nat.yaml", text)
    assert any(p.field == f"ftp.{role}" for p in info.value.problems), info.value


def test_topology_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        topo.load(path)
    check_problems(info.value, str(path), "name: caf?\n")


@pytest.mark.parametrize("cls, values_", [
    pytest.param(ClientConfig, {"CIPHERSUITE": True}, id="CIPHERSUITE-True"),
    pytest.param(ServerConfig, {"EXTENSIONS": 5}, id="EXTENSIONS-5"),
    pytest.param(ServerConfig, {"LOGINDELAY": 10**400}, id="LOGINDELAY-huge"),
])
def test_statement_dict_defect(cls, values_):
    with pytest.raises(InputError) as info:
        cls.from_dict(values_, "settings.yaml")
    check_problems(info.value, "settings.yaml", None)


def test_alg_false_means_off():
    """Found by the round trips: `alg: off` is YAML 1.1 for false, so re-dumping a shipped
    picture writes `alg: false`; topo should read that as off, as it reads the raw `off`."""
    text = TEXTS["static-filter-nat"].replace("alg: off", "alg: false")
    assert text != TEXTS["static-filter-nat"]
    t = topo.loads(text, "static-filter-nat.yaml")
    assert t.nodes["fw"].nat.alg == "off"
