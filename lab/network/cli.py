"""`ftlab shell`, `ftlab baseline`, `ftlab clean`: bring a picture up by hand, measure it, clean up.

shell and baseline re-run themselves in a sandbox (lab.network.sandbox.ensure_sandbox) before they
touch the network, so whatever happens to them the kernel reaps the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.topology.model import Topology

if TYPE_CHECKING:                 # Mininet is imported only inside the sandbox
    from lab.network.net import LabNet

IPERF_DEFAULT_PORT = 5201


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", help="bring a topology up and open Mininet's CLI on it (training)")
    p.add_argument("topology", help="a shipped topology name or a YAML file")
    p.add_argument("--alg", choices=["scapy", "kernel", "off"], default=None,
                   help="override the NAT devices' ALG (default: as the topology file says)")
    p.add_argument("--no-devices", action="store_true",
                   help="kernel rules only: start no ALG, inspector or dropwatch program")
    p.add_argument("--pcap", action="store_true", help="capture every interface into the workdir")
    p.add_argument("--workdir", type=Path,
                   help="keep configs, logs, events and captures here (default: a /tmp dir removed on exit)")
    p.set_defaults(func=cmd_shell)

    p = sub.add_parser(
        "baseline", help="iperf3 throughput client->server and server->client on the data path",
        description="Bring the picture up with its kernel data path only (forwarding, NAT, port forwards, "
                    "static filters; no ALG, inspector or dropwatch program: they only see control ports), "
                    "run iperf3 from the client to the address it dials, both ways, print MB/s and tear "
                    "down. The port is the first of the server's PASSIVEDATAPORTS if the picture has a "
                    "range, else 5201; where the server's NAT does not forward that port, a DNAT forward "
                    "for it is added for the measurement only (and said so).")
    p.add_argument("topology", help="a shipped topology name or a YAML file")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each measurement (default 3)")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("clean", help="stop what a killed run left behind (only what its state file names)")
    p.add_argument("--all", action="store_true", help="also stop runs whose ftlab process is still alive")
    p.set_defaults(func=cmd_clean)


def progress(message: str) -> None:
    print(f"ftlab: {message}", file=sys.stderr, flush=True)


def _load_in_sandbox(name: str) -> Topology:
    """The topology, loaded inside a sandbox: this command re-runs itself in one first.

    The file is checked before that too, so a bad one is reported at once (and without root)."""
    from lab.network.sandbox import ensure_sandbox
    from lab.topology.loader import load

    load(name)
    ensure_sandbox()
    return load(name)


# -- shell --------------------------------------------------------------------------------------

def cmd_shell(args: argparse.Namespace) -> int:
    topo = _load_in_sandbox(args.topology)
    from mininet.cli import CLI

    from lab.network.net import LabNet

    class LabCLI(CLI):
        # Node names such as nat-c contain '-': let the command word include it.
        identchars = CLI.identchars + "-"

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"ftlab-{topo.name}-"))
    progress(f"bringing up {topo.name} (workdir {workdir}) ...")
    try:
        with LabNet(topo, alg=args.alg, workdir=workdir, pcap=args.pcap, devices=not args.no_devices) as net:
            progress(f"up in {net.timings['up']:.2f} s; nodes: {', '.join(topo.nodes)}; "
                     f"the client dials {topo.ftp.server_address}; device logs and events in {workdir}. "
                     "Type 'exit' or Ctrl-D to tear down.")
            LabCLI(net.mn)
            progress("tearing down ...")
        progress(f"down in {net.timings['down']:.2f} s")
    finally:
        if args.workdir is None:   # a throw-away dir: keep only what the user asked to keep
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


# -- baseline -----------------------------------------------------------------------------------

def baseline_port(topo: Topology) -> int:
    """A port the picture lets through: the passive range's first port if it has one."""
    spec = topo.ftp.server_statements.get("PASSIVEDATAPORTS", "")
    found = re.findall(r"\d+", spec)
    return int(found[0]) if found else IPERF_DEFAULT_PORT


def temporary_forward(topo: Topology, port: int) -> tuple[str, list[str]] | None:
    """If the server sits behind a NAT that does not forward `port`, the DNAT rule that will.

    Returns (nat node, iptables argv) or None. Only for the measurement: documented in
    `ftlab baseline --help`'s module docstring and printed when used.
    """
    server_ip = topo.address_of(topo.ftp.server)
    if topo.ftp.server_address == server_ip:
        return None
    nat_node = topo.owner_of(topo.ftp.server_address)
    if nat_node is None or nat_node.nat is None:
        raise LabError(f"{topo.name}: nobody owns the server address {topo.ftp.server_address}")
    if any(f.proto == "tcp" and port in f.ports for f in nat_node.nat.forwards):
        return None
    return nat_node.name, ["iptables", "-t", "nat", "-I", "PREROUTING", "-d", str(topo.ftp.server_address),
                           "-p", "tcp", "--dport", str(port), "-j", "DNAT", "--to-destination", str(server_ip)]


def measure(net: LabNet, port: int, seconds: float, reverse: bool) -> float:
    """One iperf3 run from the client to the address it dials; MB/s received."""
    topo = net.topology
    argv = ["iperf3", "-c", str(topo.ftp.server_address), "-p", str(port), "-t", str(seconds), "-J"]
    if reverse:
        argv.append("-R")
    done = net.run(topo.ftp.client, argv, timeout=seconds + 20, check=False)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise LabError(f"iperf3 gave no result (exit {done.returncode}): {done.stderr.strip()}") from None
    if "error" in result:
        raise LabError(f"iperf3: {result['error']}")
    return result["end"]["sum_received"]["bits_per_second"] / 8 / 1e6


def cmd_baseline(args: argparse.Namespace) -> int:
    topo = _load_in_sandbox(args.topology)
    from lab.network.net import LabNet

    port = baseline_port(topo)
    workdir = Path(tempfile.mkdtemp(prefix=f"ftlab-baseline-{topo.name}-"))
    progress(f"bringing up {topo.name} (kernel data path, no device programs) ...")
    try:
        with LabNet(topo, workdir=workdir, devices=False) as net:
            progress(f"up in {net.timings['up']:.2f} s")
            forward = temporary_forward(topo, port)
            if forward:
                progress(f"{forward[0]} does not forward port {port}: adding a forward for the measurement")
                net.run(forward[0], forward[1])
            server = net.popen(topo.ftp.server, ["iperf3", "-s", "-p", str(port), "--forceflush"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            _wait_for(server, "Server listening", 5.0)
            results = {}
            for label, reverse in (("client→server", False), ("server→client", True)):
                progress(f"measuring {label} to {topo.ftp.server_address}:{port} for {args.seconds:g} s ...")
                results[label] = measure(net, port, args.seconds, reverse)
            progress("tearing down ...")
        progress(f"down in {net.timings['down']:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for label, mbps in results.items():
        print(f"{label}  {mbps:.0f} MB/s")
    return 0


def _wait_for(proc: subprocess.Popen, text: str, timeout: float) -> None:
    """Wait until proc's stdout shows text (read raw: a buffered readline would hide lines)."""
    deadline = time.monotonic() + timeout
    seen = b""
    fd = proc.stdout.fileno()
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise LabError(f"iperf3 server did not start: {seen.decode(errors='replace').strip() or 'no output'}")
        seen += chunk


# -- clean --------------------------------------------------------------------------------------

def cmd_clean(args: argparse.Namespace) -> int:
    from lab.network.sandbox import clean

    done = clean(include_active=args.all)
    for line in done:
        print(line)
    if not done:
        print("nothing to clean")
    return 0
