"""What the devices ask the engine to program (pure), the registry the engine finds them in,
and the event file format (E3, E4)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lab.devkit import queues
from lab.devkit.events import TYPES, EventWriter
from lab.devkit.types import ALG_MODES
from lab.matrix.jsonl import JsonLines, read_all
from lab.topology import devices
from lab.topology.loader import load, names


def setups_of(name: str, node: str, tmp_path, **kw) -> dict:
    topo = load(name)
    return {d.name: s for d, s in devices.setups(topo.nodes[node], topo, tmp_path / "events.jsonl", **kw)}


def test_alg_setup_queues_control_ports_in_raw_prerouting(tmp_path):
    setup = setups_of("client-nat", "nat-c", tmp_path)["alg"]
    queued = [r for r in setup.iptables if "NFQUEUE" in r and r[-1] == "10"]
    # both families: client-nat is dual stack (NAT66 with the same ALG)
    assert all(r[0] in ("iptables", "ip6tables") and r[1:5] == ["-t", "raw", "-A", "PREROUTING"] for r in queued)
    assert {r[0] for r in queued} == {"iptables", "ip6tables"}
    assert {r[r.index("multiport") + 1] for r in queued} == {"--dports", "--sports"}
    assert all("21,990" in r for r in queued)
    # the second pass, after conntrack, puts ACKs back; conntrack's window tracking stays strict
    second = [r for r in setup.iptables if "NFQUEUE" in r and r[-1] == "11"]
    assert len(second) == 4 and all(r[1:5] == ["-t", "mangle", "-A", "POSTROUTING"] for r in second)
    assert "net.netfilter.nf_conntrack_tcp_be_liberal" not in setup.sysctls
    assert setup.argv[1:3] == ["-m", "nat.alg"]
    assert setup.config["outside_address"] == "198.51.100.1" and setup.config["device"] == "nat-c"
    assert Path(setup.argv[setup.argv.index("--config") + 1]).parent == tmp_path


def test_kernel_helper_setup_assigns_the_ftp_helper(tmp_path):
    setup = setups_of("server-nat", "nat-s", tmp_path, alg_mode="kernel")["kernel-helper"]
    assert ["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "21", "-j", "CT",
            "--helper", "ftp"] in setup.iptables
    assert any("RELATED" in r and r[1] == "-I" and r[2] == "FORWARD" for r in setup.iptables)


def test_dynamic_setup_admits_only_through_its_queues(tmp_path):
    setup = setups_of("dynamic-filter", "fw", tmp_path)["dynamic"]
    chain = [r for r in setup.iptables if "DYNFW" in r and "-A" in r and r[r.index("-A") + 1] == "DYNFW"]
    assert chain[-1][-1] == "21" and "NFQUEUE" in chain[-1]              # everything else new -> queue 21
    sport_rule = next(r for r in chain if "--sports" in r)
    assert "ESTABLISHED" in sport_rule                                  # source port 21 is no key
    assert setup.config == {"device": "fw", "events": str(tmp_path / "events.jsonl"), "control_ports": [21, 990],
                            "lifetime": 30.0, "idle_timeout": None,   # no list of its own addresses to open pinholes to
                            "late_rewrite": False}                    # no kernel helper on fw
    late = setups_of("dynamic-filter-nat", "fw", tmp_path, alg_mode="kernel")["dynamic"]
    assert late.config["late_rewrite"] is True and not late.sysctls.get("net.netfilter.nf_conntrack_tcp_be_liberal")


def test_dropwatch_gets_every_drop_reason_of_the_node(tmp_path):
    got = setups_of("static-filter-nat", "fw", tmp_path)
    assert list(got) == ["nat", "static", "dropwatch"]             # alg: off
    declared = {**got["nat"].reasons, **got["static"].reasons}
    assert {int(k): v for k, v in got["dropwatch"].config["reasons"].items()} == declared
    assert got["dropwatch"].iptables == [] and sorted(declared) == [1, 3, 5]    # unsolicited, default, no hairpin


@pytest.mark.parametrize("alg_mode,expected", [(None, ["nat", "alg", "dropwatch"]), ("scapy", ["nat", "alg", "dropwatch"]),
                                               ("kernel", ["nat", "kernel-helper", "dropwatch"]),
                                               ("off", ["nat", "dropwatch"])])
def test_the_alg_mode_picks_the_inspector(tmp_path, alg_mode, expected):
    assert list(setups_of("server-nat", "nat-s", tmp_path, alg_mode=alg_mode)) == expected


def test_without_programs_only_kernel_rules(tmp_path):
    assert list(setups_of("dynamic-filter-nat", "fw", tmp_path)) == ["nat", "alg", "dynamic", "dropwatch"]
    assert list(setups_of("dynamic-filter-nat", "fw", tmp_path, programs=False)) == ["nat"]


def test_every_picture_sets_up_with_distinct_drop_marks(tmp_path):
    for name in names():
        topo = load(name)
        for node in topo.nodes.values():
            devices.setups(node, topo, tmp_path / "e")     # a mark used twice raises


def test_one_inspector_per_alg_mode_and_every_device_named_once():
    assert tuple(devices.INSPECTORS) == ALG_MODES
    assert len({d.name for d in devices.DEVICES}) == len(devices.DEVICES)
    assert all(d.events <= TYPES for d in devices.DEVICES)


def test_queue_numbers_are_distinct_and_used():
    assert len(set(queues.QUEUES.values())) == len(queues.QUEUES)
    feats = devices.kernel_features()
    assert len(feats) == len(set(feats)) and {f.name for f in feats} >= {"NFQUEUE target", "kernel NAT (MASQUERADE, DNAT)"}


def test_events_are_whole_json_lines_while_four_writers_append(tmp_path):
    path = tmp_path / "events.jsonl"
    got, stop = [], threading.Event()

    def tail():
        lines = JsonLines(path, from_start=True)
        while len(got) < 400 and not stop.wait(0.01):
            got.extend(lines.read())

    t = threading.Thread(target=tail)
    t.start()
    writers = [EventWriter(path, f"dev{i}", "alg") for i in range(4)]
    threads = [threading.Thread(target=lambda w=w: [w.emit("rewrite", before="x" * 500, n=n) for n in range(100)])
               for w in writers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.join(5)
    stop.set()
    assert len(got) == 400 and len(read_all(path)) == 400
    assert all(json.loads(line)["program"] == "alg" for line in path.read_text().splitlines())
