"""Elements of an nftables set or map, added and deleted with one netlink message each, straight
from the device process (no `nft`, no libnftables).

    sets = NfSets("ftlab_alg")                         # the IPv4 table of that name (NFPROTO_IPV6: ip6)
    sets.add([Element("waiting", key, timeout_ms=31000), Element("dest", key, data)])   # one batch
    sets.delete([Element("waiting", key)])

A key or a value is the bytes nftables keeps for it: `concat(ip, ip, port)` below builds them
(each part padded to 4 bytes, as nftables lays out a concatenation). One batch is one
transaction: all its elements or none. libnftables needs the same thing but first reads the
table, its sets and chains back from the kernel (about seven netlink round trips per command);
this is one. Errors raise OSError with the kernel's errno (ENOENT: no such element or set).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
# nf_tables.h
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_TIMEOUT = 1, 2, 4
NFTA_DATA_VALUE = 1


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * (-len(payload) % 4)


def _msg(kind: int, flags: int, seq: int, body: bytes, res_id: int = 0, family: int = NFPROTO_IPV4) -> bytes:
    payload = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def concat(*parts: str | int) -> bytes:
    """An nftables concatenation of addresses (str, IPv4 or IPv6) and ports (int), each padded to a
    multiple of 4 bytes."""
    out = b""
    for part in parts:
        out += ipaddress.ip_address(part).packed if isinstance(part, str) else struct.pack("!H", part) + b"\0\0"
    return out


@dataclass(frozen=True)
class Element:
    set: str
    key: bytes
    data: bytes | None = None        # a map's value
    timeout_ms: int | None = None


class NfSets:
    """One netlink socket to change elements of the sets and maps of one table."""

    def __init__(self, table: str, family: int = NFPROTO_IPV4, sock=None) -> None:
        self.table = table
        self.family = family
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.settimeout(5.0)        # the kernel answers at once; a hang is a lab failure, not a wait
        self.sock = sock
        self.seq = 0
        self.lock = threading.Lock()

    def add(self, elements: list[Element]) -> None:
        self._batch(NFT_MSG_NEWSETELEM, NLM_F_CREATE, elements)

    def delete(self, elements: list[Element]) -> None:
        self._batch(NFT_MSG_DELSETELEM, 0, elements)

    def _batch(self, op: int, flags: int, elements: list[Element]) -> None:
        with self.lock:
            self.seq += 1
            first = self.seq
            msgs = [_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first, b"", res_id=NFNL_SUBSYS_NFTABLES,
                         family=socket.AF_UNSPEC)]
            for e in elements:
                self.seq += 1
                item = _attr(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, e.key), nested=True)
                if e.data is not None:
                    item += _attr(NFTA_SET_ELEM_DATA, _attr(NFTA_DATA_VALUE, e.data), nested=True)
                if e.timeout_ms is not None:
                    item += _attr(NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", e.timeout_ms))
                body = (_attr(NFTA_SET_ELEM_LIST_TABLE, self.table.encode() + b"\0")
                        + _attr(NFTA_SET_ELEM_LIST_SET, e.set.encode() + b"\0")
                        + _attr(NFTA_SET_ELEM_LIST_ELEMENTS, _attr(NFTA_LIST_ELEM, item, nested=True), nested=True))
                msgs.append(_msg((NFNL_SUBSYS_NFTABLES << 8) | op, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq,
                                 body, family=self.family))
            self.seq += 1
            msgs.append(_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self.seq, b"", res_id=NFNL_SUBSYS_NFTABLES,
                             family=socket.AF_UNSPEC))
            self.sock.send(b"".join(msgs))
            self._acks(set(range(first + 1, first + 1 + len(elements))))

    def _acks(self, pending: set[int]) -> None:
        """Read the kernel's answer to every element message; the first error raises."""
        failure = 0
        while pending:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, off + 16)
                    pending.discard(seq)
                    failure = failure or -code
                    if code and failure == -code:
                        pending.clear()        # the batch was aborted: no more answers come
                off += (length + 3) & ~3 if length else len(data)
        if failure:
            raise OSError(failure, f"nftables set element in {self.table}: {os.strerror(failure)}")

    def close(self) -> None:
        self.sock.close()

