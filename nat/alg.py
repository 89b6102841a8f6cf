"""The scapy ALG: a NAT router's FTP application-level gateway on NFQUEUE 10 (lab.devkit.queues).

    python -m nat.alg --config FILE

Only control-channel packets (TCP 21, 990, configured control ports) are queued to this process;
data connections are forwarded and NATed by the kernel. For an announcement made by a host on the
inside (the packet did not arrive on the outside interface):

- PORT/EPRT from a client, 227 from a server: the address becomes the NAT's outside address and
  the port a mapped port (the same one when free); 229 (port only) is rewritten only when the port
  had to change;
- the data connection's mapping is installed in the kernel before the rewritten line leaves:
  peer -> outside:port  =>  inside host:port, restricted to the control connection's peer,
  single-use, removed after its lifetime. It is an element of an nftables set and map (MAP_TABLE),
  added with one netlink message from this process (~0.02 ms; an iptables process took 1.5-3 ms,
  libnftables 0.1-0.4 ms); the kernel
  takes it out of the set when the data connection's first packet is DNATed. (Conntrack
  expectations, the kernel helper's way, cannot be made from here: ctnetlink refuses one on a
  connection without a kernel helper, and this kernel has no userspace-helper support.);
- TCP seq/ack/SACK stay consistent for the rest of the connection (nat.seqadj).

The device: `nat:` section with `alg: scapy`. Events: rewrite, mapping-open/-used/-expired,
tls-detected, ccc, ignored, drop (test hook only), error, ready. Kernel features: NFQUEUE, NAT.

Nothing is opened for an announcement that names another host than its sender, comes from the
wrong side, does not parse, or sits anywhere but at the start of a line (lab.devkit.ctrlstream finds
them). Who is the client is who sent the connection's SYN, never a port number (a client
connecting from port 21 or 990 cannot make the server's replies count as its commands); a
control connection whose SYN this process did not see is forwarded untouched. TLS bytes are
never changed; after CCC inspection resumes on the first plaintext line.

Divert points: the queue rule is in the `raw` table's PREROUTING, i.e. before conntrack. The
kernel (conntrack, NAT, filter, TCP window tracking) then only ever sees the rewritten stream,
whose segments are consistent with each other; rewriting after conntrack would show it one
length and forward another. Acknowledgements are put back into their sender's numbering on a
second queue after conntrack (mangle POSTROUTING, queues.ALG_ACKS: AckTranslations), so that
conntrack's window tracking sees each direction's bytes and their ACKs in one numbering and needs
no nf_conntrack_tcp_be_liberal.

Whose bytes are read: only a segment from its sender's side of the router that its receiver will
accept (lab.devkit.ctrlstream: the side of the SYN / SYN-ACK, TTL, checksum, window, ACK, PAWS, a
retransmission's bytes); anything else is dropped with a `drop` event naming why, and nothing in it
is rewritten or mapped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lab.devkit import features, queues
from lab.devkit.ctrlstream import C2S, OTHER, S2C, Conn, ControlTracker, Fed, Finding, Receipt
from lab.devkit.device import (
    NAT_PREROUTING,
    RAW_PREROUTING,
    At,
    Control,
    Decision,
    Device,
    DeviceSetup,
    Reading,
)
from lab.devkit.events import EventWriter
from lab.devkit.inspection import Clock, Inspector, Replay, read_announcement, recorder
from lab.devkit.tcpseg import FIN, Segment, parse, patch, rebuild
from lab.devkit.view import NodeView, config_path
from lab.ftps.grammar import HostPort, format_port_args
from nat.section import Nat
from nat.seqadj import SeqMap

MAP_CHAIN = "ALG-MAP"
# Flood guard: new mappings per second per control connection, after a burst. A real session
# with many small transfers makes one per transfer (the fifty-transfer test does ~50 a second once
# replies are not held by delayed ACKs), so the limit sits above that; a flood costs the kernel
# one rule insert and delete (~20 ms) per mapping, so it must not be unbounded either.
MAP_RATE, MAP_BURST = 100.0, 100.0

Runner = Callable[..., str]     # run(argv, input=None) -> stdout; raises RuntimeError on failure


def run_checked(argv: list[str], input: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, input=input)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


# -- data-connection mappings in the kernel ------------------------------------------------------

@dataclass
class Mapping:
    peer: str
    public_port: int
    host: str
    port: int
    expires: float
    owner: str = ""          # the control connection that announced it

    def rule(self, outside: str) -> list[str]:
        return ["-s", self.peer, "-d", outside, "-p", "tcp", "-m", "tcp", "--dport", str(self.public_port),
                "-j", "DNAT", "--to-destination", f"{self.host}:{self.port}"]

    def key(self, outside: str) -> str:
        """The mapping as an nftables set key: peer . outside address . public port."""
        return f"{self.peer} . {outside} . {self.public_port}"


class MapKernel(Protocol):
    """Where the mappings live in the kernel: install before the announcement leaves, remove when
    used, expired or replaced, and say which are still waiting for their connection."""

    def install(self, m: Mapping, outside: str, lifetime: float) -> None: ...
    def remove(self, m: Mapping, outside: str) -> None: ...
    def waiting(self, outside: str) -> set[int]: ...


#: The mappings' nftables table, in the router's own namespace (setup() creates it): a set of the
#: mappings still waiting for their connection, a map to the inside host, and one rule that DNATs a
#: new connection found in the set and takes it out of the set - single use, in the kernel itself.
MAP_TABLE = "ftlab_alg"


def nft_table(family: str = "ip", table: str = MAP_TABLE) -> list[str]:
    """The commands that make the mappings' table for one family: `ip`, or `ip6` (NAT66: the same
    set, map and rule over IPv6 addresses)."""
    addr, match = ("ipv4_addr", "ip") if family == "ip" else ("ipv6_addr", "ip6")
    key = f"{addr} . {addr} . inet_service"                  # peer . outside address . public port
    tuple_ = f"{match} saddr . {match} daddr . tcp dport"
    return [
        f"add table {family} {table}",
        f"add set {family} {table} waiting {{ type {key}; flags timeout; }}",
        f"add map {family} {table} dest {{ type {key} : {addr} . inet_service; }}",
        f"add chain {family} {table} pre {{ type nat hook prerouting priority dstnat - 1; policy accept; }}",
        f"add rule {family} {table} pre {tuple_} @waiting delete @waiting {{ {tuple_} }} "
        f"dnat {match} to {tuple_} map @dest",
    ]


NFT_TABLE = nft_table("ip")
_WAITING = re.compile(r"([0-9a-f.:]+) \. ([0-9a-f.:]+) \. (\d+)")


class NftMaps:
    """The mappings as elements of MAP_TABLE: added and deleted with one netlink message each from
    this process (lab.devkit.nfsets, ~0.02 ms; an iptables process took 1.5-3 ms, libnftables
    ~0.1-0.4 ms as it reads the table back first), listed through libnftables by the poller. The
    kernel drops a waiting element after lifetime + grace by itself (if this process died); the
    poller's own clock decides expiry before that, so "used" and "expired" stay apart."""

    def __init__(self, nft=None, table: str = MAP_TABLE, grace: float = 1.0, sets=None,
                 family: str = "ip") -> None:
        if nft is None:
            from lab.devkit.nft import Nft
            nft = Nft()
        if sets is None:
            from lab.devkit.nfsets import NFPROTO_IPV4, NFPROTO_IPV6, NfSets
            sets = NfSets(table, NFPROTO_IPV4 if family == "ip" else NFPROTO_IPV6)
        self.nft = nft              # the poller's: listing
        self.sets = sets            # adding and deleting elements
        self.family = family        # ip, or ip6 (NAT66)
        self.table = table
        self.grace = grace
        self.dest: dict[str, Mapping] = {}      # the dest map's keys and whose they are (only we change it)

    def install(self, m: Mapping, outside: str, lifetime: float = 30.0) -> None:
        from lab.devkit.nfsets import Element, concat

        key = m.key(outside)
        if key in self.dest:                      # an older mapping under this key: replace it whole
            self.remove(self.dest[key], outside)
        try:
            packed = concat(m.peer, outside, m.public_port)
            self.sets.add([Element("waiting", packed, timeout_ms=int((lifetime + self.grace) * 1000)),
                           Element("dest", packed, concat(m.host, m.port))])
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"{self.table}: {key}: {exc}") from None
        self.dest[key] = m

    def remove(self, m: Mapping, outside: str) -> None:
        from lab.devkit.nfsets import Element, concat

        key = m.key(outside)
        if self.dest.get(key) is not m:
            return                                # replaced by a newer mapping under the same key
        del self.dest[key]
        packed = concat(m.peer, outside, m.public_port)
        try:
            self.sets.delete([Element("waiting", packed)])
        except OSError:
            pass                                  # used (the kernel took it out) or timed out: gone already
        try:
            self.sets.delete([Element("dest", packed)])
        except OSError as exc:
            raise RuntimeError(f"{self.table}: {key}: {exc}") from None

    def waiting(self, outside: str) -> set[int]:
        listing = self.nft.run(f"list set {self.family} {self.table} waiting")
        return {int(port) for _, dst, port in _WAITING.findall(listing) if dst == outside}


