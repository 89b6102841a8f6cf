"""What the devices' captures (`--pcap`) show of a cell's own connections.

A cell's evidence is selected by the cell's own 5-tuples, never by a time window alone: the
client agent records every TCP connection the cell's client made (lab.matrix.agent), the worker
adds what the server logged of them (lab.matrix.worker.cell_connections), and results.json keeps
them as the cell's `connections`. A capture elsewhere on the path sees one of the views of a
connection: at the client node and inside a client-side NAT the client's own (its private
address, the server address it dialed); beyond a source NAT the client end as the server sees it;
behind a server-side NAT the server's own address. So a packet belongs to a connection when one of
its ends is a view of the connection's client end and the other a view of its server end (a port
unknown in a view matches any port of that address). IPv4 and IPv6 alike.

Shown per device interface: the control connection's TCP payloads - cleartext FTP lines, with the
password masked as in every log (lab.ftps.grammar.loggable: `PASS ****`), or TLS records - and one
line per data connection (its segments, bytes, and whether its first payload was TLS), so a SYN
seen on one side of a device and not on the other shows where a data connection died. Headers are
parsed by hand (pcap, Ethernet/cooked, IPv4/IPv6, TCP): fast enough for captures that also hold
the data connections' megabytes; a capture is read once for all the cells that name it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import defaultdict
from pathlib import Path

from lab.ftps.grammar import is_tls_record, loggable

TLS_TYPES = {0x14: "change_cipher_spec", 0x15: "alert", 0x16: "handshake", 0x17: "application_data"}
#: Around a cell's own time span, packets of its connections still count (FIN, late retransmits).
SLACK_S = 1.0
#: Control-channel items shown per cell and capture (each device interface gets its share).
LIMIT = 40


def _addr(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def segments(path: Path):
    """(ts, src, sport, dst, dport, flags, payload) of each TCP segment (IPv4 or IPv6; Ethernet,
    VLAN, Linux cooked v1/v2)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = head[:4]
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype not in (1, 113, 276, 101):
            return
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _ = struct.unpack(endian + "IIII", rec)
            frame = f.read(incl)
            if len(frame) < incl:
                return
            ip = _network_layer(frame, linktype)
            if ip is None:
                continue
            parsed = _tcp(ip)
            if parsed is None:
                continue
            yield (sec + frac / (1e9 if nano else 1e6), *parsed)


def _network_layer(frame: bytes, linktype: int) -> bytes | None:
    if linktype == 101:                      # raw IP
        return frame
    if linktype == 1:
        off, etype = 14, frame[12:14]
        while etype in (b"\x81\x00", b"\x88\xa8") and len(frame) >= off + 4:   # VLAN tags
            etype, off = frame[off + 2:off + 4], off + 4
    elif linktype == 113:
        off, etype = 16, frame[14:16]
    else:                                    # 276: cooked v2
        off, etype = 20, frame[0:2]
    return frame[off:] if etype in (b"\x08\x00", b"\x86\xdd") else None


def _tcp(ip: bytes):
    if len(ip) < 20:
        return None
    version = ip[0] >> 4
    if version == 4:
        if ip[9] != 6:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0] or len(ip)
        tcp, src, dst = ip[ihl:total], _addr(ip[12:16]), _addr(ip[16:20])
    elif version == 6:
        if len(ip) < 40:
            return None
        nxt, pos = ip[6], 40
        while nxt in (0, 43, 60) and len(ip) >= pos + 8:       # hop-by-hop, routing, destination options
            nxt, pos = ip[pos], pos + (ip[pos + 1] + 1) * 8
        if nxt != 6:
            return None
        length = struct.unpack("!H", ip[4:6])[0]
        tcp, src, dst = ip[pos:40 + length] if length else ip[pos:], _addr(ip[8:24]), _addr(ip[24:40])
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    return src, sport, dst, dport, tcp[13], tcp[(tcp[12] >> 4) * 4:]


