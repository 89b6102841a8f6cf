"""What the devices ask LabNet to program (pure), and the event file format (E3, E4)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from firewall import dropwatch, dynamic
from lab.topology.loader import load
from nat import alg, kernel_helper
from nat.events import EventWriter, follow, read


def test_alg_setup_queues_control_ports_in_raw_prerouting(tmp_path):
    topo = load("client-nat")
    setup = alg.setup(topo.nodes["nat-c"], topo, tmp_path / "events.jsonl")
    queued = [r for r in setup.iptables if "NFQUEUE" in r]
    assert all(r[:5] == ["iptables", "-t", "raw", "-A", "PREROUTING"] and r[-1] == "10" for r in queued)
    assert {r[r.index("multiport") + 1] for r in queued} == {"--dports", "--sports"}
    assert all("21,990" in r for r in queued)
    assert setup.sysctls == {"net.netfilter.nf_conntrack_tcp_be_liberal": "1"}
    assert setup.argv[1:3] == ["-m", "nat.alg"]
    assert setup.config["outside_address"] == "198.51.100.1" and setup.config["device"] == "nat-c"
    assert Path(setup.argv[setup.argv.index("--config") + 1]).parent == tmp_path


def test_kernel_helper_setup_assigns_the_ftp_helper(tmp_path):
    topo = load("server-nat")
    node = next(n for n in topo.nodes.values() if n.nat)
    setup = kernel_helper.setup(node, topo, tmp_path / "e")
    assert ["iptables", "-t", "raw", "-A", "PREROUTING", "-p", "tcp", "--dport", "21", "-j", "CT",
            "--helper", "ftp"] in setup.iptables
    assert any("RELATED" in r and r[1] == "-I" and r[2] == "FORWARD" for r in setup.iptables)


def test_dynamic_setup_admits_only_through_its_queues(tmp_path):
    topo = load("dynamic-filter")
    setup = dynamic.setup(topo.nodes["fw"], topo, tmp_path / "e")
    chain = [r for r in setup.iptables if "DYNFW" in r and "-A" in r and r[r.index("-A") + 1] == "DYNFW"]
    assert chain[-1][-1] == "21" and "NFQUEUE" in chain[-1]              # everything else new -> queue 21
    sport_rule = next(r for r in chain if "--sports" in r)
    assert "ESTABLISHED" in sport_rule                                  # source port 21 is no key
    assert setup.config == {"device": "fw", "events": str(tmp_path / "e"), "control_ports": [21, 990],
                            "lifetime": 30.0}           # no list of its own addresses to open pinholes to


def test_dropwatch_setup_carries_reasons(tmp_path):
    topo = load("static-filter")
    node = next(n for n in topo.nodes.values() if n.firewall)
    setup = dropwatch.setup(node, topo, tmp_path / "e", {3: "default drop"})
    assert setup.config["reasons"] == {"3": "default drop"} and setup.iptables == []


def test_events_are_whole_json_lines_and_followable(tmp_path):
    path = tmp_path / "events.jsonl"
    got, stop = [], threading.Event()

    def tail():
        for event in follow(path, stop=stop):
            got.append(event)
            if len(got) == 400:
                return

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
    assert len(got) == 400 and len(read(path)) == 400
    assert all(json.loads(line)["program"] == "alg" for line in path.read_text().splitlines())
