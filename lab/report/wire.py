"""What a device saw of the control channel, read from its packet captures (`--pcap`).

For each device interface's capture, the TCP payloads to or from the control ports within a
time window: cleartext FTP lines (`227 Entering Passive Mode (10,1,1,10,234,96)`) or TLS
records (ciphertext, shown as their record types and sizes). Headers are parsed by hand (pcap,
Ethernet, IPv4, TCP): fast enough for captures that also hold the data connections' megabytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

from lab.ftps.grammar import is_tls_record

TLS_TYPES = {0x14: "change_cipher_spec", 0x15: "alert", 0x16: "handshake", 0x17: "application_data"}


def packets(path: Path):
    """(ts, src, sport, dst, dport, payload) of each TCP packet with a payload (Ethernet or cooked)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = head[:4]
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        offset = {1: 14, 113: 16, 276: 20}.get(linktype)
        if offset is None:
            return
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(endian + "IIII", rec)
            frame = f.read(incl)
            if len(frame) < incl:
                return
            ip = frame[offset:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            tcp = ip[ihl:total]
            if len(tcp) < 20:
                continue
            data_off = (tcp[12] >> 4) * 4
            payload = tcp[data_off:]
            if not payload:
                continue
            src = ".".join(map(str, ip[12:16]))
            dst = ".".join(map(str, ip[16:20]))
            sport, dport = struct.unpack("!HH", tcp[:4])
            yield sec + frac / (1e9 if nano else 1e6), src, sport, dst, dport, payload


def describe(payload: bytes) -> tuple[str, str]:
    """("cleartext", the lines) or ("ciphertext", the TLS records)."""
    if is_tls_record(payload):
        kinds, i = [], 0
        while i + 5 <= len(payload) and is_tls_record(payload[i:]):
            length = struct.unpack("!H", payload[i + 3:i + 5])[0]
            kinds.append(f"{TLS_TYPES.get(payload[i], hex(payload[i]))}[{length}]")
            i += 5 + length
        return "ciphertext", "TLS " + " ".join(kinds) + (" ..." if i < len(payload) else "")
    text = payload.decode("latin-1").replace("\r\n", "\n").strip()
    if text and all(c.isprintable() or c == "\n" for c in text):
        return "cleartext", " | ".join(text.splitlines())
    return "ciphertext", f"{len(payload)} bytes of binary data"


def seen(pcaps: list[Path], devices: set[str], start: float, end: float,
         control_ports: tuple[int, ...] = (21, 990), limit: int = 60) -> list[dict]:
    """Control-channel payloads the device interfaces carried between start and end."""
    out = []
    for path in pcaps:
        node = Path(path).stem.rsplit("-eth", 1)[0]
        if node not in devices:
            continue
        last = None
        for ts, src, sport, dst, dport, payload in packets(Path(path)):
            if not (start <= ts <= end) or (sport not in control_ports and dport not in control_ports):
                continue
            kind, text = describe(payload)
            item = {"device": f"{node} ({Path(path).stem})", "kind": kind,
                    "text": f"{src}:{sport} -> {dst}:{dport}  {text}"}
            if item != last:
                out.append(item)
                last = item
            if len(out) >= limit:
                return out
    return out