def describe(payload: bytes) -> tuple[str, str]:
    """("cleartext", the lines, passwords masked) or ("ciphertext", the TLS records)."""
    if is_tls_record(payload):
        kinds, i = [], 0
        while i + 5 <= len(payload) and is_tls_record(payload[i:]):
            length = struct.unpack("!H", payload[i + 3:i + 5])[0]
            kinds.append(f"{TLS_TYPES.get(payload[i], hex(payload[i]))}[{length}]")
            i += 5 + length
        return "ciphertext", "TLS " + " ".join(kinds) + (" ..." if i < len(payload) else "")
    text = payload.decode("latin-1").replace("\r\n", "\n").strip()
    if text and all(c.isprintable() or c == "\n" for c in text):
        return "cleartext", " | ".join(loggable(line) for line in text.splitlines())
    return "ciphertext", f"{len(payload)} bytes of binary data"


def mask(text: str) -> str:
    """A wire item's text (`src -> dst  LINE | LINE`) with every line's password masked: for
    documents written before the evidence was masked at the source."""
    head, sep, lines = text.partition("  ")
    if not sep:
        return loggable(text)
    return head + sep + " | ".join(loggable(line) for line in lines.split(" | "))


# -- a cell's connections -----------------------------------------------------------------------------

def _end(value) -> tuple[str, int | None] | None:
    """[address, port] (port may be null) -> (normalised address, port)."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not isinstance(value[0], str):
        return None
    try:
        host = str(ipaddress.ip_address(value[0].split("%")[0]))
    except ValueError:
        return None
    return host, value[1] if isinstance(value[1], int) else None


def views(conn: dict) -> tuple[set, set]:
    """(the client end's views, the server end's views) of one recorded connection."""
    cv, sv, pv = conn.get("client_view") or {}, conn.get("server_view") or {}, conn.get("path_views") or {}
    client = {e for e in (_end(cv.get("local")), _end(sv.get("remote")), *map(_end, pv.get("client") or [])) if e}
    server = {e for e in (_end(cv.get("remote")), _end(sv.get("local")), *map(_end, pv.get("server") or [])) if e}
    return client, server


def _is(end: tuple[str, int], views_: set) -> bool:
    return end in views_ or (end[0], None) in views_


class Selector:
    """Which cell's connection a segment belongs to, for the cells that name one capture."""

    def __init__(self, cells: list[dict]) -> None:
        self.by_host: dict[str, list] = defaultdict(list)
        for cell in cells:
            span = cell_span(cell)
            for i, conn in enumerate(cell.get("connections") or []):
                client, server = views(conn)
                if not client and not server:
                    continue
                entry = (cell["id"], i, conn, client, server, span)
                for host in {h for h, _ in client | server}:
                    self.by_host[host].append(entry)
        self.end = max((e[5][1] for es in self.by_host.values() for e in es), default=0.0)

    def match(self, ts: float, src: tuple, dst: tuple):
        for entry in self.by_host.get(src[0], ()) + self.by_host.get(dst[0], ()):
            _, _, _, client, server, (lo, hi) = entry
            if not lo <= ts <= hi:
                continue
            if server and client:
                if (_is(src, client) and _is(dst, server)) or (_is(src, server) and _is(dst, client)):
                    return entry
            elif _is(src, client | server) or _is(dst, client | server):
                return entry               # a listener nothing reached: its own end names it
        return None


def cell_span(cell: dict) -> tuple[float, float]:
    """The wall-clock span of a cell, with SLACK_S either side (unbounded when not recorded)."""
    ended, duration = cell.get("ended"), cell.get("duration_s")
    if not isinstance(ended, int | float):
        return float("-inf"), float("inf")
    start = ended - (duration if isinstance(duration, int | float) else 0.0)
    return start - SLACK_S, ended + SLACK_S


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def node_of(path: str | Path) -> str:
    return Path(path).stem.rsplit("-eth", 1)[0]


