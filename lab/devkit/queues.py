"""Every NFQUEUE number the lab uses, in one table: a queue is bound by exactly one program.

A device program gets its number in its config file (written from here by its setup()), so
two devices on one router never share a queue.
"""

from __future__ import annotations

ALG = 10                 # nat.alg: control packets, both directions, raw PREROUTING
ALG_ACKS = 11            # nat.alg: the same packets again in mangle POSTROUTING (ACKs put back, after conntrack)
DYNAMIC_CONTROL = 20     # firewall.dynamic: control packets (inspected, always accepted)
DYNAMIC_NEW = 21         # firewall.dynamic: every other new connection (admitted by a pinhole, or dropped)
DROPWATCH = 30           # firewall.dropwatch: packets the lab's rules drop, marked with the reason
#: Not a queue: the netlink log group (NFLOG) the drop observer also reads. nftables cannot queue
#: on this kernel, so an nft rule's drop logs the packet here first (lab.devkit.observed.log_statement).
DROPWATCH_LOG = 30
PROBE = 39               # lab.network.probe: a throw-away rule that checks the NFQUEUE target exists

QUEUES = {"alg": ALG, "alg-acks": ALG_ACKS, "dynamic-control": DYNAMIC_CONTROL, "dynamic-new": DYNAMIC_NEW,
          "dropwatch": DROPWATCH, "probe": PROBE}
