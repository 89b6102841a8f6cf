"""The iperf3 baseline's pure parts: which port (`ftlab baseline`'s and the throughput phase's), which
temporary forward, how long."""

from __future__ import annotations

import argparse

import pytest

from lab import TOPOLOGY_DIR
from lab.network.baseline import IPERF_DEFAULT_PORT, baseline_port, phase_port, temporary_forward
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


# -- the matrix's throughput phase: a port the path admits, or said which baseline was used ------------

def test_the_phase_measures_iperf3_on_a_port_the_path_admits():
    for name, port in (("static-filter", 60000), ("dynamic-filter-nat", 60000), ("client-nat", 5201)):
        chosen = phase_port(topo.load(name))
        assert chosen.port == port and chosen.note is None
    assert "PASSIVEDATAPORTS 60000-60100" in phase_port(topo.load("static-filter")).how


def test_a_ruleset_that_drops_the_first_passive_port_gets_the_next_one_it_admits(tmp_path):
    # the filter admits 60005-60100 only: the old choice (the range's first port) was dropped there
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("dport: 60000-60100", "dport: 60005-60100")
    path = tmp_path / "narrow.yaml"
    path.write_text(text)
    narrow = topo.load(path)
    assert baseline_port(narrow) == 60000                     # what the phase used before
    chosen = phase_port(narrow)
    assert chosen.port == 60005 and chosen.note is None


def test_a_path_that_admits_no_port_is_measured_through_holes_and_says_so(tmp_path):
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text()
    text = "\n".join(x for x in text.splitlines() if "PASSIVEDATAPORTS" not in x and "server_statements" not in x)
    path = tmp_path / "no-range.yaml"
    path.write_text(text + "\n")
    chosen = phase_port(topo.load(path))
    assert chosen.port == IPERF_DEFAULT_PORT
    assert chosen.note.startswith("no port the path's filters admit (") and "fw drops it" in chosen.note
    assert "lab's own ACCEPT rules" in chosen.note and chosen.to_dict()["port"] == IPERF_DEFAULT_PORT
