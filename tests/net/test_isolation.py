"""The lab is closed: while a run is up, no lab node reaches the host's namespace or any address
outside the lab; two runs with the same address plan at once do not see each other.

Nothing here sends a packet anywhere but inside the lab's own namespaces: the attempts start in lab
nodes, each is one bounded TCP connect (1 s), and a capture in the host's namespace proves that not
one of them arrived there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.network.sandbox import call_in_sandbox

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

FTLAB = [sys.executable, "-m", "lab.cli"]
PICTURE = "double-nat"          # the most routers between client and server
DOCUMENTATION = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


# -- inside the sandbox ----------------------------------------------------------------------------------

def in_sandbox_reach_out(name: str, targets: list[list]) -> dict:
    """Bring the picture up with its devices; from every node try each target once (1 s); say what
    each node's namespace holds (links, netns) and what the sandbox's own namespace holds."""
    from lab.network.net import LabNet
    from lab.network.netcheck import connect
    from lab.topology.loader import load

    topology = load(name)
    out: dict = {"sandbox_links": subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                                                 check=True).stdout,
                 "links": {}, "netns": {}, "attempts": {}, "seconds": {}}
    with LabNet(topology, devices=True) as net:
        for node in topology.nodes:
            out["links"][node] = net.run(node, ["ip", "-o", "-d", "link"]).stdout
            out["netns"][node] = os.readlink(f"/proc/{net.pid(node)}/ns/net")
            t0 = time.monotonic()
            out["attempts"][node] = connect(net, node, [tuple(t) for t in targets], timeout=1.0)
            out["seconds"][node] = time.monotonic() - t0
    return out


# -- in the host's namespace -----------------------------------------------------------------------------

def host_addresses() -> list[str]:
    """The IPv4 addresses of the host's own namespace (not loopback)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [m.group(1) for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if not m.group(1).startswith("127.")]


def outside_address(picture_networks: list[ipaddress.IPv4Network], host: list[str]) -> str:
    """A documentation address (RFC 5737) in no network of the picture and not the host's."""
    for net in DOCUMENTATION:
        if not any(net.overlaps(p) for p in picture_networks):
            for candidate in (net[77], net[177]):
                if str(candidate) not in host:
                    return str(candidate)
    raise AssertionError(f"every documentation /24 is in {PICTURE}: pick another picture")


def test_no_lab_node_reaches_the_host_or_outside_the_lab():
    from lab.topology.loader import load

    topology = load(PICTURE)
    networks = [i.address.network for n in topology.nodes.values() for i in n.interfaces]
    host = host_addresses()
    outside = outside_address(networks, host)

    # Listeners in the host's namespace, on its loopback and each of its addresses: one port for all.
    listeners = []
    first = socket.create_server(("127.0.0.1", 0))
    port = first.getsockname()[1]
    listeners.append(first)
    listeners += [socket.create_server((a, port)) for a in host]
    targets = [[a, port] for a in [*host, "127.0.0.1", outside]]
    # A capture in the host's namespace for anything to the outside address or the listeners' port.
    capture = subprocess.Popen(["tcpdump", "-i", "any", "-n", "-p", "-l", "-c", "20",
                                f"host {outside} or tcp port {port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)                      # tcpdump is listening before the first attempt
        out = call_in_sandbox(__file__, "in_sandbox_reach_out", PICTURE, targets, timeout=90)
        time.sleep(0.2)
    finally:
        capture.terminate()
        seen, capture_err = capture.communicate(timeout=10)
        for s in listeners:
            s.setblocking(False)
    assert "listening on any" in capture_err, capture_err
    assert seen.strip() == "", f"lab traffic reached the host's namespace:\n{seen}"
    for s in listeners:
        with pytest.raises(BlockingIOError):
            s.accept()                        # nobody connected to the host
        s.close()

    host_netns = os.readlink("/proc/self/ns/net")
    # The sandbox's own namespace holds nothing but its loopback: no link to the host's.
    assert [line.split(":")[1].strip() for line in out["sandbox_links"].splitlines()] == ["lo"]
    for node, model in topology.nodes.items():
        assert out["netns"][node] != host_netns
        links = {line.split(":")[1].strip().split("@")[0]: line for line in out["links"][node].splitlines()}
        assert set(links) == {"lo"} | {i.name for i in model.interfaces}, f"{node}: {sorted(links)}"
        assert all(" veth " in line for name, line in links.items() if name != "lo"), out["links"][node]
        for attempt in out["attempts"][node]:
            addr = attempt["to"].rsplit(":", 1)[0]
            assert not attempt["ok"], f"{node} reached {attempt['to']}"
            if addr == "127.0.0.1":          # the node's own loopback, not the host's
                assert "refused" in attempt["error"], attempt
            else:
                assert re.search(r"unreachable|No route|timed out", attempt["error"]), attempt
        assert out["seconds"][node] < 8, f"{node}: the attempts were not bounded"
    # The way out is refused where it should be: by a router without a route, not by a lucky timeout.
    assert any("unreachable" in a["error"] or "No route" in a["error"]
               for a in out["attempts"]["client"] if a["to"].startswith(outside)), out["attempts"]["client"]


# -- two matrices at once ---------------------------------------------------------------------------------

MATRIX = [*FTLAB, "matrix", "--topologies", "lan", "client-nat", "--security", "plain", "--data", "pasv", "port",
          "--size", "64KiB", "--quiet", "--throughput", "off"]


def test_two_matrices_with_the_same_address_plan_at_once_are_both_right():
    runs = [subprocess.Popen(MATRIX, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True) for _ in range(2)]
    done = []
    try:
        for proc in runs:
            stdout, stderr = proc.communicate(timeout=100)
            done.append((proc.returncode, stdout, stderr))
    finally:
        for proc in runs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    folders = []
    for _, stdout, stderr in done:
        found = re.search(r"^report: (.+)/index.html$", stdout, re.M)
        assert found, stdout + stderr
        folders.append(Path(found.group(1)))
    try:
        for rc, stdout, stderr in done:
            assert rc == 0, stdout + stderr
        assert folders[0] != folders[1], "two runs wrote one report folder"
        docs = [json.loads((f / "results.json").read_text()) for f in folders]
        assert docs[0]["run_id"] != docs[1]["run_id"]
        want = {f"{t}/plain/{d}" for t in ("lan", "client-nat") for d in ("pasv", "port")}
        for doc in docs:
            assert not doc["lab_errors"]
            assert {s["id"] for s in doc["scenarios"]} == want
            for s in doc["scenarios"]:
                assert s["outcome"] == "pass" and s["matches"], s
                assert s["bytes"] == 64 * 1024 and s["sha256_ok"], s
        # Each run's client-nat cells saw exactly their own ALG work: one rewrite per PORT session.
        for doc in docs:
            port = next(s for s in doc["scenarios"] if s["id"] == "client-nat/plain/port")
            rewrites = [e for e in port["events"] if e.get("type") == "rewrite"]
            assert len(rewrites) == 1, port["events"]
    finally:
        for f in folders:
            if f.is_dir() and f.parent.name == "reports":
                shutil.rmtree(f)
