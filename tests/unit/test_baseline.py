"""The iperf3 baseline's pure parts: which port, which temporary forward, how long."""

from __future__ import annotations

import argparse

import pytest

from lab.network.baseline import IPERF_DEFAULT_PORT, baseline_port, temporary_forward
from lab.network.cli import whole_seconds
from lab.topology import loader as topo


def test_port_is_the_passive_range_or_iperf3s():
    assert baseline_port(topo.load("static-filter")) == 60000      # PASSIVEDATAPORTS (60000,60100)
    assert baseline_port(topo.load("client-nat")) == IPERF_DEFAULT_PORT


def test_a_forward_only_where_the_servers_nat_lacks_one():
    assert temporary_forward(topo.load("lan"), 5201) is None                  # the server's own address
    node, argv = temporary_forward(topo.load("server-nat"), 5201)
    assert node == "nat-s" and argv[:5] == ["iptables", "-t", "nat", "-I", "PREROUTING"]
    assert argv[argv.index("--dport") + 1] == "5201" and argv[-2:] == ["--to-destination", "10.1.1.10"]
    assert temporary_forward(topo.load("static-filter-nat"), 60000) is None   # the range is forwarded


def test_seconds_are_whole_as_iperf3_takes_them():
    assert whole_seconds("3") == 3
    for bad in ("0.5", "0", "1.5", "-1", "3601", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            whole_seconds(bad)
