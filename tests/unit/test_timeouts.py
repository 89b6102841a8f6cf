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


def test_every_filter_and_the_nat_ask_for_the_idle_timeout():
    from lab.devkit.conntrack import ESTABLISHED, forgets

    for name, section in (("static-filter", "firewall"), ("server-nat", "nat")):
        t = topo.load(name)
        node = next(n for n in t.nodes.values() if getattr(n, section) is not None)
        getattr(node, section).idle_timeout = 7
        setups = devices.setups(node, t, TOPOLOGY_DIR / "e.jsonl", programs=False)
        assert [s.sysctls[ESTABLISHED] for _, s in setups if ESTABLISHED in s.sysctls] == ["7"], name
    assert forgets(2, 6) and not forgets(2, 1.5) and not forgets(None, 600)
    assert not forgets(2, 6, keepalive=1) and forgets(2, 6, keepalive=2)      # a probe must come sooner


def test_control_timeout_variants_are_timed_networks_and_predicted():
    from lab.matrix import predict, scenario
    from lab.matrix.plan import RunPlan
    from lab.matrix.runner import plan_groups
    from lab.topology.timing import Timing

    scen = scenario.load()
    cells = scen.variant_cells(["control-timeout", "control-timeout+keepalive"])
    assert {c.topology for c in cells} == {"dynamic-filter-nat"} and len(cells) == 8
    timed = scen.spec(cells[0]).timing
    assert timed == Timing(2, 6) and timed.rate_bits(256 * 1024) == 349525
    [group] = plan_groups(cells, scen)                # the keepalive only restarts the server
    assert group.timing == timed and "idle 2 s, transfer 6 s" in group.label
    plan = RunPlan(TOPOLOGY_DIR, 1, 1.0, False, TOPOLOGY_DIR, TOPOLOGY_DIR, None, (group,))
    assert RunPlan.from_json(plan.to_json()).groups[0].timing == timed
    outcome = {c.variant: predict.predict(scen, c) for c in cells}
    assert outcome["control-timeout"].key == ("fail", "transfer", "fw")
    assert "longer than fw's idle timeout (2 s)" in outcome["control-timeout"].reason
    assert outcome["control-timeout+keepalive"].outcome == "pass"
    base = scenario.Cell("dynamic-filter-nat", "plain", "pasv")
    assert scen.spec(base).timing == Timing() and not scen.spec(base).timing
