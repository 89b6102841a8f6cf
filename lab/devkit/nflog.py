"""Packets logged to a netfilter log group (NFLOG), read from the kernel over netlink.

nftables cannot hand a packet to NFQUEUE on this kernel (`queue` fails: no nft_queue), but its
`log group N` statement sends a copy of the packet, with the rule's prefix, to netlink log
group N, and the rule's own verdict (drop) still decides the packet's fate. The drop observer
reads that group with this module: a plain AF_NETLINK socket, no library.

    with NflogSocket(30) as log:
        for packet in log.read():       # after select() says the socket is readable
            packet.prefix, packet.mark, packet.payload

The socket lives in the network namespace of the process that opens it (a node's).
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULA_CFG_QTHRESH = 5        # packets the kernel batches before it sends (default: up to 1 s of them)
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
# attributes of a logged packet
NFULA_MARK, NFULA_PAYLOAD, NFULA_PREFIX = 2, 9, 10
COPY_RANGE = 0xFFFF


@dataclass(frozen=True)
class LoggedPacket:
    prefix: str          # the rule's log prefix
    mark: int            # the packet's nfmark
    payload: bytes       # the packet from its network header on


def _attrs(data: bytes) -> list[tuple[int, bytes]]:
    """Netlink attributes (type, value) packed in `data`."""
    out, off = [], 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out.append((kind & 0x7FFF, data[off + 4:off + length]))
        off += (length + 3) & ~3
    return out


def config_message(group: int, attrs: list[tuple[int, bytes]], seq: int = 1) -> bytes:
    """An NFULNL_MSG_CONFIG request for `group` carrying `attrs` (pure: tested without a kernel)."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group))
    for kind, value in attrs:
        length = 4 + len(value)
        body += struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                         NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return header + body


def parse_messages(data: bytes) -> list[LoggedPacket]:
    """The logged packets in one netlink datagram (other messages are skipped). Pure."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            found = dict(_attrs(data[off + 20:off + length]))
            prefix = found.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
            mark = struct.unpack("!I", found[NFULA_MARK])[0] if len(found.get(NFULA_MARK, b"")) == 4 else 0
            out.append(LoggedPacket(prefix, mark, found.get(NFULA_PAYLOAD, b"")))
        off += (length + 3) & ~3
    return out


class NflogSocket:
    """A netlink socket bound to one log group, copying whole packets."""

    def __init__(self, group: int) -> None:
        self.group = group
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))
            self._configure([(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND))], 1)
            self._configure([(NFULA_CFG_MODE, struct.pack("!IBx", COPY_RANGE, NFULNL_COPY_PACKET))], 2)
            # each logged drop at once: a drop decides its cell, which must not wait out a batch
            self._configure([(NFULA_CFG_QTHRESH, struct.pack("!I", 1))], 3)
        except BaseException:
            self.sock.close()
            raise

    def _configure(self, attrs: list[tuple[int, bytes]], seq: int) -> None:
        self.sock.send(config_message(self.group, attrs, seq))
        reply = self.sock.recv(4096)
        if len(reply) >= 20 and struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR:
            error = struct.unpack_from("=i", reply, 16)[0]
            if error:
                raise OSError(-error, f"NFLOG group {self.group}: configuration refused")

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[LoggedPacket]:
        """The packets of one datagram (call when the socket is readable). After an overrun
        (ENOBUFS: the kernel logged faster than this reader read) the lost ones are gone."""
        try:
            return parse_messages(self.sock.recv(1 << 17))
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return []
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NflogSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
