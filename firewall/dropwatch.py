"""Observed drops: NFQUEUE 30 drops every packet it gets and says which rule dropped it.

    python -m firewall.dropwatch --config FILE

The static filter, a NAT router (unsolicited inbound) and the internet router (private
destination) do not DROP silently: their rule is `-j MARK --set-mark N` then `-j NFQUEUE
--queue-num 30` (in a per-reason chain). This process drops the packet and writes a drop event
with config["reasons"][str(N)] as the reason, the 5-tuple and the TCP flags. Without this
process the queue drops anyway (fail closed), only unobserved.
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

from lab.topology.model import Node, Topology
from nat.alg import config_path
from nat.device import DeviceSetup
from nat.events import EventWriter
from nat.tcpseg import parse

QUEUE = 30
PROTOS = {1: "icmp", 6: "tcp", 17: "udp"}


def describe(raw: bytes) -> dict:
    """The 5-tuple (and TCP flags) of an IPv4 packet, for a drop event."""
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return {"proto": "non-ipv4"}
    fields: dict = {"proto": PROTOS.get(raw[9], str(raw[9])),
                    "src": socket.inet_ntoa(raw[12:16]), "dst": socket.inet_ntoa(raw[16:20])}
    seg = parse(raw)
    if seg is not None:
        fields.update(sport=seg.sport, dport=seg.dport, flags=seg.flag_text())
    elif raw[9] == 17 and len(raw) >= (raw[0] & 0x0F) * 4 + 4:
        fields["sport"], fields["dport"] = struct.unpack_from("!HH", raw, (raw[0] & 0x0F) * 4)
    return fields


def reason_for(mark: int, reasons: dict) -> tuple[str, str]:
    """(reason, rule) for an nfmark; an unknown mark still yields an honest reason."""
    entry = reasons.get(str(mark))
    if entry is None:
        return f"dropped (mark {mark}: no reason registered)", f"mark {mark}"
    if isinstance(entry, dict):
        return entry.get("reason", f"mark {mark}"), entry.get("rule", f"mark {mark}")
    return str(entry), f"mark {mark}"


def setup(node: Node, topology: Topology, events: Path, reasons: dict[int, str]) -> DeviceSetup:
    conf = config_path(events, node, "dropwatch")
    return DeviceSetup(
        iptables=[],      # the MARK + NFQUEUE 30 rules belong to the rules that drop (network engineer)
        sysctls={},
        argv=[sys.executable, "-m", "firewall.dropwatch", "--config", str(conf)],
        config={"device": node.name, "events": str(events), "queue": QUEUE,
                "reasons": {str(k): v for k, v in reasons.items()}},
    )


def main(argv: list[str] | None = None) -> int:
    from nat.nfq import load_config, serve

    cfg = load_config(argv, "firewall.dropwatch")
    events = EventWriter(cfg.get("events"), cfg["device"], "dropwatch")
    reasons = cfg.get("reasons", {})

    def on_packet(pkt) -> None:
        try:
            reason, rule = reason_for(pkt.get_mark(), reasons)
            events.emit("drop", reason=reason, rule=rule, **describe(pkt.get_payload()))
        finally:
            pkt.drop()

    try:
        serve({int(cfg.get("queue", QUEUE)): on_packet}, None,
              on_ready=lambda: events.emit("ready", queue=int(cfg.get("queue", QUEUE))))
    finally:
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
