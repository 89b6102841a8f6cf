"""Prediction of a three-way (FXP) transfer by walking the path, with the devices' own models.

One client drives two servers (lab/ftps/fxp.py): it asks the passive server P for a port (PASV: the
227 names an address; EPSV: only a port, the client names the address it reached P at) and tells
the active server Q that address with PORT (EPRT). Q connects to it; P must accept the connection.
The walk reuses lab.matrix.pathwalk's steps (`cross`, `announce`):

1. both control connections, client -> P and client -> Q (a drop fails the case at `connect`);
2. protected data without SSCN: both servers would be TLS servers; the client refuses (`data-setup`);
3. P's 227 along P's control path, server -> client: each device that can read it acts on it
   (the scapy ALG rewrites P's private address and maps the port for the client);
4. the PORT/EPRT along Q's control path, client -> Q: it names P, not its sender, so no device
   acts on it; Q's PORTCOMMANDIPADDR NOREDIRECT refuses it when it is not the client's address
   as Q sees it (504, `data-setup`, decided by Q's node, as a two-party server's refusal is);
5. Q's data connection from its port 20 to the announced address, with what the devices learned:
   a drop fails the case at `data-connect`; it must arrive at P on the announced port;
6. P's PASSIVEDATACONN NOREDIRECT closes it when it does not come from the client's address as P
   sees it (425 after ABOR, `data-connect`; no node named: a data connection closed after it was
   made is not a refusal before any, lab.matrix.verdict.refused_by, as for a two-party cell).

The first obstacle decides; the passive port is walked per stretch of ports on which no device's
rules change (pathwalk.stretches), as for the two-party cells.
"""

from __future__ import annotations

import ipaddress

from lab.devkit.types import PortRange
from lab.ftps.config import ServerConfig
from lab.ftps.modes import KERBEROS_MODES
from lab.matrix.pathwalk import (
    EPHEMERAL,
    Learned,
    Net,
    Packet,
    Prediction,
    Stop,
    announce,
    cross,
    port_edges,
    settle,
    stretches,
)
from lab.topology.model import Topology

CLIENT_PORT = 40000          # the client's control source port (any ephemeral one behaves alike)


def walk_fxp(topology: Topology, servers: dict[str, dict], security: str, data: str, passive: str,
             sscn: str | None, alg: str | None = None) -> Prediction:
    """servers: {"src": {"node", "address" (what the client dials), "statements"}, "dst": {...}}.
    passive, sscn: "src" or "dst"."""
    net = Net(topology, alg)
    active = "dst" if passive == "src" else "src"
    if security != "plain" and sscn is None:
        return Prediction("fail", "data-setup", "protected data between two servers needs SSCN: both would be "
                                                "the TLS server of the data connection (RFC 4217 section 7)", None)
    if security in KERBEROS_MODES:
        return Prediction("unknown", None, "cannot predict: a three-way transfer under Kerberos would need both "
                                           "servers to share the client's security context", None)
    cfg = {side: ServerConfig.from_dict(servers[side].get("statements") or {}) for side in ("src", "dst")}
    rng = cfg[passive].PASSIVEDATAPORTS
    prange = EPHEMERAL if rng is None else PortRange(rng[0], rng[1])
    results = []
    for p, count in stretches(prange, port_edges(net)):
        shown = str(p) if count == 1 else f"{p}-{p + count - 1}"
        results.append((_sample(net, servers, cfg, security, data, passive, active, p, shown), count))
    return settle(results, "the passive server picks")


def _control(net: Net, side: str, server: dict):
    ftp = net.topology.ftp
    dial = ipaddress.ip_address(str(server["address"]))
    ctrl = cross(net, ftp.client, Packet(None, dial, CLIENT_PORT, ftp.control_port, shown=("*", str(ftp.control_port))),
                 {})
    if isinstance(ctrl, Stop):
        return Prediction("fail", "connect", f"the control connection to {side} ({dial}): {ctrl.reason}", ctrl.device)
    if ctrl.at != server["node"]:
        return Prediction("fail", "connect", f"the control connection to {dial} arrives at {ctrl.at}, not at "
                                             f"{server['node']}", None)
    return ctrl


def _sample(net: Net, servers: dict, cfg: dict, security: str, data: str, passive: str, active: str,
            p: int, shown: str) -> Prediction:
    ctrls = {}
    for side in ("src", "dst"):
        got = _control(net, side, servers[side])
        if isinstance(got, Prediction):
            return got
        ctrls[side] = got
    learned: dict[str, Learned] = {}
    pc, qc = ctrls[passive], ctrls[active]
    notes = []
    asked = shown
    # 3. the passive server's announcement, server -> client
    if data == "pasv":
        host, port, shown, ann = announce(net, pc.hops, False, pc.last.dst, p, learned, security, "other", shown,
                                       "227")
        notes += [f"{passive}'s 227 announces {pc.last.dst}:{asked}", *ann]
        target = host
    else:
        _, port, shown, ann = announce(net, pc.hops, False, None, p, learned, security, "other", shown, "229")
        notes += [f"{passive}'s 229 announces port {asked}; the client names the address it reached {passive} at, "
                  f"{pc.first.dst}", *ann]
        target = pc.first.dst
    # 4. the PORT/EPRT to the active server, client -> server (it names P, not its sender)
    verb = "PORT" if data == "pasv" else "EPRT"
    got, port, shown, ann = announce(net, qc.hops, True, target, port, learned, security, "other", shown, verb)
    notes += [f"the client's {verb} tells {active} {target}:{shown}", *ann]
    if cfg[active].PORTCOMMANDIPADDR == "NOREDIRECT" and got != qc.last.src:
        return Prediction("fail", "data-setup", "; ".join(
            [*notes, f"{active} receives {got}, not the client's address {qc.last.src}: its PORTCOMMANDIPADDR "
                     f"NOREDIRECT refuses the {verb} (504)"]), servers[active]["node"])   # its refusal decides
    # 5. the active server's data connection to the passive one
    sport = net.topology.ftp.control_port - 1
    conn = cross(net, servers[active]["node"], Packet(qc.last.dst, got, sport, port, shown=(str(sport), shown)),
                 learned)
    if isinstance(conn, Stop):
        return Prediction("fail", "data-connect", "; ".join([*notes, f"{active} connects to {got}:{shown}: {conn.reason}"]),
                          conn.device)
    notes += conn.notes
    if conn.at != servers[passive]["node"] or conn.last.dport != p:
        return Prediction("fail", "data-connect", "; ".join(
            [*notes, f"{active}'s connection reaches {conn.at} at {conn.last.target}, where nothing listens for it"]), None)
    # 6. the passive server's check of where it comes from
    if cfg[passive].PASSIVEDATACONN == "NOREDIRECT" and conn.last.src != pc.last.src:
        return Prediction("fail", "data-connect", "; ".join(
            [*notes, f"the data connection arrives at {passive} from {conn.last.src}, not from the client's "
                     f"{pc.last.src}: its PASSIVEDATACONN NOREDIRECT closes it (425)"]), None)
    return Prediction("pass", None, "; ".join([*notes, f"{active} connects to {passive} at {conn.last.target}"]))
