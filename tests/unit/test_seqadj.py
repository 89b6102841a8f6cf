"""Sequence adjustment: positions, acknowledgements and segments stay consistent."""

from hypothesis import given, settings
from hypothesis import strategies as st

from nat.seqadj import SeqMap

OLD = b"PORT 10,0,1,2,4,1\r\n"          # 19 bytes at offset 6
NEW = b"PORT 203,0,113,1,4,1\r\n"       # 22 bytes: +3
STREAM = b"NOOP\r\n" + OLD + b"LIST\r\n"
OUT = b"NOOP\r\n" + NEW + b"LIST\r\n"


def rewritten() -> SeqMap:
    m = SeqMap()
    m.add(6, 25, NEW)
    return m


def test_positions_shift_after_the_unit():
    m = rewritten()
    assert m.to_out(0) == 0 and m.to_out(6) == 6 and m.to_out(25) == 28 and m.to_out(31) == 34
    assert m.to_out(10) == 6                              # inside a unit: its start
    assert m.to_orig(28) == 25 and m.to_orig(34) == 31 and m.to_orig(6) == 6
    assert m.to_orig(20) == 6                             # part of a rewritten line is not acked
    assert m.delta == 3


def test_segment_carries_whole_unit_and_retransmits_identically():
    m = rewritten()
    assert m.segment(0, STREAM) == (0, OUT)
    assert m.segment(0, STREAM) == (0, OUT)               # retransmission: the same bytes
    # the unit was split across segments: it goes whole with the segment that completes it
    assert m.segment(0, STREAM[:10]) == (0, b"NOOP\r\n")
    assert m.segment(10, STREAM[10:]) == (6, NEW + b"LIST\r\n")
    assert m.segment(25, STREAM[25:]) == (28, b"LIST\r\n")
    assert m.segment(8, STREAM[8:20]) == (6, b"")         # only a part of the unit: nothing


def test_held_bytes_are_not_sent():
    m = SeqMap()
    assert m.segment(0, b"NOOP\r\nPO", held_start=6) == (0, b"NOOP\r\n")
    assert m.position(8, held_start=6) == 6


def test_units_bounded():
    m = SeqMap(max_units=10)
    for i in range(100):
        m.add(i * 20, i * 20 + 10, b"x" * 12)
    assert len(m.units) == 10 and m.delta == 200
    assert m.to_out(2000) == 2200


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 20), st.integers(0, 40)), max_size=8),
       st.lists(st.integers(1, 400), max_size=10))
def test_any_segmentation_reassembles_to_the_rewritten_stream(units, cuts):
    data = bytes(range(256)) * 2
    m, pos, expected = SeqMap(), 0, b""
    for gap, length, new_len in units:
        start = pos + gap
        end = start + length
        if end > len(data):
            break
        out = bytes([0xAA]) * new_len
        m.add(start, end, out)
        expected += data[pos:start] + out
        pos = end
    expected += data[pos:]
    received = bytearray()
    bounds = sorted({c for c in cuts if c < len(data)} | {0, len(data)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        off, payload = m.segment(a, data[a:b])
        assert off <= len(received)                       # never a hole at the receiver
        received[off:off + len(payload)] = payload
    assert bytes(received) == expected
    assert m.to_orig(len(expected)) == len(data)
