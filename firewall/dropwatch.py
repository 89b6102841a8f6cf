"""The drop observer: NFQUEUE 30 drops every packet it gets and says which rule dropped it.

    python -m firewall.dropwatch --config FILE

The static filter, a NAT router (unsolicited inbound) and the internet router (private
destination) do not DROP silently: their rule is `-j MARK --set-mark N` then `-j NFQUEUE
--queue-num 30` (in a per-reason chain). This process drops the packet and writes a drop event
with config["reasons"][str(N)] as the reason, the 5-tuple and the TCP flags. Without this
process the queue drops anyway (fail closed), only unobserved. An nftables ruleset cannot queue
here: its drops log the packet to netlink log group 30 with the reason's number in the prefix
(lab.devkit.observed.log_statement) and drop it themselves; this process reads that group too.

The device: on every node whose other devices declared observed drops (NodeView.drop_reasons).
Events: ready, drop. Kernel features: NFQUEUE, nft log to a netlink group. No model (it decides nothing: the rules did).
"""

from __future__ import annotations

import sys

from lab.devkit import features, queues
from lab.devkit.device import Device, DeviceSetup
from lab.devkit.events import EventWriter
from lab.devkit.tcpseg import describe
from lab.devkit.view import NodeView, config_path

QUEUE = queues.DROPWATCH
LOG_GROUP = queues.DROPWATCH_LOG


def reason_for(mark: int, reasons: dict) -> tuple[str, str]:
    """(reason, rule) for an nfmark; an unknown mark still yields an honest reason."""
    entry = reasons.get(str(mark))
    if entry is None:
        return f"dropped (mark {mark}: no reason registered)", f"mark {mark}"
    if isinstance(entry, dict):
        return entry.get("reason", f"mark {mark}"), entry.get("rule", f"mark {mark}")
    return str(entry), f"mark {mark}"


def setup(view: NodeView) -> DeviceSetup:
    return DeviceSetup(
        iptables=[],      # the MARK + NFQUEUE 30 rules belong to the rules that drop
        sysctls={},
        argv=[sys.executable, "-m", "firewall.dropwatch", "--config", str(config_path(view, "dropwatch"))],
        config={"device": view.name, "events": str(view.events), "queue": QUEUE, "log_group": LOG_GROUP,
                "reasons": {str(k): v for k, v in view.drop_reasons.items()}},
    )


DEVICE = Device(
    name="dropwatch", section=None, applies=lambda view: bool(view.drop_reasons), setup=setup,
    program="firewall.dropwatch", events=frozenset({"ready", "drop"}),
    features=(features.NFQUEUE, features.NFT_LOG),
)


def main(argv: list[str] | None = None) -> int:
    from lab.devkit.nflog import NflogSocket
    from lab.devkit.nfq import load_config, serve
    from lab.devkit.observed import logged_key

    cfg = load_config(argv, "firewall.dropwatch")
    events = EventWriter(cfg.get("events"), cfg["device"], "dropwatch")
    reasons = cfg.get("reasons", {})

    def on_packet(pkt) -> None:
        try:
            reason, rule = reason_for(pkt.get_mark(), reasons)
            events.emit("drop", reason=reason, rule=rule, **describe(pkt.get_payload()))
        finally:
            pkt.drop()

    log = NflogSocket(int(cfg.get("log_group", LOG_GROUP)))

    def on_logged() -> None:
        # nftables drops: the kernel dropped the packet already; the prefix names the reason
        for packet in log.read():
            key = logged_key(packet.prefix)
            if key is not None:
                reason, rule = reason_for(key, reasons)
                events.emit("drop", reason=reason, rule=rule, **describe(packet.payload))

    try:
        serve({int(cfg.get("queue", QUEUE)): on_packet}, None,
              on_ready=lambda: events.emit("ready", queue=int(cfg.get("queue", QUEUE)), log_group=log.group),
              readers={log.fileno(): on_logged})
    finally:
        log.close()
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