_COUNTED = re.compile(r"--dport (\d+) .*?-c (\d+) \d+")


class IptablesMaps:
    """The mappings as iptables DNAT rules in their own chain, one iptables process per change
    (1.5-3 ms, hundreds of ms on a loaded machine): the ALG's first way, kept as the reference
    that lab.endpoints.algbench measures the in-process way against (FTLAB_ALG_MAPS=iptables)."""

    def __init__(self, run: Runner = run_checked, chain: str = MAP_CHAIN, create: bool = False) -> None:
        self.run = run
        self.chain = chain
        if create:
            run(["iptables", "-t", "nat", "-N", chain])
            run(["iptables", "-t", "nat", "-I", "PREROUTING", "1", "-j", chain])

    def install(self, m: Mapping, outside: str, lifetime: float = 30.0) -> None:
        self.run(["iptables", "-t", "nat", "-I", self.chain, *m.rule(outside)])

    def remove(self, m: Mapping, outside: str) -> None:
        self.run(["iptables", "-t", "nat", "-D", self.chain, *m.rule(outside)])

    def waiting(self, outside: str) -> set[int]:
        listing = self.run(["iptables", "-t", "nat", "-S", self.chain, "-v"])
        return {int(p) for p, pkts in _COUNTED.findall(listing) if int(pkts) == 0}


