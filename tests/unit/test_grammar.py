"""The FTP wire grammar: examples from the RFCs, round trips, and hostile input.

Property tests (hypothesis): whatever bytes arrive, split however TCP likes, the parsers either
answer or raise GrammarError - never anything else, never a hang.
"""

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.ftps.grammar import (
    GrammarError,
    HostPort,
    LineReader,
    Reply,
    ReplyReader,
    command_announcement,
    format_227,
    format_229,
    format_command,
    format_eprt_args,
    format_port_args,
    format_reply,
    is_tls_record,
    loggable,
    parse_227,
    parse_229,
    parse_command,
    parse_decimal,
    parse_eprt_args,
    parse_port_args,
    reply_announcement,
)

pytestmark = pytest.mark.timeout(120)

ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
ports = st.integers(1, 65535)
text_line = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n\x85\u2028\u2029"),
                    max_size=40).filter(lambda s: not s.startswith(" ") and s == s.rstrip("\x0b\x0c\x1c\x1d\x1e"))


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


# -- examples ----------------------------------------------------------------------------------

def test_commands():
    assert parse_command(b"retr file name.txt\r\n") == parse_command("RETR file name.txt")
    assert parse_command("NOOP").arg == ""
    assert parse_command(b"\xff\xf4\xff\xf2ABOR\r\n").verb == "ABOR"        # Telnet IP/Synch
    assert format_command("PASS", "secret") == b"PASS secret\r\n"
    for bad in (b"", b"\r\n", b"12 x", b"TOOLONG x", b"\x16\x03\x01"):
        with pytest.raises(GrammarError):
            parse_command(bad)


def test_multiline_reply_rfc959():
    reader = ReplyReader()
    replies = reader.feed(b"211-Extensions supported\r\n AUTH TLS\r\n211-STAT style\r\n211 End\r\n")
    assert replies == [Reply(211, ("Extensions supported", "AUTH TLS", "211-STAT style", "End"))]
    assert format_reply(425, ["first", "123 looks like an end", "last"]) == \
        b"425-first\r\n 123 looks like an end\r\n425 last\r\n"
    with pytest.raises(GrammarError):
        ReplyReader().feed(b"hello\r\n")


def test_addresses_rfc_examples():
    assert parse_port_args("132,235,1,2,24,131") == HostPort("132.235.1.2", 6275)
    assert parse_eprt_args("|1|132.235.1.2|6275|") == HostPort("132.235.1.2", 6275)
    assert parse_eprt_args("|2|1080::8:800:200C:417A|5282|") == HostPort("1080::8:800:200c:417a", 5282)
    assert parse_227("Entering Passive Mode 192,168,1,10,195,80") == HostPort("192.168.1.10", 50000)
    assert parse_229("Entering Extended Passive Mode (!!!6446!)") == 6446
    for bad in ("1,2,3,4,5", "256,1,1,1,1,1", "1,2,3,4,0,0"):
        with pytest.raises(GrammarError):
            parse_port_args(bad)
    for bad in ("|3|1.2.3.4|5|", "|1|1.2.3|5|", "|1|1.2.3.4|0|", "1|1.2.3.4|5|", "|1|1.2.3.4|99999|"):
        with pytest.raises(GrammarError):
            parse_eprt_args(bad)


def test_announcements_locate_the_rewritable_bytes():
    line = b"PORT 10,0,0,5,156,65\r\n"
    ann = command_announcement(line)
    assert (ann.kind, ann.host, ann.port) == ("PORT", "10.0.0.5", 40001)
    assert line[ann.span[0]:ann.span[1]] == b"10,0,0,5,156,65"
    ann = reply_announcement(b"229 Entering Extended Passive Mode (|||50007|)\r\n")
    assert (ann.kind, ann.host, ann.port) == ("229", None, 50007)
    assert command_announcement(b"RETR x\r\n") is None and reply_announcement(b"227-multi\r\n") is None
    assert is_tls_record(b"\x16\x03\x01\x00") and not is_tls_record(b"PORT")


