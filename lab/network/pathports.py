"""Ports a measurement can use on a network's kernel data path, and a check, within seconds, that
they get through.

The baseline (iperf3) and the bench (iperf3, the lab's server, vsftpd) listen in the server node
and are dialled by the client at the address it dials for FTP - the server's own, or a NAT's in
front of it (the DMZ case). The path between is the kernel's: forwarding, NAT and its forwards,
static and nft filters (no device program runs during a measurement). So before anything is
started:

    ports = choose(topology, controls=2, data=21)     # the ports the filters' models admit
    for node, argv in temporary_forwards(topology, ports.all): net.run(node, argv)
    require(net, topology, ports.all, "benchmark")    # one connect each, in parallel: PathBlocked
                                                      # names the port and the rule within seconds

A port the dialled NAT does not forward gets a DNAT forward for the measurement only (a real
data connection would get its mapping from the ALG, a pinhole or the forwarded range). A filter
is never opened: a port it drops is not used, and a path that admits too few is one clear line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.devkit.types import PortRange, Unreadable
from lab.errors import LabError
from lab.ftps.config import ServerConfig
from lab.network import netcheck
from lab.topology import check
from lab.topology.model import PortForward, Topology

if TYPE_CHECKING:                 # Mininet is imported only inside the sandbox
    from lab.network.net import LabNet

#: Ports tried when the server has no passive range of its own (iperf3's default first).
DEFAULT_POOL = range(5201, 5301)
PROBE_TIMEOUT = 2.0


class PathBlocked(LabError):
    """The network's path does not let the measurement through (the design, not the lab: exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Ports:
    controls: tuple[int, ...]          # control connections of FTP servers (the network's own first)
    data: tuple[int, ...]              # iperf3 and passive data ports

    @property
    def all(self) -> list[int]:
        return list(dict.fromkeys(self.controls + self.data))


def passive_range(topology: Topology) -> list[int]:
    passive = ServerConfig.from_dict(topology.ftp.server_statements).PASSIVEDATAPORTS
    return list(range(passive[0], passive[1] + 1)) if passive else []


def admits(topology: Topology, port: int) -> tuple[bool | None, str]:
    """Does the kernel path take a new connection from the client to the dialled address, `port`,
    to the server (with a temporary forward where the dialled NAT has none)? (yes/no/unknown, why not)."""
    walked = with_forwards(topology, [port])
    try:
        blocked = check.blocked_at(walked, port)
    except Unreadable as exc:
        return None, f"a filter's model cannot tell ({exc})"
    if blocked is None:
        return True, ""
    where = f"{blocked.file}:{blocked.line}" if blocked.line else blocked.file
    return False, f"{blocked.step.node} drops it ({where}: {blocked.why})"


def choose(topology: Topology, controls: int = 0, data: int = 1, what: str = "measurement") -> Ports:
    """`controls` + `data` different ports the path admits (the models'; unknown counts as admitted,
    the live check decides). Control ports prefer the network's own FTP ports; data ports the
    server's passive range, else DEFAULT_POOL. PathBlocked when too few get through."""
    ftp = topology.ftp
    passive = passive_range(topology)
    pool = passive or list(DEFAULT_POOL)
    refused: dict[int, str] = {}

    def take(candidates, count: int, used: set[int]) -> list[int]:
        got = []
        for port in candidates:
            if len(got) == count:
                break
            if port in used or port in refused:
                continue
            ok, why = admits(topology, port)
            if ok is False:
                refused[port] = why
                continue
            got.append(port)
            used.add(port)
        return got

    used: set[int] = set()
    control = take([ftp.control_port, ftp.implicit_port, *pool], controls, used)
    rest = take(pool, data, used)
    if len(control) < controls or len(rest) < data:
        first = min(refused) if refused else None
        why = f": client → {ftp.server_address}:{first}: {refused[first]}" if first is not None else ""
        hint = "" if passive else " (the server has no PASSIVEDATAPORTS; a range the filters permit gives it ports)"
        raise PathBlocked(f"{topology.name}: the path admits {len(control) + len(rest)} of the "
                          f"{controls + data} ports the {what} needs{why}{hint}")
    return Ports(tuple(control), tuple(rest))


def with_forwards(topology: Topology, ports: list[int]) -> Topology:
    """The topology as it is during a measurement: `temporary_forwards` added to the dialled NAT."""
    owner, missing = _unforwarded(topology, ports)
    if not missing:
        return topology
    walked = copy.deepcopy(topology)
    server_ip = topology.address_of(topology.ftp.server)
    for low, high in _ranges(missing):
        walked.nodes[owner].nat.forwards.append(PortForward("tcp", PortRange(low, high), server_ip, PortRange(low, high)))
    return walked


def temporary_forwards(topology: Topology, ports: list[int]) -> list[tuple[str, list[str]]]:
    """The DNAT rules (node, iptables argv) that forward the ports the dialled NAT does not, to the server."""
    owner, missing = _unforwarded(topology, ports)
    server_ip = topology.address_of(topology.ftp.server)
    return [(owner, ["iptables", "-t", "nat", "-I", "PREROUTING", "-d", str(topology.ftp.server_address),
                     "-p", "tcp", "--dport", str(low) if low == high else f"{low}:{high}", "-j", "DNAT",
                     "--to-destination", str(server_ip)]) for low, high in _ranges(missing)]


def _unforwarded(topology: Topology, ports: list[int]) -> tuple[str, list[int]]:
    """(the node that owns the dialled address, the ports it does not forward to the server)."""
    ftp = topology.ftp
    if ftp.server_address == topology.address_of(ftp.server):
        return ftp.server, []
    owner = topology.owner_of(ftp.server_address)
    if owner is None or owner.nat is None:
        raise LabError(f"{topology.name}: nobody forwards the server address {ftp.server_address}")
    if owner.nat.inside_of(ftp.server_address) is not None:
        return owner.name, []            # a 1:1 NAT's public address: every port goes to the server
    forwarded = [f.ports for f in owner.nat.forwards if f.proto == "tcp"]
    return owner.name, [p for p in ports if not any(p in r for r in forwarded)]


def _ranges(ports: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for p in sorted(set(ports)):
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [(low, high) for low, high in out]


def require(net: LabNet, topology: Topology, ports: list[int], what: str = "measurement",
            timeout: float = PROBE_TIMEOUT) -> None:
    """One connect from the client to each port (in parallel) against a listener in the server
    node: PathBlocked naming the first port that gets no answer, within `timeout` seconds."""
    ftp = topology.ftp
    with netcheck.listening(net, ftp.server, ports):
        found = netcheck.connect(net, ftp.client, [(str(ftp.server_address), p) for p in ports], timeout=timeout)
    blocked = [int(r["to"].rsplit(":", 1)[1]) for r in found if not r["ok"]]
    if blocked:
        port = blocked[0]
        _, why = admits(topology, port)
        more = f" (and {len(blocked) - 1} more of its {len(ports)} ports)" if len(blocked) > 1 else ""
        raise PathBlocked(f"{topology.name}: the path blocks the {what}: client → {ftp.server_address}:{port} "
                          f"gets no answer within {timeout:.0f} s{more}" + (f"; {why}" if why else ""))
