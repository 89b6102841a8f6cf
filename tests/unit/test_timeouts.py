"""Idle timeouts and pinhole lifetimes as topology keys: read by the loader, asked of each device
as namespace sysctls and its program's config (tests/net/test_devices.py shows them at work)."""

from __future__ import annotations

import pytest

from lab import TOPOLOGY_DIR
from lab.errors import InputError
from lab.topology import devices
from lab.topology import loader as topo


def test_idle_timeouts_and_pinhole_lifetime_are_device_keys():
    from lab.devkit.conntrack import ESTABLISHED

    base = (TOPOLOGY_DIR / "dynamic-filter-nat.yaml").read_text()
    text = base.replace("firewall: {mode: dynamic, control_ports: [21, 990]}",
                        "firewall: {mode: dynamic, control_ports: [21, 990], idle_timeout: 3, pinhole_lifetime: 4.5}")
    t = topo.loads(text, "dfn.yaml")
    fw = t.nodes["fw"]
    assert (fw.firewall.idle_timeout, fw.firewall.pinhole_lifetime) == (3, 4.5)
    found = {d.name: s for d, s in devices.setups(fw, t, TOPOLOGY_DIR / "e.jsonl")}
    assert found["dynamic"].sysctls[ESTABLISHED] == "3"
    assert found["dynamic"].config["lifetime"] == 4.5 and found["dynamic"].config["idle_timeout"] == 3
    assert ESTABLISHED not in found["nat"].sysctls                     # the NAT section says nothing
    both = text.replace("      masquerade: true\n", "      masquerade: true\n      idle_timeout: 5\n")
    with pytest.raises(InputError, match="share one connection table: give one idle_timeout, not 3 and 5"):
        topo.loads(both, "dfn.yaml")
    for bad, why in (("idle_timeout: 0", "expected whole seconds from 1 to 432000, got 0"),
                     ("idle_timeout: 2.5", "expected whole seconds from 1 to 432000, got 2.5")):
        with pytest.raises(InputError, match=why):
            topo.loads(text.replace("idle_timeout: 3", bad), "dfn.yaml")
    static = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace(
        "      default: drop\n", "      default: drop\n      pinhole_lifetime: 5\n")
    with pytest.raises(InputError, match="only a dynamic firewall opens pinholes"):
        topo.loads(static, "sf.yaml")