# -- round trips ---------------------------------------------------------------------------------

@given(st.integers(100, 599), st.lists(text_line, min_size=1, max_size=5), st.lists(st.integers(0, 500), max_size=6))
def test_reply_round_trip_in_any_split(code, lines, cuts):
    raw = format_reply(code, lines) + format_reply(200, "ok")
    reader = ReplyReader()
    got = []
    for part in splits(raw, cuts):
        got += reader.feed(part)
    assert got == [Reply(code, tuple(lines)), Reply(200, ("ok",))]


@given(ipv4, ports)
def test_port_and_227_round_trip(host, port):
    hp = HostPort(host, port)
    assert parse_port_args(format_port_args(hp)) == hp
    assert parse_227(format_227(hp)) == hp
    ann = reply_announcement(b"227 " + format_227(hp).encode() + b"\r\n")
    assert (ann.host, ann.port) == (host, port)


@given(st.one_of(ipv4, ipv6), ports)
def test_eprt_round_trip_and_span_rewrite(host, port):
    hp = HostPort(host, port)
    assert parse_eprt_args(format_eprt_args(hp)) == hp
    line = f"EPRT {format_eprt_args(hp)}\r\n".encode()
    ann = command_announcement(line)
    new = HostPort("203.0.113.7", 4242)
    rewritten = line[:ann.span[0]] + format_eprt_args(new).encode() + line[ann.span[1]:]
    assert command_announcement(rewritten).port == 4242


@given(ports)
def test_229_round_trip(port):
    assert parse_229(format_229(port)) == port


@given(st.lists(st.binary(min_size=0, max_size=30).filter(lambda b: b"\n" not in b), max_size=6),
       st.lists(st.integers(0, 300), max_size=6))
def test_line_reader_reassembles_lines(lines, cuts):
    raw = b"".join(line + b"\r\n" for line in lines)
    reader = LineReader()
    got = []
    for part in splits(raw, cuts):
        got += reader.feed(part)
    assert got == [line + b"\r\n" for line in lines]


# -- hostile input: only GrammarError ------------------------------------------------------------

@settings(max_examples=300)
@given(st.binary(max_size=600), st.lists(st.integers(0, 700), max_size=8))
def test_random_bytes_never_crash_the_readers(data, cuts):
    for reader in (ReplyReader(), LineReader(limit=256)):
        try:
            for part in splits(data, cuts):
                reader.feed(part)
        except GrammarError:
            pass


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_parsers(data):
    text = data.decode("latin-1")
    for fn, arg in [(parse_command, data), (parse_port_args, text), (parse_eprt_args, text),
                    (parse_227, text), (parse_229, text), (command_announcement, data),
                    (reply_announcement, data), (command_announcement, b"PORT " + data),
                    (command_announcement, b"EPRT " + data), (reply_announcement, b"227 " + data),
                    (reply_announcement, b"229 " + data)]:
        try:
            fn(arg)
        except GrammarError:
            pass
    is_tls_record(data)


def test_overlong_line_is_reported_once_and_the_reader_recovers():
    reader = LineReader(limit=64)
    assert reader.feed(b"NOOP\r\n" + b"x" * 100) == [b"NOOP\r\n", LineReader.TOO_LONG]
    assert reader.feed(b"x" * 10_000) == []                    # the rest of it is dropped, not kept
    assert reader.pending == b""
    assert reader.feed(b"x\r\nNOOP\r\n") == [b"NOOP\r\n"]
    assert reader.feed(b"y" * 64 + b"\n") == [LineReader.TOO_LONG]   # too long with its newline too
    assert reader.feed(b"y" * 62 + b"\r\n") == [b"y" * 62 + b"\r\n"]


def test_line_reader_holds_at_most_its_limit():
    """A peer sending megabytes without a newline: the reader keeps `limit` bytes, scans each once."""
    reader = LineReader(limit=4096)
    chunk = b"z" * 8192
    for _ in range(2000):                                       # 16 MiB
        reader.feed(chunk)
        assert len(reader.pending) <= 4096


