"""The control-channel tracker: lines across segments, TLS and CCC, hostile lines, bounds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.devkit.ctrlstream import C2S, HOLD_LIMIT, S2C, ControlTracker, HalfStream

TLS_HELLO = bytes([0x16, 0x03, 0x01, 0x00, 0x05]) + b"hello"
_SECRET = b"\r\nPORT 10,0,1,2,4,1\r\n227 (1"                     # FTP-looking application data
TLS_APP = bytes([0x17, 0x03, 0x03, 0x00, len(_SECRET)]) + _SECRET
TLS_CLOSE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])


def feed_all(half: HalfStream, chunks: list[bytes], fin: bool = False):
    found, pos = [], 0
    for i, chunk in enumerate(chunks):
        found += half.feed(pos, chunk, fin=fin and i == len(chunks) - 1).findings
        pos += len(chunk)
    return found


def anns(found):
    return [(f.ann.kind, f.ann.host, f.ann.port) for f in found if f.kind == "announcement"]


def test_port_and_eprt_found_at_line_start():
    found = feed_all(HalfStream(C2S), [b"USER a\r\nPORT 10,0,1,2,4,1\r\nport 10,0,1,2,4,2\r\n"
                                       b"EPRT |1|10.0.1.2|1027|\r\n"])
    assert anns(found) == [("PORT", "10.0.1.2", 1025), ("PORT", "10.0.1.2", 1026), ("EPRT", "10.0.1.2", 1027)]


def test_227_and_229_found_in_replies():
    found = feed_all(HalfStream(S2C), [b"220 hi\r\n227 Entering Passive Mode (10,0,2,2,234,96).\r\n"
                                       b"229 Entering Extended Passive Mode (|||60001|)\r\n"])
    assert anns(found) == [("227", "10.0.2.2", 60000), ("229", None, 60001)]


def test_split_at_every_byte_boundary():
    stream = b"NOOP\r\nPORT 10,0,1,2,4,1\r\nEPRT |1|10.0.1.2|1027|\r\n"
    for cut in range(1, len(stream)):
        found = feed_all(HalfStream(C2S), [stream[:cut], stream[cut:]])
        assert anns(found) == [("PORT", "10.0.1.2", 1025), ("EPRT", "10.0.1.2", 1027)], cut
    found = feed_all(HalfStream(C2S), [bytes([b]) for b in stream])
    assert anns(found) == [("PORT", "10.0.1.2", 1025), ("EPRT", "10.0.1.2", 1027)]


def test_candidate_line_is_held_until_complete():
    half = HalfStream(C2S)
    half.feed(0, b"NOOP\r\nPO")
    assert half.held_start == 6
    fed = half.feed(8, b"RT 10,0,1,2,4,1\r\n")
    assert half.held_start is None and fed.findings[0].held and fed.findings[0].start == 6
    half = HalfStream(C2S)
    half.feed(0, b"PA")
    assert half.held_start is None                      # PASV can never become PORT: not held


def test_retransmission_and_overlap_parsed_once():
    half = HalfStream(C2S)
    assert anns(half.feed(0, b"PORT 10,0,1,2,4,1\r\n").findings)
    again = half.feed(0, b"PORT 10,0,1,2,4,1\r\n")
    assert again.status == "old" and not again.findings
    over = half.feed(10, b"1,2,4,1\r\nPORT 10,0,1,2,4,2\r\n")
    assert over.status == "new" and anns(over.findings) == [("PORT", "10.0.1.2", 1026)]
    assert half.feed(500, b"x").status == "gap"


def test_hostile_lines_announce_nothing():
    c2s = feed_all(HalfStream(C2S), [
        b"RETR PORT 10,0,1,2,4,1\r\n",          # PORT inside a filename argument
        b"STOR x\r\n PORT 10,0,1,2,4,1\r\n",     # not at the start of the line
        b"PORT 10,0,1,256,4,1\r\n",              # above 255
        b"PORT 10,0,1,-2,4,1\r\n",               # negative
        b"PORT 10,0,1,0002,4,1\r\n",             # overlong number
        b"PORT 10,0,1,2,4,1,7\r\n",              # seven numbers
        b"EPRT |1|10.0.1.2|99999|\r\n",          # port out of range
        b"227 Entering Passive Mode (10,0,1,2,4,1)\r\n",   # a reply sent by the client
    ])
    assert anns(c2s) == []
    assert sum(f.kind == "malformed" for f in c2s) == 5
    assert sum(f.kind == "ignored" for f in c2s) == 1
    s2c = feed_all(HalfStream(S2C), [
        b"211-Features:\r\n227 Entering Passive Mode (10,0,2,2,4,1)\r\n211 End\r\n",   # inside multi-line
        b"227-Entering Passive Mode (10,0,2,2,4,1)\r\n227 done\r\n",
        b"PORT 10,0,2,2,4,1\r\n",                # a command sent by the server
        b"550 227 Entering Passive Mode (10,0,2,2,4,1)\r\n",
    ])
    assert anns(s2c) == []


def test_tls_detected_and_never_read():
    half = HalfStream(C2S)
    found = feed_all(half, [b"AUTH TLS\r\n", TLS_HELLO, TLS_APP, TLS_APP[:7], TLS_APP[7:]])
    assert [f.kind for f in found] == ["tls-start"] and half.mode == "tls"


def test_implicit_tls_from_first_byte():
    half = HalfStream(S2C)
    found = feed_all(half, [TLS_HELLO + TLS_APP])
    assert [f.kind for f in found] == ["tls-start"]


def test_ccc_resumes_on_first_plaintext_line():
    # ftplib's ccc(): the 200 arrives encrypted, close_notify both ways, then the first clear line
    for first in (b"PORT 10,0,1,2,4,1\r\n", b"227 Entering Passive Mode (10,0,1,2,4,1)\r\n"):
        direction = C2S if first.startswith(b"PORT") else S2C
        stream = b"AUTH TLS\r\n" if direction == C2S else b"234 go\r\n"
        stream += TLS_HELLO + TLS_APP + TLS_CLOSE + first
        for cut in range(1, len(stream)):
            half = HalfStream(direction)
            found = feed_all(half, [stream[:cut], stream[cut:]])
            kinds = [f.kind for f in found if f.kind != "held-line"]
            assert kinds == ["tls-start", "tls-end", "announcement"], (cut, kinds)


def test_line_length_bounded():
    half = HalfStream(C2S)
    found = feed_all(half, [b"X" * 10000, b"\r\nPORT 10,0,1,2,4,1\r\n"])
    assert [f.kind for f in found] == ["overlong", "announcement"]
    assert len(half.line) == 0
    half = HalfStream(C2S)
    found = feed_all(half, [b"PORT 1", b"1" * (HOLD_LIMIT + 10), b"\r\n"])
    assert half.held_start is None and found[0].kind == "overlong" and found[0].held
    assert found[0].end - found[0].start == len(found[0].line) == HOLD_LIMIT + 16


def test_fin_releases_held_line():
    half = HalfStream(C2S)
    fed = half.feed(0, b"PORT 10,0", fin=True)
    assert half.held_start is None and fed.findings[0].held


def test_tracker_directions_and_bounds():
    now = [0.0]
    t = ControlTracker([21, 990], max_conns=3, idle=10, clock=lambda: now[0])
    conn, d, _ = t.segment("10.0.1.2", 40000, "198.51.100.2", 21, 1000, b"", syn=True)
    assert d == C2S and str(conn.id) == "10.0.1.2:40000>198.51.100.2:21"
    _, d, _ = t.segment("198.51.100.2", 21, "10.0.1.2", 40000, 5000, b"", syn=True, ack=True)
    assert d == S2C and len(t.conns) == 1
    assert t.segment("10.0.1.2", 40000, "198.51.100.2", 60000, 1, b"x") is None
    for p in range(1, 10):
        t.segment("10.0.1.2", 40000 + p, "198.51.100.2", 21, 1, b"", syn=True)
    assert len(t.conns) == 3 and t.evicted == 7
    now[0] = 100
    assert len(t.expire()) == 3


def test_pasv_flood_stays_bounded():
    half = HalfStream(S2C)
    reply = b"227 Entering Passive Mode (10,0,2,2,234,96)\r\n"
    found = feed_all(half, [reply * 100] * 50)
    assert len(anns(found)) == 5000 and len(half.line) == 0 and half.held_start is None


def test_connection_without_its_opening_syn_is_never_tracked():
    t = ControlTracker([21])
    assert t.segment("10.0.1.2", 40000, "198.51.100.2", 21, 77, b"PORT 10,0,1,2,4,1\r\n") is None
    assert t.segment("198.51.100.2", 21, "10.0.1.2", 40000, 9, b"227 (10,0,1,2,4,1)\r\n") is None
    # a SYN/ACK opens nothing either: only a SYN without ACK says who the client is
    assert t.segment("10.0.1.2", 40001, "198.51.100.2", 21, 5, b"", syn=True, ack=True) is None
    assert t.conns == {}


def open_conn(t: ControlTracker, client: tuple[str, int], server: tuple[str, int]) -> None:
    assert t.segment(*client, *server, 1000, b"", syn=True)[1] == C2S
    assert t.segment(*server, *client, 5000, b"", syn=True, ack=True)[1] == S2C


@pytest.mark.parametrize("cport", [990, 21])
def test_direction_comes_from_the_syn_not_the_ports(cport):
    """Slipstreaming: a client whose control connection comes FROM a control port. The server's
    reply echoing `PORT ...` on a line of its own is the server's text, never a client command."""
    client, server = ("198.51.100.10", cport), ("10.1.1.10", 21)
    t = ControlTracker([21, 990])
    open_conn(t, client, server)
    echo = b"550-a\r\nPORT 10,1,1,10,0,22\r\n550 b: no such file\r\n"
    conn, d, fed = t.segment(*server, *client, 5001, echo)
    assert d == S2C and anns(fed.findings) == []
    assert [f.message for f in fed.findings] == ["PORT sent by the server: not its announcement"]
    _, d, fed = t.segment(*client, *server, 1001, b"PORT 198,51,100,10,4,1\r\n")
    assert d == C2S and anns(fed.findings) == [("PORT", "198.51.100.10", 1025)]
    assert len(t.conns) == 1


def test_reply_through_destination_nat_paired_with_its_syn():
    """Before conntrack the server's replies come from its own address, not the one the client
    dialed: paired by the ports and the client's address, still the server's direction."""
    t = ControlTracker([21, 990])
    assert t.segment("198.51.100.10", 990, "203.0.113.1", 21, 1000, b"", syn=True)[1] == C2S
    conn, d, _ = t.segment("10.1.1.10", 21, "198.51.100.10", 990, 5000, b"", syn=True, ack=True)
    assert d == S2C and str(conn.id) == "198.51.100.10:990>203.0.113.1:21"
    _, d, fed = t.segment("10.1.1.10", 21, "198.51.100.10", 990, 5001, b"PORT 10,1,1,10,0,22\r\n")
    assert d == S2C and anns(fed.findings) == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8), st.sampled_from([C2S, S2C]))
def test_random_bytes_random_splits_never_crash(data, cuts, direction):
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    half = HalfStream(direction)
    feed_all(half, chunks, fin=True)
    whole = HalfStream(direction)
    assert anns(feed_all(whole, [data], fin=True)) == anns(feed_all(HalfStream(direction), chunks))
    assert len(half.line) <= 4097 and half.held_start is None
