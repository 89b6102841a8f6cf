"""Issue 12, item 5: bench and baseline on any topology. The ports a measurement uses are ones the
path's filters admit (their own models), forwarded where the dialled NAT has no forward; a path
that admits too few is one clear line at once (exit 2), before any network or root."""

from __future__ import annotations

import pytest

from lab import TOPOLOGY_DIR
from lab.cli import main
from lab.endpoints.bench import bench_ports, choose_ports
from lab.network import pathports
from lab.network.baseline import measurement_port, temporary_forward
from lab.topology import loader as topo


def without_passive_range(tmp_path):
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("name: static-filter", "name: no-range")
    text = "\n".join(x for x in text.splitlines() if "PASSIVEDATAPORTS" not in x and "server_statements" not in x)
    path = tmp_path / "no-range.yaml"
    path.write_text(text + "\n")
    return path, text


@pytest.mark.parametrize("name, ports", [
    ("static-filter", (60000, 21, (60001, 60010), 990, (60011, 60020))),     # the permitted passive range
    ("static-filter-nat", (60000, 21, (60001, 60010), 990, (60011, 60020))),  # ... and forwarded
    ("server-nat", (5201, 21, (5202, 5211), 990, (5212, 5221))),             # forwarded for the bench
    ("lan", (5201, 21, (5202, 5211), 990, (5212, 5221))),
])
def test_the_bench_takes_ports_the_path_admits(name, ports):
    assert bench_ports(choose_ports(topo.load(name))) == ports


def test_ports_the_dialled_nat_does_not_forward_get_a_forward_for_the_measurement():
    server_nat = topo.load("server-nat")
    chosen = choose_ports(server_nat)
    assert pathports.temporary_forwards(server_nat, chosen.all) == [
        ("nat-s", ["iptables", "-t", "nat", "-I", "PREROUTING", "-d", "203.0.113.1", "-p", "tcp", "--dport",
                   "5201:5221", "-j", "DNAT", "--to-destination", "10.1.1.10"])]
    # 21, 990 and the passive range are forwarded already; a server dialled directly needs none
    assert pathports.temporary_forwards(topo.load("static-filter-nat"), choose_ports(topo.load("static-filter-nat")).all) == []
    assert pathports.temporary_forwards(topo.load("client-nat"), [5201]) == []
    assert temporary_forward(server_nat, 5201)[0] == "nat-s" and temporary_forward(server_nat, 21) is None


def test_a_path_that_admits_no_port_is_one_line_naming_the_filter(tmp_path):
    path, text = without_passive_range(tmp_path)
    with pytest.raises(pathports.PathBlocked) as caught:
        measurement_port(topo.load(path))
    fw_line = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("  fw:"))
    assert str(caught.value) == (
        f"no-range: the path admits 0 of the 1 ports the iperf3 baseline needs: client → 203.0.113.10:5201: "
        f"fw drops it ({path}:{fw_line}: no rule permits it and the default is drop) (the server has no "
        "PASSIVEDATAPORTS; a range the filters permit gives it ports)")
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("command", [["bench", "--size", "1MiB"], ["baseline"]])
def test_bench_and_baseline_refuse_a_blocked_path_at_once(tmp_path, capsys, command):
    path, _ = without_passive_range(tmp_path)
    assert main([command[0], str(path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the path admits" in err and "fw drops it" in err, err


def test_a_rule_the_model_cannot_read_leaves_the_port_to_the_live_check(tmp_path):
    (tmp_path / "fw.rules").write_text(
        "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 21 -j ACCEPT\n"
        "-A FORWARD -p tcp -m length --length 0:1500 -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n")
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text()
    start, end = text.index("      default: drop"), text.index("  server: {kind: host")
    (tmp_path / "t.yaml").write_text(text[:start] + "      iptables_save: fw.rules\n" + text[end:])
    model = topo.load(tmp_path / "t.yaml")
    assert pathports.admits(model, 21) == (True, "")
    ok, why = pathports.admits(model, 60000)
    assert ok is None and "-m length" in why
