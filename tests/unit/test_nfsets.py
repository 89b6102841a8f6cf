"""Set elements over netlink (lab.devkit.nfsets): the bytes nftables keeps for a concatenation and
the batch the kernel gets; the kernel's answers, errors included. The real kernel does it in
tests/net/test_devices.py (an ALG mapping admits one connection and expires)."""

from __future__ import annotations

import struct

import pytest

from lab.devkit import nfsets
from lab.devkit.nfsets import Element, NfSets, concat


def test_a_concatenation_pads_each_part_to_four_bytes():
    assert concat("192.0.2.1", "198.51.100.1", 60000) == bytes([192, 0, 2, 1, 198, 51, 100, 1, 0xEA, 0x60, 0, 0])
    assert concat("2001:db8::1", 21) == bytes.fromhex("20010db8000000000000000000000001") + b"\0\x15\0\0"
    with pytest.raises(ValueError):
        concat("not an address")


class Kernel:
    """A netlink socket that answers every element message with `code` (0 = done)."""

    def __init__(self, code: int = 0) -> None:
        self.sent: list[bytes] = []
        self.code = code

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        out = b""
        for _length, _kind, flags, seq in messages(self.sent[-1]):
            if flags & nfsets.NLM_F_ACK:
                out += struct.pack("=IHHII", 36, nfsets.NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", self.code) + b"\0" * 16
        return out


def messages(data: bytes) -> list[tuple[int, int, int, int]]:
    out, off = [], 0
    while off < len(data):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, off)
        out.append((length, kind, flags, seq))
        off += length
    return out


def sets_on(kernel: Kernel) -> NfSets:
    sets = NfSets("ftlab_alg", sock=kernel)
    return sets


def test_one_batch_holds_every_element_between_begin_and_end():
    kernel = Kernel()
    key = concat("192.0.2.1", "198.51.100.1", 60000)
    sets_on(kernel).add([Element("waiting", key, timeout_ms=31000), Element("dest", key, concat("10.0.0.5", 60000))])
    kinds = [kind for _, kind, _, _ in messages(kernel.sent[0])]
    new = (nfsets.NFNL_SUBSYS_NFTABLES << 8) | nfsets.NFT_MSG_NEWSETELEM
    assert kinds == [nfsets.NFNL_MSG_BATCH_BEGIN, new, new, nfsets.NFNL_MSG_BATCH_END]
    sent = kernel.sent[0]
    assert b"ftlab_alg\0" in sent and b"waiting\0" in sent and b"dest\0" in sent and key in sent
    assert struct.pack("!Q", 31000) in sent              # the timeout, in ms, big-endian


def test_an_error_from_the_kernel_is_an_oserror_with_its_errno():
    with pytest.raises(OSError) as failed:
        sets_on(Kernel(code=-2)).delete([Element("waiting", concat("192.0.2.1", "198.51.100.1", 1))])
    assert failed.value.errno == 2
