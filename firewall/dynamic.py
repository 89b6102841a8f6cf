"""The dynamic (stateful, inspecting) filter: data connections only through announced pinholes.

    python -m firewall.dynamic --config FILE

Kernel rules (setup()) in the mangle table's PREROUTING, so the filter sees each packet with the
addresses it arrived with (before DNAT; after the ALG's rewrite in raw PREROUTING when a NAT on
the same router also inspects), in a chain DYNFW:

    control packets to 21/990 (and replies on ESTABLISHED control connections) -> NFQUEUE 20:
        this process reads them with lab.devkit.ctrlstream and accepts them; PORT/EPRT from the
        client and 227/229 from the server, in plaintext, naming their sender, open a pinhole
    ESTABLISHED (and RELATED ICMP)                                            -> ACCEPT (kernel)
    anything else NEW                                                         -> NFQUEUE 21:
        this process admits a SYN that matches a pinhole (single use), drops everything else
        and writes a drop event: device, reason, 5-tuple, TCP flags.

Only the first packet of a data connection visits Python: the transfer itself is forwarded by
the kernel as ESTABLISHED. A pinhole is consumed by the first connection that uses it (its SYN
retransmissions still pass) and expires after its lifetime (`pinhole_lifetime`, default 30 s). Design note: the brief
proposed one kernel ACCEPT rule per pinhole with counters polled every 20 ms; admitting the SYN
on queue 21 is exactly single-use (no polling window in which a second connection could slip
through) and costs one queued packet per data connection.

Who is the client is who sent the connection's SYN (lab.devkit.ctrlstream), never a port number: a
client connecting from port 21 or 990 cannot have the server's replies read as its commands. A
control connection whose SYN this process did not see (it started before the filter did) is
let through uninspected and opens nothing.

The device: `firewall:` section with `mode: dynamic`. Queue numbers: lab.devkit.queues. Events:
ready, pinhole-open/-used/-expired, tls-detected, ccc, ignored, drop, error. Kernel features:
NFQUEUE, conntrack. Its model for prediction (DynamicModel): an inspector that reads the first
cleartext line after CCC (lab.devkit.inspection), and then this very DynamicFilter, driven with a
fake clock and fed the control connection as real segments (lab.devkit.inspection.Replay): the
pinholes it opens and the SYNs it admits are the runtime's, single use, lifetime and one outstanding
pinhole per control connection included (tests/unit/test_model_is_runtime.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.devkit import features, queues
from lab.devkit.conntrack import idle_sysctls
from lab.devkit.ctrlstream import C2S, S2C, Conn, ControlTracker, Finding, Receipt
from lab.devkit.device import MANGLE_PREROUTING, At, Control, Decision, Device, DeviceSetup, Reading
from lab.devkit.events import EventWriter
from lab.devkit.inspection import Clock, Inspector, Replay, names_sender, read_announcement, recorder, segment
from lab.devkit.tcpseg import ACK, PSH, SYN, Segment, describe, parse
from lab.devkit.types import Flow
from lab.devkit.view import NodeView, config_path

CONTROL_QUEUE, NEW_QUEUE = queues.DYNAMIC_CONTROL, queues.DYNAMIC_NEW
CHAIN = "DYNFW"
NO_PINHOLE = "no pinhole: not announced on the control channel"
TLS_BLIND = "control channel is TLS: cannot see PORT/PASV"
USED = "pinhole already used by another connection"
NOT_START = "not the start of an admitted connection"
LIFETIME = 30.0          # seconds a pinhole waits for its connection, unless the section says otherwise


@dataclass
class Pinhole:
    src: str
    dst: str
    dport: int
    expires: float
    owner: str
    used_by: int | None = None     # source port of the connection that consumed it


def pinhole_targets(host: Any, sender: Any, toward_peer: Any) -> list | None:
    """The addresses a pinhole opens to for an announcement naming `host` (None: a 229, no
    address), sent by `sender` (as its packets carry it here) whose peer knows it as
    `toward_peer`; None when the announcement names anyone else (it opens nothing). Naming the
    sender's own address opens the peer's view of it too (a kernel NAT helper on this router
    rewrites the line after the filter read it)."""
    if not names_sender(host, sender, toward_peer):
        return None
    dst = host if host is not None else toward_peer
    return list(dict.fromkeys([dst, toward_peer])) if dst == sender else [dst]


@dataclass(frozen=True)
class DynamicModel(Inspector):
    """The dynamic filter's model (what the path walk asks): what it reads (Inspector), and then the
    runtime itself: `runtime()` is a real DynamicFilter (a clock that moves only when told, events
    kept in memory), `watch()` feeds it a control connection as real segments, `admit()` asks it
    about a new connection's SYN. Nothing of what the filter decides exists twice."""

    no_pinhole = NO_PINHOLE          # admit()'s reason for a connection nothing announced

    def runtime(self, control_ports: tuple[int, ...] | list[int], lifetime: float | None = None,
                idle_timeout: int | None = None, late_rewrite: bool = False) -> DynamicFilter:
        return DynamicFilter("model", list(control_ports), recorder("model", "dynamic"),
                             LIFETIME if lifetime is None else lifetime, clock=Clock(), idle_timeout=idle_timeout,
                             late_rewrite=late_rewrite)

    def watch(self, fw: DynamicFilter, forward: tuple, back: tuple | None = None) -> Replay:
        """The control connection `forward` (src, sport, dst, dport as the client's packets reach
        the filter; `back` the server's) fed to `fw`: its `line()` sends an announcement."""
        return Replay(lambda seg: seg if fw.control(seg) else None, forward, back)

    def admit(self, fw: DynamicFilter, src: Any, sport: int, dst: Any, dport: int) -> str | None:
        """None: `fw` admits a new connection's SYN src:sport -> dst:dport; else why it drops it."""
        return fw.admit(segment(str(src), sport, str(dst), dport, 7000, 0, SYN))

    # -- at the hooks (lab.devkit.device.HookModel: what the path walk asks) --------------------------
    hooks = (MANGLE_PREROUTING,)

    def state_of(self, state: dict, at: At) -> DynamicFilter:
        """This router's filter for the cell, configured as setup() configures the process."""
        fw = state.get("dynamic")
        if fw is None:
            section = at.section
            fw = state["dynamic"] = self.runtime(at.control_ports, lifetime=section.pinhole_lifetime,
                                                 idle_timeout=section.idle_timeout, late_rewrite=at.late_rewrite)
        return fw

    def at_hook(self, hook: str, flow: Flow, state: dict, at: At) -> Decision:
        """mangle PREROUTING, chain DYNFW: the control ports go to queue 20 (read, accepted); any
        other new connection's SYN to queue 21, where the runtime admits it through a pinhole."""
        if hook != MANGLE_PREROUTING or flow.dport in at.control_ports:
            return Decision()
        why = self.admit(self.state_of(state, at), flow.src, flow.sport or 32768, flow.dst, flow.dport)
        if why is None:
            return Decision("accept", "{node} (dynamic filter) admits it through its pinhole")
        return Decision("drop", "{node} (dynamic filter) drops it: " + ("no pinhole" if why == NO_PINHOLE else why)
                        + " for {pkt}")

    def forgotten(self, state: dict, at: At, control: Control) -> str | None:
        """The kernel forgot the control connection `control` (its idle timeout): why the filter
        drops the server's next packet on it (the 226), as the runtime says; None: it passes."""
        fw = self.state_of(state, at)
        if state.get(("dynamic", control.forward)) is None:
            state[("dynamic", control.forward)] = self.watch(fw, control.forward, control.back)
        src, sport, dst, dport = control.back
        return fw.admit(segment(str(src), sport, str(dst), dport, 9000, 1000, ACK | PSH, b"226 Transfer complete\r\n"))

    def at_announcement(self, state: dict, at: At, control: Control, c2s: bool, line: bytes,
                        security: str, first_after_ccc: str) -> Reading:
        """The line through the runtime on its control connection (one replay per connection)."""
        ok, why = self.reads(security, first_after_ccc)
        if not ok:
            return Reading(line, f"{{node}} (dynamic filter) cannot read it ({why})")
        fw = self.state_of(state, at)
        replay = state.get(("dynamic", control.forward))
        if replay is None:
            replay = state[("dynamic", control.forward)] = self.watch(fw, control.forward, control.back)
        seen = len(fw.events.log)
        replay.line(c2s, line)
        opened = next((e for e in fw.events.log[seen:] if e["type"] == "pinhole-open"), None)
        if opened is None:
            ann = read_announcement(line)
            sender = control.forward[0] if c2s else control.back[0]
            return Reading(line, f"{{node}} (dynamic filter) opens nothing: it names {ann[0] if ann else None}, "
                                 f"not its sender {sender}")
        return Reading(line, f"{{node}} (dynamic filter) reads it and opens a pinhole {opened['src']} -> "
                             f"{opened['dst']}:{{port}}")