# -- what the server writes and logs ---------------------------------------------------------------

@pytest.mark.parametrize("brk", ["\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
                                 "\u2028", "\u2029", "\udc85", "\x1b"])
def test_format_reply_never_lets_an_argument_start_a_line(brk):
    """`SIZE a\\rPORT 10,1,1,10,0,22\\rb` gave `550-a` / `PORT 10,1,1,10,0,22` / `550 b` (issue 10)."""
    evil = f"a{brk}PORT 10,1,1,10,0,22{brk}b: no such file."
    for raw in (format_reply(550, evil), format_reply(213, ["Status of x:", evil, "End"]),
                format_reply(211, [evil, evil, "End"], dashed=True)):
        text = raw.decode("utf-8", "surrogateescape")
        assert text.count("\r\n") == len(text.splitlines()) and text.endswith("\r\n")
        assert all(re.match(r"\d\d\d[ -]| ", line) for line in text.splitlines()), text
        assert "\\" in text                                   # escaped, not removed
    assert format_reply(550, "a\rb") == b"550 a\\rb\r\n"
    assert format_reply(211, ["a", "b", "c"], dashed=True) == b"211-a\r\n211-b\r\n211 c\r\n"


def test_format_command_refuses_a_smuggled_command():
    for bad in ("a\r\nDELE b", "a\nDELE b", "a\x00b", "a\rb"):
        with pytest.raises(GrammarError):
            format_command("RETR", bad)


@pytest.mark.parametrize("line, shown", [
    ("PASS secret", "PASS ****"), (" PASS secret", "PASS ****"), ("PASS\tsecret", "PASS ****"),
    ("\tPASS secret", "PASS ****"), ("pass secret", "pass ****"), ("ACCT secret", "ACCT ****"),
    ("\udcff\udcf4PASS secret", "PASS ****"), ("PASS", "PASS ****"), ("PASSWORD x", "PASSWORD x"),
    ("SIZE a\rb\x1b[2J", "SIZE a\\rb\\x1b[2J"), ("RETR \udce9t\u00e9", "RETR \\xe9t\u00e9"),
])
def test_loggable(line, shown):
    assert loggable(line) == shown


@pytest.mark.parametrize("text, value", [("0", 0), ("00012", 12), (" 42 ", 42),
                                         ("9223372036854775807", 2**63 - 1)])
def test_parse_decimal(text, value):
    assert parse_decimal(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", "1e3", "1_000", "\u0661", "9223372036854775808", "9" * 5000])
def test_parse_decimal_refuses(text):
    with pytest.raises(GrammarError):
        parse_decimal(text)


@pytest.mark.parametrize("text", ["|1|10.0.0.1|\u00b2|", "|1|10.0.0.1|\u0662\u0661|"])
def test_numbers_are_ascii_digits_only(text):
    """str.isdigit() and re's \\d take '²' and Arabic-Indic digits; FTP numbers are ASCII."""
    with pytest.raises(GrammarError):
        parse_eprt_args(text)
    with pytest.raises(GrammarError):
        parse_227("227 Entering Passive Mode (\u0661,2,3,4,5,6)")
    with pytest.raises(GrammarError):
        parse_229("229 Entering Extended Passive Mode (|||\u0662\u0661|)")


def test_a_multiline_reply_that_never_ends_is_bounded():
    """A hostile server's `211-` followed by endless lines: the reader gives up at MAX_REPLY bytes."""
    from lab.ftps.grammar import MAX_REPLY
    reader = ReplyReader()
    line = b" " + b"x" * 1000 + b"\r\n"
    reader.feed(b"211-start\r\n")
    with pytest.raises(GrammarError, match="longer than"):
        for _ in range(MAX_REPLY // len(line) + 2):
            reader.feed(line)
    assert reader.feed(b"200 ok\r\n") == [Reply(200, ("ok",))]     # and starts afresh
