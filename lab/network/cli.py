"""`ftlab shell`, `ftlab baseline`, `ftlab clean`: bring a picture up by hand, measure it, clean up.

shell and baseline re-run themselves in a sandbox (lab.network.sandbox.ensure_sandbox) before they
touch the network, so whatever happens to them the kernel reaps the whole run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from lab.devkit.types import ALG_MODES
from lab.network import baseline
from lab.topology.model import Topology


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", help="bring a topology up and open Mininet's CLI on it (training)")
    p.add_argument("topology", help="a shipped topology name or a YAML file")
    p.add_argument("--alg", choices=ALG_MODES, default=None,
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
                    "for it is added for the measurement only (and said so). See lab/network/baseline.py.")
    p.add_argument("topology", help="a shipped topology name or a YAML file")
    p.add_argument("--seconds", type=whole_seconds, default=3,
                   help="length of each measurement, whole seconds as iperf3 takes them (default 3)")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("clean", help="stop what a killed run left behind (only what its state file names)")
    p.add_argument("--all", action="store_true", help="also stop runs whose ftlab process is still alive")
    p.set_defaults(func=cmd_clean)


def whole_seconds(text: str) -> int:
    """iperf3 -t reads whole seconds, and 0 means "forever": 0.5 would hang the measurement."""
    if not text.isdecimal() or not 1 <= int(text) <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds from 1 to 3600")
    return int(text)


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

def cmd_baseline(args: argparse.Namespace) -> int:
    from lab.network.sandbox import in_sandbox
    from lab.topology.loader import load

    if not in_sandbox():     # a path whose filters drop every port iperf3 could use: said before any network
        baseline.measurement_port(load(args.topology))
    topo = _load_in_sandbox(args.topology)
    workdir = Path(tempfile.mkdtemp(prefix=f"ftlab-baseline-{topo.name}-"))
    progress(f"bringing up {topo.name} (kernel data path, no device programs) ...")
    try:
        result = baseline.measure(topo, workdir, args.seconds, baseline.BOTH_WAYS, progress=progress)
        progress(f"down in {result.down_s:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for label, mbps in result.mbps.items():
        print(f"{label}  {mbps:.0f} MB/s")
    return 0


# -- clean --------------------------------------------------------------------------------------

def cmd_clean(args: argparse.Namespace) -> int:
    from lab.network.sandbox import clean

    done = clean(include_active=args.all)
    for line in done:
        print(line)
    if not done:
        print("nothing to clean")
    return 0