class DynamicFilter:
    """Verdicts for control packets (queue 20) and new connections (queue 21)."""

    def __init__(self, device: str, ports: list[int], events: EventWriter,
                 lifetime: float = LIFETIME, clock: Callable[[], float] = time.monotonic,
                 idle_timeout: int | None = None, late_rewrite: bool = False) -> None:
        self.device = device
        self.events = events
        self.lifetime = lifetime
        self.idle_timeout = idle_timeout
        self.clock = clock
        # A kernel helper on this router rewrites after this filter read the line, and the ACKs
        # it sees count the rewritten bytes: their numbers say nothing here (lab.devkit.ctrlstream).
        self.tracker = ControlTracker(ports, hold=False, clock=clock, ack_numbers=not late_rewrite)
        self.pinholes: dict[tuple[str, str, int], Pinhole] = {}

    # -- queue 20 --------------------------------------------------------------------------------
    def control(self, seg: Segment, receipt: Receipt | None = None) -> bool:
        """Inspect a control packet: True lets it through. Dropped: a segment from the wrong side of
        the router or that its receiver would not take (nothing in it is read; one the kernel drops
        anyway, a TTL of 1, is left to it), and one beyond a hole in the stream (not readable in
        order; TCP resends it)."""
        got = self.tracker.see(seg, receipt)
        if got is not None:
            conn, direction, fed = got
            if fed.status == "refused":
                self.events.emit("drop", conn=str(conn.id), direction=direction, reason=f"not read: {fed.reason}",
                                 rule=f"{CHAIN} NFQUEUE {CONTROL_QUEUE}" + (" (left to the kernel)" if fed.forward
                                                                            else ""),
                                 proto="tcp", src=seg.src, sport=seg.sport, dst=seg.dst, dport=seg.dport,
                                 flags=seg.flag_text(), forwarded=fed.forward)
                return fed.forward
            if fed.status == "gap":
                return False
            if direction == S2C:
                conn.device["server_seen"] = seg.src         # the server as its packets arrive here
                conn.device["client_seen"] = seg.dst         # the client as the server addresses it
            for f in fed.findings:
                self._finding(conn, direction, f, seg)
        return True

    def _finding(self, conn: Conn, direction: str, f: Finding, seg: Segment) -> None:
        cid = str(conn.id)
        if f.kind == "tls-start":
            self.events.emit("tls-detected", conn=cid, direction=direction, first_bytes=f.line.hex(" "))
        elif f.kind == "tls-end":
            self.events.emit("ccc", conn=cid, direction=direction)
        elif f.kind in ("malformed", "ignored"):
            self.events.emit("ignored", conn=cid, direction=direction, message=f"{f.message}; no pinhole",
                             line=f.line[:120].decode("ascii", "replace").rstrip())
        elif f.kind == "announcement":
            self._announcement(conn, direction, f, seg)

    def _announcement(self, conn: Conn, direction: str, f: Finding, seg: Segment) -> None:
        """Open a pinhole for an announcement that names its sender's own address.

        The sender has two addresses here: the one its packets carry, and the one its peer
        addresses it by (they differ when a NAT on this router translates it: the server the
        client dialed, the client's masqueraded address). An announcement naming anything else
        (a third host, this router) opens nothing. The pinhole is for the peer only, to the
        announced address; when the announcement names the sender's own address and its peer
        knows it by another, to that one too: a kernel NAT helper on this router (nf_nat_ftp)
        rewrites the line after this filter read it, and the peer then dials that address."""
        ann = f.ann
        assert ann is not None
        cid = str(conn.id)
        if direction == C2S:       # PORT/EPRT: the server connects to the client
            src = conn.device.get("server_seen", conn.id.server)
            toward_peer = conn.device.get("client_seen", conn.id.client)
        else:                      # 227/229: the client connects to the server
            src, toward_peer = conn.id.client, conn.id.server
        dsts = pinhole_targets(ann.host, seg.src, toward_peer)
        if dsts is None:
            self.events.emit("ignored", conn=cid, direction=direction,
                             line=f.line[:120].decode("ascii", "replace").rstrip(),
                             message=f"{ann.kind} names {ann.host}, not its sender {seg.src}"
                                     + (f" (or {toward_peer})" if toward_peer != seg.src else "") + ": no pinhole")
            return
        self.open(src, dsts, ann.port, cid, line=f.line[:120].decode("ascii", "replace").rstrip())

    def open(self, src: str, dsts: list[str], dport: int, owner: str, line: str = "") -> Pinhole:
        """A single-use pinhole src -> dst:dport (under each of `dsts`, the first the announced one)."""
        # one outstanding pinhole per control connection (a flood of 227s opens one at a time)
        replaced = {id(h): h for h in self.pinholes.values() if h.owner == owner and h.used_by is None}
        self._forget(set(replaced))
        for old in replaced.values():
            self.events.emit("pinhole-expired", src=old.src, dst=old.dst, dport=old.dport, replaced=True)
        dsts = list(dict.fromkeys(dsts))
        hole = Pinhole(src, dsts[0], dport, self.clock() + self.lifetime, owner)
        for dst in dsts:
            self.pinholes[(src, dst, dport)] = hole
        self.events.emit("pinhole-open", src=src, dst=dsts[0], dport=dport, conn=owner, lifetime=self.lifetime,
                         **({"also": dsts[1:]} if dsts[1:] else {}), **({"line": line} if line else {}))
        return hole

    # -- queue 21 --------------------------------------------------------------------------------
    def admit(self, seg: Segment) -> str | None:
        """None: admit this new connection; otherwise the reason it is dropped."""
        hole = self.pinholes.get((seg.src, seg.dst, seg.dport))
        if seg.syn and not seg.has_ack and hole is not None and self.clock() <= hole.expires:
            if hole.used_by is None:
                hole.used_by = seg.sport
                self.events.emit("pinhole-used", src=seg.src, dst=seg.dst, dport=seg.dport, sport=seg.sport)
                return None
            if hole.used_by == seg.sport:
                return None                       # the same connection's SYN, retransmitted
            return USED
        if not seg.syn or seg.has_ack:
            return self.expired(seg) or NOT_START
        if any(c.tls for c in self.tracker.conns.values()
               if {c.id.client, c.id.server} & {seg.src, seg.dst}):
            return TLS_BLIND
        return NO_PINHOLE

    def expired(self, seg: Segment) -> str | None:
        """Why a packet in the middle of a control connection this filter admitted and read is no
        longer part of it (the kernel forgot the connection: it idled longer than the idle timeout),
        naming that connection; None for any other packet."""
        for conn in self.tracker.conns.values():
            cid = conn.id
            servers = {cid.server, conn.device.get("server_seen", cid.server)}
            clients = {cid.client, conn.device.get("client_seen", cid.client)}
            if (seg.src in servers and seg.sport == cid.sport and seg.dst in clients and seg.dport == cid.cport) \
                    or (seg.src in clients and seg.sport == cid.cport and seg.dst in servers and seg.dport == cid.sport):
                idle = f"idle longer than the idle timeout ({self.idle_timeout} s)" if self.idle_timeout \
                    else "idle longer than the kernel's idle timeout"
                return (f"control connection {cid.client}:{cid.cport} -> {cid.server}:{cid.sport} expired: {idle}, "
                        "its state is gone and this packet no longer belongs to an admitted connection")
        return None

    def drop_event(self, seg: Segment, reason: str) -> dict:
        return self.events.emit("drop", reason=reason, rule=f"{CHAIN} NFQUEUE {NEW_QUEUE}", proto="tcp",
                                src=seg.src, sport=seg.sport, dst=seg.dst, dport=seg.dport,
                                flags=seg.flag_text())

    def _forget(self, holes: set[int]) -> None:
        for key in [k for k, h in self.pinholes.items() if id(h) in holes]:
            del self.pinholes[key]

    def expire(self) -> None:
        now = self.clock()
        gone = {id(h): h for h in self.pinholes.values() if now > h.expires}
        self._forget(set(gone))
        for hole in gone.values():
            if hole.used_by is None:
                self.events.emit("pinhole-expired", src=hole.src, dst=hole.dst, dport=hole.dport)
        self.tracker.expire(now)


