"""TYPE A line-end conversion: streaming, chunk boundaries, and the wire size."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from lab.ftps.netascii import FromWire, ToWire, wire_size

TEXT = st.binary(max_size=300).map(lambda b: b.replace(b"\x00", b"\n").replace(b"\x01", b"\r"))


def chunked(conv, data: bytes, cuts: list[int]) -> bytes:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = b"".join(conv.convert(p) for p in pieces)
    return out + (conv.flush() if isinstance(conv, FromWire) else b"")


def test_examples():
    assert ToWire().convert(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
    assert chunked(FromWire(), b"a\r\nb\rc\r\n\r", []) == b"a\nb\rc\n\r"


def test_a_crlf_split_between_chunks_stays_one_line_end():
    to = ToWire()
    assert to.convert(b"line\r") + to.convert(b"\nnext\n") == b"line\r\nnext\r\n"
    back = FromWire()
    assert back.convert(b"line\r") + back.convert(b"\nnext\r") + back.flush() == b"line\nnext\r"


@given(TEXT, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_chunking_never_changes_the_result(data, cuts):
    assert chunked(ToWire(), data, cuts) == ToWire().convert(data)
    assert chunked(FromWire(), data, cuts) == chunked(FromWire(), data, [])


@given(TEXT)
def test_unix_text_round_trips_and_every_lf_on_the_wire_follows_a_cr(data):
    wire = ToWire().convert(data)
    assert wire.count(b"\n") == wire.count(b"\r\n")
    unix = data.replace(b"\r", b"")
    assert chunked(FromWire(), ToWire().convert(unix), []) == unix


def test_wire_size_counts_the_crs_added(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"one\ntwo\r\nthree\n" * 100000)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert wire_size(fd) == len(ToWire().convert(f.read_bytes())) == f.stat().st_size + 200000
    finally:
        os.close(fd)
