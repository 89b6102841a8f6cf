"""Prediction asks the devices' own models (lab.topology.devices): the static filter's rule
matching is the one that generates its iptables rules, interfaces included (the path walk asks it
with the interfaces each connection crosses); the inspectors' models say what each can read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.matrix import predict, scenario
from lab.matrix.scenario import Cell
from lab.topology import devices
from lab.topology.loader import load


def static_filter_with(**changes):
    """The static-filter picture with its passive-range and port-20 rules changed."""
    topo = load("static-filter")
    fw = topo.nodes["fw"].firewall
    fw.rules = [replace(r, **changes) if r.comment in ("passive data range", "active-mode data to the client")
                else r for r in fw.rules]
    return topo


def verdicts(topo) -> tuple[str, str]:
    """What the walk predicts for tls/epsv (passive, to the range) and tls/port (active, from port 20)."""
    scen = scenario.load("default")
    return tuple(predict.predict(scen, Cell("static-filter", "tls", d), model=topo).outcome for d in ("epsv", "port"))


def test_shipped_rules_permit_both_data_directions():
    assert verdicts(load("static-filter")) == ("pass", "pass")


def test_rules_bound_to_the_right_interfaces_still_permit():
    # client side in, server side out: the passive range still passes; the server's data comes in on fw-eth1
    assert verdicts(static_filter_with(in_interface="fw-eth0", out_interface="fw-eth1")) == ("pass", "fail")


def test_rules_bound_to_the_wrong_interface_permit_nothing():
    """The kernel matches -i: so does prediction (it used to ignore interfaces)."""
    assert verdicts(static_filter_with(in_interface="fw-eth1")) == ("fail", "pass")


@pytest.mark.parametrize("mode,plain,ccc_data_first,tls", [
    ("scapy", True, True, False), ("kernel", True, False, False), ("off", False, False, False)])
def test_inspector_models_per_alg_mode(mode, plain, ccc_data_first, tls):
    model = devices.nat_inspector(mode)
    assert model.reads("plain")[0] is plain
    assert model.reads("tls-ccc", "data")[0] is ccc_data_first
    assert model.reads("tls-ccc", "other")[0] is plain          # a NOOP first lets even the helper re-sync
    assert model.reads("tls")[0] is tls and model.reads("implicit")[0] is False
    assert devices.model("dynamic").reads("tls-ccc", "data")[0] is True
