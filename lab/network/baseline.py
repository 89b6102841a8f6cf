"""The iperf3 baseline of a picture's data path: what the kernel alone moves, client to server.

    result = measure(topology, workdir, seconds=1, directions=[RETR])
    result.mbps["server→client"], result.up_s

Used by `ftlab baseline` (both ways) and by every matrix network (the RETR direction, to set each
cell's throughput beside it). The picture comes up with its kernel data path only - forwarding,
NAT, port forwards, static filters; no ALG, inspector or dropwatch program: they only see control
ports. `ftlab baseline` uses a port the path's filters admit (lab.network.pathports: the server's
PASSIVEDATAPORTS, else 5201-5300), checks it with one connect first and says in one line, within
seconds, when the path blocks it; where the server's NAT does not forward the port, a DNAT forward
is added for the measurement only (and said so through `progress`). The matrix's throughput phase
takes `phase_port` - the same choice, and when the filters' models admit no port, `baseline_port`
through holes of its own (open_for_measurement), said in the port's `note` - and opens its holes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.ftps.config import ServerConfig
from lab.network import pathports
from lab.network.ready import file_shows, wait_until
from lab.topology.model import Topology

if TYPE_CHECKING:                 # Mininet is imported only inside the sandbox
    from lab.network.net import LabNet

IPERF_DEFAULT_PORT = 5201
CONNECT_TIMEOUT = 3.0             # iperf3's control connection; a blocked path fails within it
SERVER_READY_TIMEOUT = 5.0
#: (label, reverse): iperf3 -R makes the server send, as a RETR does.
STOR = ("client→server", False)
RETR = ("server→client", True)
BOTH_WAYS = (STOR, RETR)


class MeasurementTimeout(LabError):
    """A measurement ran past its time (the throughput phase does not run that one again)."""


@dataclass(frozen=True)
class PhasePort:
    port: int
    how: str                      # why this port, in words
    note: str | None = None       # said in the run's output: the port is not one the path admits

    def to_dict(self) -> dict:
        return {"port": self.port, "how": self.how, "note": self.note}


@dataclass
class Baseline:
    mbps: dict[str, float]        # direction label -> MB/s received
    up_s: float | None            # seconds to bring the network up
    down_s: float | None


def baseline_port(topo: Topology) -> int:
    """A port the picture lets through: the passive range's first port if it has one."""
    passive = ServerConfig.from_dict(topo.ftp.server_statements).PASSIVEDATAPORTS
    return passive[0] if passive else IPERF_DEFAULT_PORT


def phase_port(topo: Topology) -> PhasePort:
    """The port the matrix's throughput phase measures iperf3 on: one the path's filters admit
    (lab.network.pathports.choose: the server's passive range first, else 5201-5300), so that a
    user's ruleset lets it through as it lets the FTP data through; when the models admit none,
    `baseline_port` through the lab's own holes (open_for_measurement), and a note that says so."""
    passive = ServerConfig.from_dict(topo.ftp.server_statements).PASSIVEDATAPORTS
    try:
        port = pathports.choose(topo, data=1, what="iperf3 baseline").data[0]
    except pathports.PathBlocked as exc:
        port = baseline_port(topo)
        return PhasePort(port, f"port {port}, through holes the lab opens for the measurement",
                         f"no port the path's filters admit ({exc}); measured on {port} through the lab's "
                         "own ACCEPT rules ahead of the devices' (a ruleset that drops it elsewhere: no baseline)")
    if passive and passive[0] <= port <= passive[1]:
        return PhasePort(port, f"port {port}, in the server's PASSIVEDATAPORTS {passive[0]}-{passive[1]}, "
                               "which the path admits")
    return PhasePort(port, f"port {port}, which the path's filters admit")


def measurement_port(topo: Topology) -> int:
    """The port `ftlab baseline` measures on: one the path's filters admit (PathBlocked if none)."""
    return pathports.choose(topo, data=1, what="iperf3 baseline").data[0]


def temporary_forward(topo: Topology, port: int) -> tuple[str, list[str]] | None:
    """If the server sits behind a NAT that does not forward `port`, the DNAT rule that will
    (lab.network.pathports.temporary_forwards). Returns (nat node, iptables argv) or None."""
    found = pathports.temporary_forwards(topo, [port])
    return found[0] if found else None