class Mappings:
    """DNAT mappings for announced data connections: allocated, installed, single-use, expiring."""

    def __init__(self, outside: str, events: EventWriter, lifetime: float = 30.0,
                 kernel: MapKernel | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.outside = outside
        self.events = events
        self.lifetime = lifetime
        self.kernel = kernel if kernel is not None else NftMaps()
        self.clock = clock
        self.active: dict[int, Mapping] = {}
        self.lock = threading.RLock()
        self.retiring: list[Mapping] = []    # replaced mappings whose kernel entries the poller removes

    def allocate(self, preferred: int, owner: str = "") -> int | None:
        """The announced port when it is free, else the next free one (1024..65535). A port held
        by `owner`'s own outstanding mapping counts as free: open() replaces that mapping."""
        port = preferred
        for _ in range(65536):
            held = self.active.get(port)
            if port >= 1024 and (held is None or (owner and held.owner == owner)):
                return port
            port = port + 1 if port < 65535 else 1024
        return None

    def open(self, peer: str, public_port: int, host: str, port: int, owner: str = "") -> Mapping:
        """Install a mapping before the announcement goes out. Like the kernel helper
        (max_expected=1), a control connection has one outstanding mapping, so a flood of 227s
        holds at most one entry per connection: the owner's previous unused mapping is retired.

        Only the installation is on the packet's path; removals are the poller thread's."""
        m = Mapping(peer, public_port, host, port, self.clock() + self.lifetime, owner)
        with self.lock:
            old = [o for o in self.active.values() if owner and o.owner == owner]
            same = next((o for o in old if o.rule(self.outside) == m.rule(self.outside)), None)
            if same is not None:          # the same announcement again: the entry is already there
                same.expires = m.expires
                return same
            started = time.perf_counter()
            self.kernel.install(m, self.outside, self.lifetime)
            took = (time.perf_counter() - started) * 1000
            for o in old:
                self.active.pop(o.public_port, None)
                self.retiring.append(o)
                self._event("expired", o, replaced=True)
            self.active[public_port] = m
        self.events.emit("mapping-open", public=f"{self.outside}:{public_port}", private=f"{host}:{port}",
                         peer=peer, lifetime=self.lifetime, install_ms=round(took, 3))
        return m

    def _delete(self, m: Mapping) -> None:
        try:
            self.kernel.remove(m, self.outside)
        except RuntimeError as exc:
            self.events.emit("error", message=f"removing mapping {m.public_port}: {exc}")

    def _event(self, why: str, m: Mapping, **extra: object) -> None:
        self.events.emit(f"mapping-{why}", public=f"{self.outside}:{m.public_port}",
                         private=f"{m.host}:{m.port}", peer=m.peer, **extra)

    def _remove(self, m: Mapping, why: str) -> None:
        self.active.pop(m.public_port, None)
        self._delete(m)
        self._event(why, m)

    def poll(self) -> None:
        """Retire used mappings (no longer waiting for their connection) and expired ones.

        Runs in its own thread (listing takes time that control packets must not wait for); a
        mapping replaced while the listing ran is left alone."""
        with self.lock:
            retiring, self.retiring = self.retiring, []
            for m in retiring:
                self._delete(m)
            snapshot = dict(self.active)
        if not snapshot:
            return
        waiting = self.kernel.waiting(self.outside)
        now = self.clock()
        with self.lock:
            for port, m in snapshot.items():
                if self.active.get(port) is not m:
                    continue
                if now > m.expires:
                    self._remove(m, "expired")
                elif port not in waiting:
                    self._remove(m, "used")

    def close(self) -> None:
        with self.lock:
            for m in self.retiring:
                self._delete(m)
            self.retiring = []
            for m in list(self.active.values()):
                self._remove(m, "expired")


# -- the rewriting engine (pure but for the Mappings it is given) -------------------------------

@dataclass
class Verdict:
    action: str                 # "accept" | "drop"
    packet: bytes | None = None  # None: forward unchanged


ACCEPT = Verdict("accept")


class AckTranslations:
    """ACK and SACK numbers to put back into packets on their second pass.

    Conntrack's TCP window tracking must see one numbering per direction: it sees each
    direction's bytes as this ALG forwards them (rewritten, in raw PREROUTING), so it must also see
    the acknowledgements of those bytes as their receiver sent them. The translation of an ACK
    back to its sender's own positions therefore happens after conntrack, on a second queue in
    mangle POSTROUTING (queues.ALG_ACKS); no nf_conntrack_tcp_be_liberal is needed. NAT changes
    addresses and ports between the passes, never seq, ack, length or flags: those find the packet.
    """

    KEEP = 2.0           # seconds: a packet reaches its second pass within microseconds
    LIMIT = 8192

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pending: OrderedDict[tuple, tuple[float, int, list | None]] = OrderedDict()

    def expect(self, seq: int, ack: int, length: int, flags: int, new_ack: int, sack: list | None) -> None:
        now = self.clock()
        key = (seq, ack, length, flags)
        self.pending.pop(key, None)
        self.pending[key] = (now, new_ack, sack)
        while self.pending and (len(self.pending) > self.LIMIT or now - next(iter(self.pending.values()))[0] > self.KEEP):
            self.pending.popitem(last=False)

    def take(self, seq: int, ack: int, length: int, flags: int) -> tuple[int, list | None] | None:
        """The translation for this packet; kept a while, as a retransmission carries the same numbers."""
        found = self.pending.get((seq, ack, length, flags))
        return None if found is None else (found[1], found[2])


class AlgEngine:
    """Turns each control segment into what to forward. One per ALG process."""

    def __init__(self, device: str, outside: str, control_ports: list[int], events: EventWriter,
                 mappings: Mappings, drop_first_rewrite: bool = False,
                 clock: Callable[[], float] = time.monotonic, mtu: int = 1500,
                 one_to_one: dict[str, str] | None = None, v6: tuple[str, Mappings] | None = None) -> None:
        self.device = device
        self.one_to_one = dict(one_to_one or {})     # inside host -> its 1:1 public address
        self.v6 = v6                                 # NAT66: (the outside IPv6 address, its mappings)
        self.mtu = mtu
        self.outside = outside
        self.events = events
        self.mappings = mappings
        self.tracker = ControlTracker(control_ports, hold=True, clock=clock)
        self.tracker.ack_offset = self._ack_offset
        self.clock = clock
        self.drop_first_rewrite = drop_first_rewrite    # test hook: lose one rewritten segment
        self.stats = {"packets": 0, "rewrites": 0, "gaps": 0, "test_drops": 0, "refused": 0}
        self.acks = AckTranslations(clock)

    def _ack_offset(self, conn: Conn, direction: str, ack: int) -> int:
        """An acknowledgement counts the other direction's bytes as this ALG forwarded them:
        back to the offsets its sender sent."""
        other = conn.halves[OTHER[direction]]
        maps = conn.device.get("maps")
        offset = other.offset(ack)
        return maps[OTHER[direction]].to_orig(offset) if maps else offset

    def process(self, seg: Segment, from_outside: bool, receipt: Receipt | None = None) -> Verdict:
        self.stats["packets"] += 1
        got = self.tracker.see(seg, receipt)
        if got is None:
            return ACCEPT
        conn, direction, fed = got
        if fed.status == "refused":
            return self._refused(conn, direction, fed, seg)
        if fed.status == "gap":
            # Bytes before this segment never reached us: we cannot know its line boundaries.
            # TCP resends it once the hole is filled.
            self.stats["gaps"] += 1
            return Verdict("drop")
        maps = conn.device.setdefault("maps", {C2S: SeqMap(), S2C: SeqMap()})
        rewrote = False
        for finding in fed.findings:
            rewrote |= self._act(conn, direction, finding, seg, from_outside, maps[direction])
        if rewrote and self.drop_first_rewrite:
            self.drop_first_rewrite = False
            self.stats["test_drops"] += 1
            self.events.emit("drop", conn=str(conn.id), reason="test hook: the first rewritten segment is "
                             "lost once (TCP must resend it)", rule="FTLAB_ALG_DROP_FIRST_REWRITE", proto="tcp",
                             src=seg.src, sport=seg.sport, dst=seg.dst, dport=seg.dport, flags=seg.flag_text())
            return Verdict("drop")
        # A held line released by a segment without its bytes (a FIN) goes out with that segment.
        early = [f for f in fed.findings if f.held and f.end <= fed.start]
        if early:
            return self._forward(conn, direction, early[0].start, seg, maps, early[0].line + seg.payload)
        return self._forward(conn, direction, fed.start, seg, maps)

    def _refused(self, conn: Conn, direction: str, fed: Fed, seg: Segment) -> Verdict:
        """A segment its receiver would not take, or from the wrong side: nothing in it is read,
        rewritten or opened, and it is dropped (one the kernel drops anyway is left to it)."""
        self.stats["refused"] += 1
        self.events.emit("drop", conn=str(conn.id), direction=direction, reason=f"not read: {fed.reason}",
                         rule="control-stream check" + (" (left to the kernel)" if fed.forward else ""),
                         proto="tcp", src=seg.src, sport=seg.sport, dst=seg.dst, dport=seg.dport,
                         flags=seg.flag_text(), forwarded=fed.forward)
        return ACCEPT if fed.forward else Verdict("drop")

    def _forward(self, conn: Conn, direction: str, start: int, seg: Segment, maps: dict,
                 data: bytes | None = None) -> Verdict:
        half, other = conn.halves[direction], conn.halves[OTHER[direction]]
        smap, omap = maps[direction], maps[OTHER[direction]]
        if not smap.units and not omap.units and not half.holding:
            return ACCEPT                     # nothing moved on this connection: the common case
        data = seg.payload if data is None else data
        flags = seg.flags
        if data:
            out_off, payload = smap.segment(start, data, half.held_start)
            # A rewrite must not push a full-size segment past the MTU: send what fits (units stay
            # whole); TCP resends the rest, which then maps like any retransmission.
            headers, limit = len(seg.raw) - len(seg.payload), max(len(seg.raw), self.mtu)
            cut = len(data)
            while payload and headers + len(payload) > limit:
                cut -= headers + len(payload) - limit
                out_off, payload = smap.segment(start, data[:max(cut, 0)], half.held_start)
                flags &= ~FIN
        else:
            out_off, payload = smap.position(start, half.held_start), b""
        seq = half.seq(out_off - (1 if seg.syn else 0))
        if seg.has_ack and other.base is not None and omap.units:
            blocks = seg.sack_blocks()
            ack = other.seq(omap.to_orig(other.offset(seg.ack)))
            sack = [(other.seq(omap.to_orig(other.offset(a))), other.seq(omap.to_orig(other.offset(b))))
                    for a, b in blocks] if blocks else None
            if ack != seg.ack or (sack is not None and sack != blocks):
                self.acks.expect(seq, seg.ack, len(payload), flags, ack, sack)
        if payload == seg.payload:
            if seq == seg.seq:
                return ACCEPT
            return Verdict("accept", patch(seg, seq, seg.ack, None))
        return Verdict("accept", rebuild(seg, seq, seg.ack, None, payload, flags))

    def translate_acks(self, seg: Segment) -> bytes | None:
        """The second pass (mangle POSTROUTING, after conntrack): the packet with its ACK and SACK
        counted in the positions the other side sent; None: nothing to change."""
        found = self.acks.take(seg.seq, seg.ack, len(seg.payload), seg.flags)
        if found is None:
            return None
        ack, sack = found
        return patch(seg, seg.seq, ack, sack)

    # -- findings ---------------------------------------------------------------------------------
    def _act(self, conn: Conn, direction: str, f: Finding, seg: Segment, from_outside: bool,
             smap: SeqMap) -> bool:
        cid = str(conn.id)
        new_line = None
        if f.kind == "tls-start":
            self.events.emit("tls-detected", conn=cid, direction=direction, first_bytes=f.line.hex(" "))
        elif f.kind == "tls-end":
            self.events.emit("ccc", conn=cid, direction=direction)
        elif f.kind in ("malformed", "ignored", "overlong"):
            self.events.emit("ignored", conn=cid, direction=direction,
                             message=f"{f.message}; not rewritten, nothing opened",
                             line=f.line[:120].decode("ascii", "replace").rstrip())
        elif f.kind == "announcement" and not from_outside:
            new_line = self._translate(conn, f, seg)
        if new_line is not None:
            smap.add(f.start, f.end, new_line)
            self.stats["rewrites"] += 1
            return True
        if f.held and f.end > f.start:
            smap.add(f.start, f.end, f.line)   # held back earlier: goes out whole, unchanged
        return False

    def _allowed(self, conn: Conn) -> bool:
        """Token bucket per control connection: installing a mapping costs a kernel call, so a
        flood of announcements with ever new ports is cut to MAP_RATE a second (after a burst)."""
        now = self.clock()
        tokens, last = conn.device.get("bucket", (MAP_BURST, now))
        tokens = min(MAP_BURST, tokens + (now - last) * MAP_RATE)
        allowed = tokens >= 1
        conn.device["bucket"] = (tokens - 1 if allowed else tokens, now)
        return allowed

    def _translate(self, conn: Conn, f: Finding, seg: Segment) -> bytes | None:
        cid = str(conn.id)
        ann = f.ann
        assert ann is not None
        sender, peer = seg.src, seg.dst
        text = f.line.decode("ascii", "replace").rstrip()
        if ann.host is not None and ann.host != sender:
            self.events.emit("ignored", conn=cid, line=text,
                             message=f"{ann.kind} names {ann.host}, not its sender {sender}: "
                                     "not rewritten, nothing opened")
            return None
        public = self.one_to_one.get(sender)
        if public is not None:
            # a host with a 1:1 public address: the NAT already sends every port of it to the
            # host, so its announcement only needs that address (a 229 names none: unchanged)
            line = f.line if ann.kind == "229" else _with(f.line, ann, public, ann.port)
            if line != f.line:
                self.events.emit("rewrite", conn=cid, before=text, after=line.decode("ascii", "replace").rstrip(),
                                 **{"from": f"{sender}:{ann.port}", "to": f"{public}:{ann.port}"}, one_to_one=True)
            return line if line != f.line else None
        outside, mappings = self.outside, self.mappings
        if ":" in sender:
            if self.v6 is None:
                self.events.emit("ignored", conn=cid, line=text, message=f"{ann.kind} from {sender}: this NAT has "
                                 "no IPv6 outside address: not rewritten, nothing opened")
                return None
            outside, mappings = self.v6
        held = mappings.active.get(ann.port)
        repeat = held is not None and held.owner == cid and held.host == sender and held.port == ann.port
        if not repeat and not self._allowed(conn):
            self.events.emit("ignored", conn=cid, line=text, message=f"more than {MAP_RATE} new mappings a "
                             "second on this connection: not rewritten, nothing opened")
            return None
        port = mappings.allocate(ann.port, owner=cid)
        if port is None:
            self.events.emit("error", conn=cid, line=text, message="no free port for the mapping")
            return None
        try:
            mappings.open(peer, port, sender, ann.port, owner=cid)
        except RuntimeError as exc:
            self.events.emit("error", conn=cid, line=text, message=f"mapping not installed: {exc}")
            return None
        line = _with(f.line, ann, outside, port)
        if line == f.line:
            return None
        self.events.emit("rewrite", conn=cid, before=text, after=line.decode("ascii", "replace").rstrip(),
                         **{"from": f"{sender}:{ann.port}", "to": f"{outside}:{port}"})
        return line


def _with(line: bytes, ann, host: str, port: int) -> bytes:
    """The announcement's line naming host:port instead (a 229 names only the port)."""
    s, e = ann.span
    if ann.kind in ("PORT", "227"):
        new = format_port_args(HostPort(host, port)).encode()
    else:
        d = line[s:s + 1].decode("ascii", "replace")
        af = 2 if ":" in host else 1
        new = (f"{d}{af}{d}{host}{d}{port}{d}" if ann.kind == "EPRT" else f"{d * 3}{port}{d}").encode()
    return line[:s] + new + line[e:]


# -- the model (what prediction asks): the engine itself ------------------------------------------

class MemoryMaps:
    """The MapKernel of a model's engine: the mappings kept in memory, none used yet."""

    def __init__(self) -> None:
        self.entries: dict[str, Mapping] = {}

    def install(self, m: Mapping, outside: str, lifetime: float = 30.0) -> None:
        self.entries[m.key(outside)] = m

    def remove(self, m: Mapping, outside: str) -> None:
        if self.entries.get(m.key(outside)) is m:
            del self.entries[m.key(outside)]

    def waiting(self, outside: str) -> set[int]:
        return {m.public_port for m in self.entries.values()}


@dataclass(frozen=True)
class AlgModel(Inspector):
    """The scapy ALG's model (what the path walk asks): what it reads (Inspector), and then the
    runtime itself: `runtime()` is a real AlgEngine with its Mappings in memory and a clock that
    moves only when told; `watch()` feeds it a control connection as real segments (its `line()`
    returns the line as the ALG forwards it: the rewrite, with the port it really allocated);
    `mappings()` are the DNAT mappings it installed. Nothing of what the ALG decides exists twice."""

    def runtime(self, outside: str, control_ports: tuple[int, ...] | list[int],
                one_to_one: dict[str, str] | None = None, outside6: str | None = None,
                lifetime: float = 30.0) -> AlgEngine:
        clock = Clock()
        events = recorder("model", "alg")
        v6 = (outside6, Mappings(outside6, events, lifetime, kernel=MemoryMaps(), clock=clock)) if outside6 else None
        return AlgEngine("model", outside, list(control_ports), events,
                         Mappings(outside, events, lifetime, kernel=MemoryMaps(), clock=clock), clock=clock,
                         one_to_one=one_to_one, v6=v6)

    def watch(self, engine: AlgEngine, forward: tuple, back: tuple | None = None,
              outside: tuple[bool, bool] = (False, False)) -> Replay:
        """The control connection `forward` (src, sport, dst, dport as the client's packets reach
        the ALG; `back` the server's) fed to `engine`; `outside`: whether the client's and the
        server's packets arrive on the NAT's outside interface."""
        client = (str(forward[0]), forward[1])

        def feed(seg: Segment) -> Segment | None:
            verdict = engine.process(seg, outside[0] if (seg.src, seg.sport) == client else outside[1])
            if verdict.action == "drop":
                return None
            return seg if verdict.packet is None else parse(verdict.packet)

        return Replay(feed, forward, back)

    def mappings(self, engine: AlgEngine) -> list[tuple[str, str, int, str, int]]:
        """(peer, public address, public port, host, port) of each mapping waiting for its connection."""
        return [(m.peer, maps.outside, m.public_port, m.host, m.port) for maps in self._every(engine)
                for m in maps.active.values()]

    @staticmethod
    def _every(engine: AlgEngine) -> list[Mappings]:
        return [engine.mappings] + ([engine.v6[1]] if engine.v6 is not None and engine.v6[1] is not None else [])

    # -- at the hooks (lab.devkit.device.HookModel: what the path walk asks) --------------------------
    hooks = (RAW_PREROUTING, NAT_PREROUTING)

    def state_of(self, state: dict, at: At) -> AlgEngine:
        """This router's ALG for the cell, configured as setup() configures the process."""
        engine = state.get("alg")
        if engine is None:
            nat = at.section
            engine = state["alg"] = self.runtime(at.outside[0], at.control_ports,
                                                 one_to_one={str(o.to): str(o.public) for o in nat.one_to_one},
                                                 outside6=at.outside[1])
        return engine

    def at_hook(self, hook: str, flow: Any, state: dict, at: At) -> Decision:
        """nat PREROUTING, the mappings' table (first in the chain): a new connection from the
        mapping's peer to its public address and port is DNATed to the inside host and taken out of
        the waiting set (single use, as the kernel's rule does; the runtime's poll retires it)."""
        engine = state.get("alg")
        if hook != NAT_PREROUTING or engine is None:
            return Decision()
        for maps in self._every(engine):
            for m in list(maps.active.values()):
                if (m.peer, maps.outside, m.public_port) == (str(flow.src), str(flow.dst), flow.dport):
                    assert isinstance(maps.kernel, MemoryMaps)
                    maps.kernel.remove(m, maps.outside)
                    maps.poll()
                    return Decision("translate", "{node}'s ALG mapping sends it on to {target}", to=(m.host, m.port))
        return Decision()

    def at_announcement(self, state: dict, at: At, control: Control, c2s: bool, line: bytes,
                        security: str, first_after_ccc: str) -> Reading:
        """raw PREROUTING: the line through the engine on its control connection (one replay per
        connection): the rewrite it makes, with the port it allocates, and the mapping it installs."""
        name = self.name.removeprefix("the ")
        ok, why = self.reads(security, first_after_ccc)
        if not ok:
            return Reading(line, f"{{node}}'s {name} cannot read it ({why})")
        engine = self.state_of(state, at)
        replay = state.get(("alg", control.forward))
        if replay is None:
            outside = (control.client_if == at.section.outside, control.server_if == at.section.outside)
            replay = state[("alg", control.forward)] = self.watch(engine, control.forward, control.back, outside)
        seen = len(engine.events.log)
        out = replay.line(c2s, line) if replay.open else line
        if out is None:
            return Reading(line, f"{{node}}'s {name} drops it")
        said = engine.events.log[seen:]
        rewrite = next((e for e in said if e["type"] == "rewrite"), None)
        opened = next((e for e in said if e["type"] == "mapping-open"), None)
        ignored = next((e for e in said if e["type"] in ("ignored", "error")), None)
        sender, peer = (control.forward[0], control.forward[2]) if c2s else (control.back[0], control.back[2])
        before, after = read_announcement(line), read_announcement(out)
        new_port = "{port}" if after is None or before is None or after[1] == before[1] else str(after[1])
        if rewrite is not None and rewrite.get("one_to_one"):
            return Reading(out, f"{{node}}'s {name} rewrites it to {after[0]}:{new_port} (1:1 NAT)")
        if opened is not None:
            public = opened["public"].rsplit(":", 1)[0]
            did = f"rewrites it to {public}:{new_port}" if rewrite is not None or (after and after[0]) else "reads it"
            return Reading(out, f"{{node}}'s {name} {did} and maps {public}:{new_port} to {sender}:{{port}} for {peer}")
        if ignored is not None and "not its sender" in str(ignored.get("message")):
            return Reading(out, f"{{node}}'s {name} leaves it alone: it names {before[0] if before else None}, "
                                f"not its sender {sender}")
        if ignored is not None:
            return Reading(out, f"{{node}}'s {name} leaves it alone: {ignored.get('message')}")
        return Reading(out)


# -- setup (pure, called by the engine) ----------------------------------------------------------

def queue_rules(ports: tuple[int, ...], queue: int, table: str, chain: str,
                tool: str = "iptables") -> list[list[str]]:
    """Queue the control channel, both directions, to `queue` (`tool` ip6tables: IPv6's)."""
    spec = ",".join(str(p) for p in ports)
    return [[tool, "-t", table, "-A", chain, "-p", "tcp", "-m", "multiport", f"--{way}", spec,
             "-j", "NFQUEUE", "--queue-num", str(queue)] for way in ("dports", "sports")]


def setup(view: NodeView) -> DeviceSetup:
    nat: Nat = view.section
    outside = view.interface(nat.outside)
    ports = list(view.control_ports)
    six = outside.address6 is not None and outside.address6.version == 6
    rules = [
        *(argv for tool in view.tools for argv in queue_rules(view.control_ports, queues.ALG, "raw", "PREROUTING",
                                                               tool)),
        *(argv for tool in view.tools for argv in queue_rules(view.control_ports, queues.ALG_ACKS, "mangle",
                                                               "POSTROUTING", tool)),
        *(["nft", command] for command in NFT_TABLE),
        *(["nft", command] for command in (nft_table("ip6") if six else [])),
    ]   # mapped data connections are DNATed, which the NAT's own FORWARD rules let through
    return DeviceSetup(
        iptables=rules,
        argv=[sys.executable, "-m", "nat.alg", "--config", str(config_path(view, "alg"))],
        config={"device": view.name, "events": str(view.events), "queue": queues.ALG,
                "ack_queue": queues.ALG_ACKS, "control_ports": ports,
                "outside_interface": outside.name, "outside_address": str(outside.address.ip),
                "lifetime": 30.0, "one_to_one": {str(o.to): str(o.public) for o in nat.one_to_one},
                "outside_address6": str(outside.address6.ip) if six else None},
    )


DEVICE = Device(
    name="alg", section="nat", applies=lambda view: view.section.alg == "scapy", setup=setup,
    program="nat.alg", model=AlgModel("the scapy ALG", rewrites="outside"),
    events=frozenset({"ready", "rewrite", "mapping-open", "mapping-used", "mapping-expired", "tls-detected",
                      "ccc", "ignored", "drop", "error"}),
    features=(features.NFQUEUE, features.KERNEL_NAT),
)


# -- the process -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import socket

    from lab.devkit.nfq import load_config, receipt, serve

    cfg = load_config(argv, "nat.alg")
    events = EventWriter(cfg.get("events"), cfg["device"], "alg")
    # FTLAB_ALG_LIFETIME: a shorter mapping lifetime, so that a test can watch one expire
    lifetime = float(os.environ.get("FTLAB_ALG_LIFETIME") or cfg.get("lifetime", 30.0))
    # FTLAB_ALG_MAPS=iptables: the reference way (an iptables process per mapping), for algbench
    if os.environ.get("FTLAB_ALG_MAPS") == "iptables":
        kernel: MapKernel = IptablesMaps(chain=cfg.get("map_chain", MAP_CHAIN), create=True)
    else:
        kernel = NftMaps(table=cfg.get("map_table", MAP_TABLE))
    mappings = Mappings(cfg["outside_address"], events, lifetime, kernel=kernel)
    # NAT66: IPv6 announcements map through the same kind of table in the ip6 family
    six = cfg.get("outside_address6")
    mappings6 = Mappings(six, events, lifetime, kernel=NftMaps(table=cfg.get("map_table", MAP_TABLE), family="ip6")) \
        if six else None
    engine = AlgEngine(cfg["device"], cfg["outside_address"], cfg["control_ports"], events, mappings,
                       drop_first_rewrite=bool(cfg.get("test_drop_first_rewrite")
                                               or os.environ.get("FTLAB_ALG_DROP_FIRST_REWRITE")),
                       one_to_one=cfg.get("one_to_one"), v6=(six, mappings6) if six else None)
    every = [m for m in (mappings, mappings6) if m is not None]
    outside_index = socket.if_nametoindex(cfg["outside_interface"])

    def on_packet(pkt) -> None:
        try:
            seg = parse(pkt.get_payload())
            verdict = ACCEPT if seg is None else engine.process(seg, pkt.indev == outside_index, receipt(pkt))
        except Exception as exc:   # a bug must not take the router down: forward as is, say so
            events.emit("error", message=f"ALG failed on a packet: {exc!r}")
            pkt.accept()
            return
        if verdict.action == "drop":
            pkt.drop()
            return
        if verdict.packet is not None:
            pkt.set_payload(verdict.packet)
        pkt.accept()

    def on_second_pass(pkt) -> None:
        try:
            seg = parse(pkt.get_payload())
            raw = None if seg is None else engine.translate_acks(seg)
            if raw is not None:
                pkt.set_payload(raw)
        except Exception as exc:   # as above: forward, say so
            events.emit("error", message=f"ALG failed on a packet's acknowledgement: {exc!r}")
        pkt.accept()

    stop = threading.Event()

    def poll_mappings() -> None:
        while not stop.wait(0.02):
            for m in every:
                try:
                    m.poll()
                except RuntimeError as exc:
                    events.emit("error", message=str(exc))

    poller = threading.Thread(target=poll_mappings, name="mappings", daemon=True)
    poller.start()
    try:
        queue = int(cfg.get("queue", queues.ALG))
        serve({queue: on_packet, int(cfg.get("ack_queue", queues.ALG_ACKS)): on_second_pass},
              engine.tracker.expire, period=1.0, on_ready=lambda: events.emit("ready", queue=queue))
    finally:
        stop.set()
        poller.join(2)
        for m in every:
            m.close()
        events.close()
        print(f"nat.alg: {engine.stats}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