# -- setup (pure, called by the engine) --------------------------------------------------------------

def rules(ports: tuple[int, ...], tool: str = "iptables") -> list[list[str]]:
    """The chain for one family (`tool` iptables or ip6tables): both hand their packets to the
    same two queues, and the process reads IPv4 and IPv6 alike (lab.devkit.tcpseg)."""
    spec = ",".join(str(p) for p in ports)
    mangle = [tool, "-t", "mangle"]
    icmp = "icmp" if tool == "iptables" else "ipv6-icmp"
    return [
        [*mangle, "-N", CHAIN],
        [*mangle, "-A", "PREROUTING", "!", "-i", "lo", "-j", CHAIN],
        [*mangle, "-A", CHAIN, "-p", "tcp", "-m", "multiport", "--dports", spec,
         "-j", "NFQUEUE", "--queue-num", str(CONTROL_QUEUE)],
        # replies from a control port only on a connection that was admitted (source port 21 is no key)
        [*mangle, "-A", CHAIN, "-p", "tcp", "-m", "multiport", "--sports", spec, "-m", "conntrack",
         "--ctstate", "ESTABLISHED", "-j", "NFQUEUE", "--queue-num", str(CONTROL_QUEUE)],
        [*mangle, "-A", CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"],
        [*mangle, "-A", CHAIN, "-p", icmp, "-m", "conntrack", "--ctstate", "RELATED", "-j", "ACCEPT"],
        # IPv6 does not work without neighbour discovery (which conntrack does not track), and the
        # link's own ICMPv6 (multicast listener reports, from link-local addresses) is no connection
        *([[*mangle, "-A", CHAIN, "-p", icmp, "--icmpv6-type", kind, "-j", "ACCEPT"]
           for kind in ("neighbour-solicitation", "neighbour-advertisement")]
          + [[*mangle, "-A", CHAIN, "-p", icmp, way, "fe80::/10", "-j", "ACCEPT"] for way in ("-s", "-d")]
          + [[*mangle, "-A", CHAIN, "-p", icmp, "-d", "ff02::/16", "-j", "ACCEPT"]]
          if tool == "ip6tables" else []),
        [*mangle, "-A", CHAIN, "-j", "NFQUEUE", "--queue-num", str(NEW_QUEUE)],
    ]


def setup(view: NodeView) -> DeviceSetup:
    fw = view.section
    return DeviceSetup(
        iptables=[argv for tool in view.tools for argv in rules(view.control_ports, tool)],
        sysctls=idle_sysctls(fw.idle_timeout),
        argv=[sys.executable, "-m", "firewall.dynamic", "--config", str(config_path(view, "dynamic"))],
        config={"device": view.name, "events": str(view.events), "control_ports": list(view.control_ports),
                "lifetime": LIFETIME if fw.pinhole_lifetime is None else fw.pinhole_lifetime,
                "idle_timeout": fw.idle_timeout, "late_rewrite": view.late_rewrite},
    )


DEVICE = Device(
    name="dynamic", section="firewall", applies=lambda view: view.section.mode == "dynamic", setup=setup,
    program="firewall.dynamic", model=DynamicModel("the dynamic filter"),
    events=frozenset({"ready", "pinhole-open", "pinhole-used", "pinhole-expired", "tls-detected", "ccc",
                      "ignored", "drop", "error"}),
    features=(features.NFQUEUE, features.CONNTRACK_MARK),
)


# -- the process -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from lab.devkit.nfq import load_config, receipt, serve

    cfg = load_config(argv, "firewall.dynamic")
    events = EventWriter(cfg.get("events"), cfg["device"], "dynamic")
    fw = DynamicFilter(cfg["device"], cfg["control_ports"], events, float(cfg.get("lifetime") or LIFETIME),
                       idle_timeout=cfg.get("idle_timeout"), late_rewrite=bool(cfg.get("late_rewrite")))

    def on_control(pkt) -> None:
        passes = True
        try:
            seg = parse(pkt.get_payload())
            if seg is not None:
                passes = fw.control(seg, receipt(pkt))
        except Exception as exc:   # inspection failed: the control packet still passes
            events.emit("error", message=f"dynamic filter failed on a control packet: {exc!r}")
        if passes:
            pkt.accept()
        else:
            pkt.drop()

    def on_new(pkt) -> None:
        try:
            admit_or_drop(pkt)
        except Exception as exc:   # fail closed, but say so: a packet without a verdict would hang
            events.emit("error", message=f"dynamic filter failed on a new connection: {exc!r}")
            pkt.drop()

    def admit_or_drop(pkt) -> None:
        raw = pkt.get_payload()
        seg = parse(raw)
        if seg is None:
            what = describe(raw)
            events.emit("drop", reason=NO_PINHOLE if what["proto"] != "tcp" else "unreadable TCP packet",
                        rule=f"{CHAIN} NFQUEUE {NEW_QUEUE}", **what)
            pkt.drop()
            return
        reason = fw.admit(seg)
        if reason is None:
            pkt.accept()
        else:
            fw.drop_event(seg, reason)
            pkt.drop()

    try:
        serve({int(cfg.get("control_queue", CONTROL_QUEUE)): on_control,
               int(cfg.get("new_queue", NEW_QUEUE)): on_new}, fw.expire, period=0.1,
              on_ready=lambda: events.emit("ready", queues=[CONTROL_QUEUE, NEW_QUEUE]))
    finally:
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