def open_for_measurement(net: LabNet, port: int) -> str | None:
    """Let iperf3 on `port` through the picture's devices while they run (the matrix's throughput
    phase measures beside the FTP cells, on the same network): a forward where the server's NAT
    lacks one, and an ACCEPT for the port both ways ahead of every device's own rules (a dynamic
    filter admits only connections announced on the control channel; iperf3 announces none).
    These are the measurement's own holes; FTP data never uses the port meanwhile (iperf3 holds
    it). Returns the node that got a forward, if any."""
    topo = net.topology
    forward = temporary_forward(topo, port)
    if forward:
        net.run(forward[0], forward[1])
    for node in topo.devices_on_path():
        for table, chain in (("mangle", "PREROUTING"), ("filter", "FORWARD")):
            for way in ("--dport", "--sport"):
                net.run(node.name, ["iptables", "-t", table, "-I", chain, "1", "-p", "tcp", way, str(port),
                                    "-j", "ACCEPT"])
    return forward[0] if forward else None


def measure(topology: Topology, workdir: Path, seconds: int, directions=BOTH_WAYS,
            progress: Callable[[str], None] = lambda message: None) -> Baseline:
    """Bring the picture's kernel data path up in `workdir`, run iperf3 each way asked, tear down."""
    from lab.network.net import LabNet

    port = measurement_port(topology)        # before any network
    with LabNet(topology, workdir=workdir, devices=False) as net:
        progress(f"up in {net.timings['up']:.2f} s")
        forward = temporary_forward(topology, port)
        if forward:
            progress(f"{forward[0]} does not forward port {port}: adding a forward for the measurement")
            net.run(forward[0], forward[1])
        pathports.require(net, topology, [port], "iperf3 baseline")     # a blocked path: one line, seconds
        start_server(net, port)
        mbps = {}
        for label, reverse in directions:
            progress(f"measuring {label} to {topology.ftp.server_address}:{port} for {seconds} s ...")
            mbps[label] = iperf3(net, port, seconds, reverse)
        progress("tearing down ...")
    return Baseline(mbps, net.timings.get("up"), net.timings.get("down"))


def start_server(net: LabNet, port: int) -> subprocess.Popen:
    """iperf3 -s in the server node, once it listens (the lab stops it at teardown)."""
    node = net.topology.ftp.server
    log = net.workdir / f"iperf3-server-{port}.log"
    with open(log, "wb") as out:
        proc = net.popen(node, ["iperf3", "-s", "-p", str(port), "--forceflush"], stdout=out,
                         stderr=subprocess.STDOUT)
    wait_until(file_shows(log, "Server listening"), timeout=SERVER_READY_TIMEOUT,
               what=f"the iperf3 server in {node}", proc=proc, log=log)
    return proc


def iperf3(net: LabNet, port: int, seconds: int, reverse: bool, nbytes: int | None = None,
           timeout: float | None = None) -> float:
    """One iperf3 run from the client to the address it dials; MB/s received. iperf3 takes whole
    seconds (a fraction is cut, and 0 runs forever); `nbytes`: -n instead, a run of that many bytes
    (shorter than a second on a fast path). Past `timeout` (default seconds + 20) the run is
    killed: MeasurementTimeout."""
    if seconds < 1:
        raise LabError(f"iperf3 measures whole seconds, at least 1 (not {seconds})")
    topo = net.topology
    argv = ["iperf3", "-c", str(topo.ftp.server_address), "-p", str(port),
            *(["-n", str(nbytes)] if nbytes else ["-t", str(seconds)]), "-J",
            "--connect-timeout", str(int(CONNECT_TIMEOUT * 1000))]    # a dropped SYN: seconds, not minutes
    if reverse:
        argv.append("-R")
    limit = timeout if timeout is not None else seconds + 20
    try:
        done = net.run(topo.ftp.client, argv, timeout=limit, check=False)
    except LabError as exc:
        if "timed out" in str(exc):
            raise MeasurementTimeout(f"iperf3 gave no result within {limit:g} s") from None
        raise
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise LabError(f"iperf3 gave no result (exit {done.returncode}): {done.stderr.strip()}") from None
    if "error" in result:
        raise LabError(f"iperf3: {result['error']}")
    return result["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