def cells_seen(cells: list[dict], folder: str | Path, devices: set[str] | None = None) -> dict[str, list[dict]]:
    """{cell id: its wire items} for the cells that recorded their connections, from the captures
    they name (paths relative to `folder`), each capture read once; `devices`: only captures of
    these nodes (None: every capture)."""
    out: dict[str, list[dict]] = {c["id"]: [] for c in cells if isinstance(c.get("connections"), list)}
    by_pcap: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if c["id"] in out:
            for p in c.get("pcaps") or []:
                if isinstance(p, str) and (devices is None or node_of(p) in devices):
                    by_pcap[p].append(c)
    for rel, members in sorted(by_pcap.items()):
        path = Path(folder) / rel
        if not path.is_file() or ".." in Path(rel).parts:
            continue
        _read_one(path, members, out)
    return out


def _read_one(path: Path, cells: list[dict], out: dict[str, list[dict]]) -> None:
    sel = Selector(cells)
    if not sel.by_host:
        return
    device = f"{node_of(path)} ({path.stem})"
    last: dict[str, dict] = {}
    shown: dict[str, int] = defaultdict(int)
    data: dict[tuple, dict] = {}
    for ts, src, sport, dst, dport, flags, payload in segments(path):
        if ts > sel.end:
            break                          # the rest of the capture is after every cell (throughput)
        entry = sel.match(ts, (src, sport), (dst, dport))
        if entry is None:
            continue
        cell_id, index, conn, *_ = entry
        if conn.get("role") == "control":
            if not payload:
                continue
            kind, text = describe(payload)
            item = {"device": device, "kind": kind, "text": f"{_fmt(src, sport)} -> {_fmt(dst, dport)}  {text}"}
            if item == last.get(cell_id):
                continue
            last[cell_id] = item
            shown[cell_id] += 1
            if shown[cell_id] <= LIMIT:
                out[cell_id].append(item)
            elif shown[cell_id] == LIMIT + 1:
                out[cell_id].append({"device": device, "kind": "note",
                                     "text": f"... (more of the control connection: see {path.name})"})
            continue
        key = (cell_id, index)
        d = data.get(key)
        if d is None:
            d = data[key] = {"cell": cell_id, "first": (src, sport, dst, dport), "segments": 0, "bytes": 0,
                             "syn": 0, "rst": 0, "payload": None, "pos": len(out[cell_id])}
            out[cell_id].append({"device": device, "kind": "data", "text": ""})    # filled in below
        d["segments"] += 1
        d["bytes"] += len(payload)
        d["syn"] += bool(flags & 0x02 and not flags & 0x10)
        d["rst"] += bool(flags & 0x04)
        if payload and d["payload"] is None:
            d["payload"] = payload
    for d in data.values():
        src, sport, dst, dport = d["first"]
        tls = d["payload"] is not None and is_tls_record(d["payload"])
        if tls:
            kind, first = "ciphertext", describe(d["payload"])[1]
        elif d["payload"] is not None:
            kind, first = "cleartext", "not TLS: the data in clear"
        elif d["syn"] and d["segments"] == d["syn"]:
            kind, first = "drop", "none - only SYNs, nothing answered here"
        else:
            kind, first = "cleartext", "none"
        what = (f"data connection {_fmt(src, sport)} -> {_fmt(dst, dport)}: {d['segments']} segments, "
                f"{d['bytes']} bytes of payload" + (f", {d['syn']} SYN" if d["syn"] else "")
                + (f", {d['rst']} RST" if d["rst"] else "") + f"; first payload: {first}")
        out[d["cell"]][d["pos"]] = {"device": device, "kind": kind, "text": what}


def attach(doc: dict, folder: str | Path) -> None:
    """Each cell that recorded its connections gets `wire` from the captures in `folder` (when
    they are there: a merged report keeps what its shards found)."""
    info = doc.get("topologies") or {}
    by_topology: dict[str, list[dict]] = defaultdict(list)
    for s in doc.get("scenarios") or []:
        if isinstance(s.get("connections"), list) and s.get("pcaps"):
            by_topology[s["topology"]].append(s)
    for name, cells in by_topology.items():
        if not any((Path(folder) / p).is_file() for c in cells for p in c["pcaps"] if isinstance(p, str)):
            continue
        devs = {d.get("node") for d in (info.get(name) or {}).get("devices") or [] if isinstance(d, dict)}
        found = cells_seen(cells, folder, devs or None)
        for s in cells:
            s["wire"] = found.get(s["id"], [])

