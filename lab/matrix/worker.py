"""Running the cells of one network inside a sandbox: `python -m lab.matrix.worker PLAN INDEX`.

One group = one picture brought up once with one ALG mode. The worker brings the picture up with
its devices, starts the FTP server in the server node (restarted only when a cell needs other
server statements) and the client agent in the client node (lab.matrix.agent: `ftlab client`
cell after cell in one process; curl and lftp run as processes), and runs the cells one after
the other. While a client runs, the devices' event file is watched: the first drop of a new
connection of this cell decides it, and the client's wait ends at once (the agent's abort; curl
and lftp are killed after PEER_DROP_GRACE), so a failing cell ends within milliseconds of its
drop. Before and after each cell the lab's own programs are checked: a dead FTP server, client
agent or device program, or a server that no longer listens, makes the cell a lab error (a
refused connection to a dead server says nothing about the network). Each cell's result is
appended as one JSON line to the group's cells.jsonl, which the parent (lab.matrix.runner) reads
for its progress bar. Then, with --throughput, the network waits up and idle for its turn and
measures each data-path class with a passing cell beside iperf3 (lab.matrix.speed). What to run
comes from the run plan (lab.matrix.plan).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from lab.devkit.events import describe_drop
from lab.endpoints.launch import client_argv as peer_argv
from lab.endpoints.launch import client_result
from lab.errors import LabError
from lab.ftps.modes import KERBEROS_MODES
from lab.matrix import kerberos, predict, scenario, servers, speed
from lab.matrix.agent import Agent
from lab.matrix.ends import client_statements
from lab.matrix.jsonl import JsonLines
from lab.matrix.plan import GroupPlan, RunPlan
from lab.matrix.servers import DATA_FILE, ServerRun, ftpdata_text
from lab.matrix.verdict import Observation, Verdict, decides_cell, verdict
from lab.network import baseline, pathports
from lab.network.ready import log_tail
from lab.report import results
from lab.topology import loader as topo
from lab.topology import override, timing

PEER_DROP_GRACE = 0.25    # after a decisive drop: let curl/lftp print what they saw, then kill them
AGENT_ABORT_WAIT = 2.0    # the client agent answers an abort in milliseconds; after this it is replaced
POLL = 0.01               # how often the device events are read while a client runs


def payload(path: Path, size: int) -> str:
    """A deterministic, incompressible file of `size` bytes (same bytes every run); its SHA-256."""
    import hashlib
    import random

    h = hashlib.sha256()
    rng = random.Random(20131201)          # the slides' date: any fixed seed will do
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = rng.randbytes(min(left, 1 << 20))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


# -- what the devices saw --------------------------------------------------------------------------

def firewall_saw(events: list[dict]) -> list[dict]:
    """Per inspecting device: what it could read of the control channel (from its events)."""
    saw = []
    for e in events:
        dev, t = e.get("device", "?"), e.get("type")
        if t == "rewrite":
            saw.append({"device": dev, "kind": "cleartext",
                        "text": f"{e.get('before', '')!s} -> rewritten to {e.get('after', '')!s}"})
        elif t == "pinhole-open":
            saw.append({"device": dev, "kind": "cleartext",
                        "text": f"read the data-connection setup; pinhole {e.get('src', '*')} -> "
                                f"{e.get('dst', '?')}:{e.get('dport', '?')}" + (f" ({e['line']})" if e.get("line") else "")})
        elif t == "mapping-open":
            saw.append({"device": dev, "kind": "cleartext",
                        "text": f"mapping {e.get('public', '?')} -> {e.get('private', '?')}"})
        elif t == "tls-detected":
            first = str(e.get("first_bytes", ""))[:23]
            way = f" ({e['direction']})" if e.get("direction") else ""
            saw.append({"device": dev, "kind": "ciphertext",
                        "text": f"TLS on {e.get('conn', 'the control connection')}{way}"
                                + (f": {first} ..." if first else "") + " - nothing readable"})
        elif t == "ccc":
            way = f" ({e['direction']})" if e.get("direction") else ""
            saw.append({"device": dev, "kind": "cleartext",
                        "text": f"CCC on {e.get('conn', '?')}{way}: the control channel is readable again"})
        elif t == "ignored":
            saw.append({"device": dev, "kind": "cleartext",
                        "text": f"ignored: {e.get('line') or e.get('message', '')}"})
        elif t == "drop":
            saw.append({"device": dev, "kind": "drop", "text": describe_drop(e)})
    # Retransmitted SYNs and both directions of a TLS connection repeat an item: say how often.
    counted: dict[tuple, int] = {}
    for item in saw:
        key = (item["device"], item["kind"], item["text"])
        counted[key] = counted.get(key, 0) + 1
    return [{"device": d, "kind": k, "text": t + (f" (x{n})" if n > 1 else "")} for (d, k, t), n in counted.items()]


# -- one group ---------------------------------------------------------------------------------------

HEARTBEAT_STALE = 10.0     # seconds without the runner touching its heartbeat: the runner is gone


class RunnerGone(Exception):
    """The runner that started this worker died (kill -9): stop and tear the network down."""


def check_runner(heartbeat: Path | None) -> None:
    if heartbeat is None:
        return
    try:
        age = time.time() - heartbeat.stat().st_mtime
    except FileNotFoundError:
        age = HEARTBEAT_STALE + 1
    if age > HEARTBEAT_STALE:
        raise RunnerGone(f"the matrix runner stopped touching {heartbeat} {age:.0f} s ago")


@dataclass
class Group:
    """One group of the plan as this worker runs it."""
    plan: RunPlan
    index: int
    seen_flows: set = field(default_factory=set)    # drops of earlier cells: (src, sport, dst, dport)
    agent: Agent | None = None                       # the built-in client, kept for every cell

    def client_agent(self, net, topology) -> Agent:
        """The client agent in the client node, (re)started when there is none or it was stopped."""
        if self.agent is None or self.agent.exited():
            self.agent = Agent.start(lambda argv, **kw: net.popen(topology.ftp.client, argv, **kw),
                                     topology.ftp.client)
        return self.agent

    @property
    def group_plan(self) -> GroupPlan:
        return self.plan.groups[self.index]

    @property
    def workdir(self) -> Path:
        return self.plan.group_dir(self.index)


def _flow(e: dict) -> tuple:
    return (e.get("src"), e.get("sport"), e.get("dst"), e.get("dport"))


def cell_events(events: list[dict], seen_flows: set) -> list[dict]:
    """The events of one cell, read while it ran: a drop that an earlier cell already caused (a
    retransmitted SYN) is not this cell's. Adds this cell's dropped flows to seen_flows."""
    fresh = [e for e in events if not (e.get("type") == "drop" and _flow(e) in seen_flows)]
    seen_flows.update(_flow(e) for e in events if e.get("type") == "drop")
    return fresh


def lab_fault(net, server: ServerRun, agent: Agent | None = None) -> str | None:
    """The lab's own program that died, if any: the FTP server, a device program, a capture.

    A cell that runs without one of them says nothing about the network (a client's "connection
    refused" from a dead server is not a verdict), so the cell is a lab error."""
    if why := server.exited():
        return why
    if agent is not None and not agent.stopped and (why := agent.exited()):
        return why
    for p in net.programs:
        if p.proc.poll() is not None:
            last = log_tail(p.stderr, 1)
            return f"the device program {p.name} in {p.node} exited with code {p.proc.returncode}" \
                   + (f": {last}" if last else "")
    return None


# -- one cell ----------------------------------------------------------------------------------------

@dataclass
class ClientRun:
    """How a cell's client process ended, and the device events meanwhile."""
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    ended: float                       # wall clock, for the pcaps
    killed_on_drop: bool
    timed_out: bool
    events: list[dict]
    conns: list[dict] = field(default_factory=list)    # the client's TCP connections (the agent's record)


def dial_address(topology, spec: scenario.CellSpec):
    """The address the cell's client dials: the picture's server_address, or its IPv6 one (+v6)."""
    return topology.server_address_of(spec.ip_version or topology.ftp.server_address.version)


def client_argv(topology, cell: scenario.Cell, spec: scenario.CellSpec, g: Group, server: ServerRun,
                out: Path) -> list[str]:
    """The command line of the cell's client: curl or lftp, or the arguments of `ftlab client`
    (which the client agent runs, lab.matrix.agent)."""
    implicit = cell.security.startswith("implicit")
    port = topology.ftp.implicit_port if implicit else topology.ftp.control_port
    pki = g.plan.pki
    dial = dial_address(topology, spec)
    if spec.client != "builtin":
        return peer_argv(spec.client, cell.security, cell.data, str(dial), port,
                         DATA_FILE, server.user, server.password, pki / "ca.pem", out, min(15.0, g.plan.timeout))
    cfile = out.with_suffix(".client.ftpdata")
    cfile.write_text(ftpdata_text(client_statements(topology, spec)))
    host = f"[{dial}]" if dial.version == 6 else str(dial)
    url = f"ftp://{server.user}@{host}:{port}/{DATA_FILE}"
    return [url, "--security", cell.security, "--data", cell.data, "--ftpdata", str(cfile),
            "--ca", str(pki / "ca.pem"), "--password", server.password,
            "--timeout", str(min(8.0, g.plan.timeout)), "--json", "get", "-o", str(out)]


@dataclass
class DropWatch:
    """The device events of the running cell; `decided` once a device dropped a packet of this
    cell after which nothing gets through (verdict.decides_cell: a new connection's SYN, or a
    packet of the control connection, e.g. the 226 of one a filter forgot)."""
    events: JsonLines
    g: Group
    seen: list[dict] = field(default_factory=list)
    drop_at: float | None = None
    control_ports: tuple[int, ...] = (21, 990)

    def poll(self) -> bool:
        for e in self.events.read():
            self.seen.append(e)
            if decides_cell(e, self.control_ports) and self.drop_at is None \
                    and _flow(e) not in self.g.seen_flows:
                self.drop_at = time.monotonic()
        return self.drop_at is not None


def watch_agent(agent: Agent, argv: list[str], watch: DropWatch, g: Group) -> ClientRun:
    """Run one cell in the client agent while following the device events: the drop that decides
    the cell ends the client's wait at once (the agent's abort), the plan's timeout ends it anyway."""
    t0 = time.monotonic()
    agent.send({"cell": argv})
    reply = None
    aborted_at = None
    killed_on_drop = timed_out = False
    while True:
        reply = agent.reply(POLL)
        if reply is not None or agent.exited():
            break
        now = time.monotonic()
        if int(now * 5) % 5 == 0:
            check_runner(g.plan.heartbeat)
        if aborted_at is None and (watch.poll() or now - t0 > g.plan.timeout):
            killed_on_drop, timed_out = watch.drop_at is not None, watch.drop_at is None
            agent.abort()
            aborted_at = now
        elif aborted_at is not None and now - aborted_at > AGENT_ABORT_WAIT:
            agent.stop()          # it did not answer its abort: the next cell gets a new agent
            break
    run = _ended(watch, reply.get("rc") if reply else None, (reply or {}).get("stdout", ""),
                 (reply or {}).get("stderr", ""), t0, killed_on_drop, timed_out)
    run.conns = list((reply or {}).get("conns") or [])
    return run


def watch_client(proc: subprocess.Popen, watch: DropWatch, g: Group) -> ClientRun:
    """Wait for a third-party client process while following the device events: the drop that
    decides the cell ends it after PEER_DROP_GRACE (it may still print what it saw), the plan's
    timeout ends it anyway."""
    t0 = time.monotonic()
    killed_on_drop = timed_out = False
    stdout = stderr = b""
    while True:
        try:
            so, se = proc.communicate(timeout=POLL)
            stdout += so or b""
            stderr += se or b""
            break
        except subprocess.TimeoutExpired:
            pass
        watch.poll()
        now = time.monotonic()
        if int(now * 5) % 5 == 0:
            check_runner(g.plan.heartbeat)
        if watch.drop_at is not None and now - watch.drop_at > PEER_DROP_GRACE:
            proc.kill()
            killed_on_drop = True
        elif now - t0 > g.plan.timeout:
            proc.kill()
            timed_out = True
    return _ended(watch, proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"),
                  t0, killed_on_drop, timed_out)


def _ended(watch: DropWatch, rc: int | None, stdout: str, stderr: str, t0: float, killed_on_drop: bool,
           timed_out: bool) -> ClientRun:
    duration = time.monotonic() - t0
    ended = time.time()
    time.sleep(0.02)                        # events written just before the client ended
    watch.poll()
    return ClientRun(rc, stdout, stderr, duration, ended, killed_on_drop, timed_out, watch.seen)


def client_report(spec: scenario.CellSpec, run: ClientRun, out: Path) -> dict | None:
    """The client's result in the shape of `ftlab client --json` (None: it gave none)."""
    if spec.client == "builtin":
        for line in reversed(run.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    continue
        return None
    if not (run.killed_on_drop or run.timed_out):
        return client_result(spec.client, run.returncode, run.stdout, run.stderr, out, run.duration)
    if run.stderr:
        return {"outcome": "failed", "stage": None, "reason": "killed",
                "transcript": client_result(spec.client, 1, "", run.stderr, out, run.duration)["transcript"]}
    return None


def read_from(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def run_cell(net, topology, cell: scenario.Cell, spec: scenario.CellSpec, g: Group, sha: str,
             server: ServerRun) -> tuple[Observation, dict]:
    """Run one cell's client; returns what was observed and side facts (timings, transcript)."""
    out = g.workdir / (cell.id.replace("/", "_").replace("+", "_") + ".out")
    argv = client_argv(topology, cell, spec, g, server, out)
    watch = DropWatch(JsonLines(net.events_path), g,
                      control_ports=(topology.ftp.control_port, topology.ftp.implicit_port))
    server_log = server.log_for(cell.security)
    log_offset = server_log.stat().st_size
    if spec.client == "builtin":
        run = watch_agent(g.client_agent(net, topology), argv, watch, g)
    else:
        proc = net.popen(topology.ftp.client, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run = watch_client(proc, watch, g)
    fresh = cell_events(run.events, g.seen_flows)
    client = client_report(spec, run, out)
    out.unlink(missing_ok=True)
    obs = Observation(client, exit_code=run.returncode, events=fresh, expected_bytes=g.plan.size,
                      expected_sha256=sha, killed_on_drop=run.killed_on_drop, timed_out=run.timed_out,
                      stderr=run.stderr[-2000:], control_address=str(dial_address(topology, spec)),
                      server_node=topology.ftp.server)
    server_lines = read_from(server_log, log_offset)
    transcript = [f"client {x}" for x in (client or {}).get("transcript", [])]
    transcript += [f"server {x}" for x in server_lines[-60:]]
    conns = cell_connections(run.conns, server_lines, topology, cell, spec)
    return obs, {"duration": run.duration, "ended": round(run.ended, 3), "transcript": transcript,
                 "connections": conns}


# -- the cell's own connections -----------------------------------------------------------------------

_SESSION_LINE = re.compile(r"\[(\d+) (\S+)\] (.*)$")


def _ep(host: str | None, port: int | None) -> list | None:
    return None if host is None else [host, port]


def _peer(text: str) -> list | None:
    host, _, port = text.rpartition(":")
    return [host.strip("[]"), int(port)] if host and port.isdigit() else None


def server_sessions(lines: list[str]) -> dict[int, dict]:
    """The server log's sessions in a cell's lines: {session: {"peer": [ip, port], "passive":
    [the data ends its 227/229 replies announced], "active": [the ends PORT/EPRT named]}}."""
    from lab.ftps import grammar

    out: dict[int, dict] = {}
    for line in lines:
        m = _SESSION_LINE.search(line)
        if not m or m.group(1) == "0":
            continue
        s = out.setdefault(int(m.group(1)), {"peer": _peer(m.group(2)), "passive": [], "active": []})
        text = m.group(3)
        try:
            if text.startswith("< 227"):
                hp = grammar.parse_227(text[2:])
                s["passive"].append([hp.host, hp.port])
            elif text.startswith("< 229"):
                s["passive"].append([None, grammar.parse_229(text[2:])])
            elif text[:7].upper() in ("> PORT ", "> EPRT "):
                parse = grammar.parse_port_args if text[2:6].upper() == "PORT" else grammar.parse_eprt_args
                hp = parse(text[7:])
                s["active"].append([hp.host, hp.port])
        except grammar.GrammarError:
            continue
    return out


def cell_connections(conns: list[dict], server_lines: list[str], topology, cell: scenario.Cell,
                     spec: scenario.CellSpec) -> list[dict]:
    """The cell's own TCP connections, each as the client saw it (`client_view`: its own end
    `local`, the server's end `remote`; from the agent's record of the built-in client) and, where
    the server's log says it, as the server saw it (`server_view`: its own end `local`, the
    client's end `remote`). A capture on the path sees one of these views (or, between two NATs,
    one end of each): lab.report.wire selects the cell's packets by them.

    The server logs its sessions' peers and the data ends it announced (227, 229) or was given
    (PORT, EPRT), not a data connection's client port: the client's port is taken as kept by
    a source NAT (Linux keeps it when it is free), so only that part is an assumption."""
    implicit = cell.security.startswith("implicit")
    control_port = topology.ftp.implicit_port if implicit else topology.ftp.control_port
    version = dial_address(topology, spec).version
    node = topology.nodes.get(topology.ftp.server)
    own = next((a for i in (node.interfaces if node else []) if (a := i.of(version)) is not None), None)
    server_ip = str(own.ip) if own is not None else None
    sessions = server_sessions(server_lines)
    out: list[dict] = []
    control = next((c for c in conns if c.get("op") == "connect" and (c.get("remote") or [None, None])[1] == control_port),
                   None)
    session = None
    if control is not None:
        port = (control.get("local") or [None, None])[1]
        session = next((s for s in sessions.values() if (s["peer"] or [None, None])[1] == port), None)
    elif sessions:
        session = next(iter(sessions.values()))
    if control is not None or session is not None:
        out.append({"role": "control", "opened_by": "client",
                    "client_view": {"local": control.get("local"), "remote": control.get("remote"),
                                    "ok": control.get("ok")} if control else None,
                    "server_view": {"local": _ep(server_ip, control_port), "remote": session["peer"]}
                    if session else None})
    peer_ip = (session or {}).get("peer", [None])[0] if session else None
    passive = list((session or {}).get("passive", []))
    active = list((session or {}).get("active", []))
    listeners = {}
    for c in conns:
        if c is control:
            continue
        local = c.get("local") or [None, None]
        if c.get("op") == "connect":
            sv = passive.pop(0) if passive else None
            out.append({"role": "data", "opened_by": "client",
                        "client_view": {"local": c.get("local"), "remote": c.get("remote"), "ok": c.get("ok")},
                        "server_view": {"local": [sv[0] or server_ip, sv[1]], "remote": _ep(peer_ip, local[1])}
                        if sv else None})
        elif c.get("op") == "listen":
            sv = active.pop(0) if active else None
            rec = {"role": "data", "opened_by": "server",
                   # the server's end as the client will see it: the address it dialed, any port
                   "client_view": {"local": c.get("local"), "ok": False,
                                   "remote": _ep((control or {}).get("remote", [None])[0], None)},
                   "server_view": {"local": _ep(server_ip, None), "remote": sv} if sv else None}
            listeners[local[1]] = rec
            out.append(rec)
        elif c.get("op") == "accept":
            rec = listeners.get(local[1])
            if rec is None:
                rec = {"role": "data", "opened_by": "server", "client_view": {}, "server_view": None}
                out.append(rec)
            rec["client_view"] = {"local": c.get("local"), "remote": c.get("remote"), "ok": True}
            if rec["server_view"] is not None and c.get("remote"):
                rec["server_view"]["local"] = _ep(server_ip, c["remote"][1])
    if not conns:          # curl, lftp: the server's view alone
        for sv in passive:
            out.append({"role": "data", "opened_by": "client", "client_view": None,
                        "server_view": {"local": [sv[0] or server_ip, sv[1]], "remote": _ep(peer_ip, None)}})
        for sv in active:
            out.append({"role": "data", "opened_by": "server", "client_view": None,
                        "server_view": {"local": _ep(server_ip, None), "remote": sv}})
    cnode = topology.nodes.get(topology.ftp.client)
    mine = next((str(a.ip) for i in (cnode.interfaces if cnode else []) if (a := i.of(version)) is not None), None)
    _add_path_views(out, nat_addresses(topology, version), mine)
    return out


def nat_addresses(topology, version: int) -> list[str]:
    """The addresses the NAT devices on the path translate to (their outside interface's, their
    1:1 and forward addresses), of one IP version."""
    found = []
    for node in topology.devices_on_path():
        if node.nat is None:
            continue
        found += [str(a.ip) for i in node.interfaces if i.name == node.nat.outside and (a := i.of(version))]
        found += [str(a) for a in node.nat.public_addresses() if a.version == version]
    return list(dict.fromkeys(found))


def _add_path_views(conns: list[dict], addresses: list[str], client_ip: str | None = None) -> None:
    """`path_views`: a connection's ends as a capture between two NATs sees them - each NAT's
    address with the connection's port, as NATs keep the port when it is free (an assumption:
    the only views the ends cannot report) - and, for a client the agent does not run (curl,
    lftp), the client's own address with that port."""
    for c in conns:
        cv, sv = c.get("client_view") or {}, c.get("server_view") or {}
        cport = next((e[1] for e in (cv.get("local"), sv.get("remote")) if e and e[1] is not None), None)
        sport = next((e[1] for e in (cv.get("remote"), sv.get("local")) if e and e[1] is not None), None)
        ends = addresses + ([client_ip] if client_ip and not cv.get("local") else [])
        views = {"client": [[a, cport] for a in ends] if cport else [],
                 "server": [[a, sport] for a in addresses] if sport else []}
        if views["client"] or views["server"]:
            c["path_views"] = views


# -- the group ---------------------------------------------------------------------------------------

@dataclass
class Judge:
    """Turns what a cell did into its results entry, and appends it to the group's cells.jsonl."""
    scen: scenario.Scenarios
    picture: scenario.Picture
    alg: str | None
    sha: str
    sink: Path
    entries: list[dict] = field(default_factory=list)

    def emit(self, entry: dict) -> None:
        self.entries.append(entry)
        with open(self.sink, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def lab_error(self, cell: scenario.Cell, spec: scenario.CellSpec, reason: str, **side) -> dict:
        return results.scenario_entry(cell=cell, spec=spec, prediction=predict.predict(self.scen, cell, self.picture),
                                      verdict=Verdict("error", None, f"lab: {reason}"), alg=self.alg,
                                      duration_s=side.pop("duration", 0.0),
                                      **side)

    def observed(self, cell: scenario.Cell, spec: scenario.CellSpec, obs: Observation, side: dict) -> dict:
        v = verdict(obs)
        c = obs.client or {}
        pred = predict.predict(self.scen, cell, self.picture)
        entry = results.scenario_entry(
            cell=cell, spec=spec, prediction=pred, verdict=v, alg=self.alg,
            bytes=c.get("bytes") if c else None,
            sha256_ok=(c.get("sha256") == self.sha) if c.get("sha256") else None,
            duration_s=side["duration"], ended=side["ended"],
            drop=v.drop, events=obs.events[:200], transcript=side["transcript"],
            firewall_saw=firewall_saw(obs.events), pcaps=[], connections=side.get("connections", []))
        if v.drop and v.drop.get("ts"):
            # how long the cell went on after the drop that decided it
            entry["drop_to_end_s"] = round(side["ended"] - float(v.drop["ts"]), 3)
        return entry          # why it differs from its prediction: lab.matrix.runner.describe_cell


def refused_by_lab(net, topology, cell: scenario.Cell, server: ServerRun, obs: Observation) -> str | None:
    """A cell that failed while no device dropped anything: is the server still listening? One that
    stops (its process not gone yet; it closes its listeners before its sessions) refuses
    connections and cuts transfers short for the lab's reasons, at any stage."""
    seen = verdict(obs)
    if seen.outcome != "fail" or seen.drop:
        return None
    implicit = cell.security.startswith("implicit")
    return server.not_listening(net, (topology.ftp.implicit_port if implicit else topology.ftp.control_port,))


def judge_cell(net, topology, cell: scenario.Cell, spec: scenario.CellSpec, g: Group, server: ServerRun,
               judge: Judge) -> tuple[dict, str | None]:
    """Run one cell between two checks that the lab's programs live; (entry, the fault if one died)."""
    if fault := lab_fault(net, server, g.agent):
        return judge.lab_error(cell, spec, f"before the cell: {fault}"), fault
    obs, side = run_cell(net, topology, cell, spec, g, judge.sha, server)
    if fault := lab_fault(net, server, g.agent) or refused_by_lab(net, topology, cell, server, obs):
        seen = verdict(obs)
        return judge.lab_error(cell, spec, f"during the cell: {fault} (the client saw: {seen.outcome}: "
                                           f"{seen.reason})", duration=side["duration"], ended=side["ended"],
                               events=obs.events[:200], transcript=side["transcript"], pcaps=[],
                               connections=side.get("connections", [])), fault
    return judge.observed(cell, spec, obs, side), None


# -- the throughput phase ---------------------------------------------------------------------------

VERDICTS_DONE, WAITING, GO = "verdicts.done", "throughput.wait", "throughput.go"
#: The cell a worker is judging now and since when (JSON), for the runner's progress line.
RUNNING = "running.json"


def wait_turn(g: Group) -> None:
    """Wait, network up and idle, until the runner gives this network the throughput phase's turn
    (every verdict of the run is in and no other network measures)."""
    (g.workdir / WAITING).touch()
    while not (g.workdir / GO).exists():
        check_runner(g.plan.heartbeat)
        time.sleep(0.05)


def throughput_phase(net, topology, g: Group, reps: dict[str, tuple], shaped: int | None = None) -> dict:
    """Each class with a passing cell beside iperf3, interleaved, within the phase's budgets
    (lab.matrix.speed); `shaped`: the server link's rate (bits/s) under a timing variation."""
    started = time.monotonic()
    name = g.plan.throughput
    mode = speed.MODES[name]
    until = speed.turn_deadline((g.workdir / GO).read_text())          # the run's, wall clock
    left = mode.network_budget if until is None else min(mode.network_budget, until - time.time())
    why = (f"the network's time budget ({mode.network_budget:g} s) was spent" if left >= mode.network_budget else
           f"the run's throughput budget ({speed.run_budget(name):g} s) was spent")
    if left <= 0:
        return speed.skipped(name, why, reps, started)
    deadline = started + left
    busy_before = speed.machine_busy()        # the lab idle: what else the machine is doing
    capture = net.throughput_captures()
    size = speed.transfer_file_size(shaped, name)
    path = speed.write_file(g.workdir / "root", g.plan.out / "work" / f"throughput-{size}.bin", size)
    port = baseline.phase_port(topology)
    base_note = port.note
    baseline.open_for_measurement(net, port.port)
    iperf_run = None
    try:
        # one connect first: a path that blocks the port is said within seconds, not run after run
        pathports.require(net, topology, [port.port], "iperf3 baseline")
        baseline.start_server(net, port.port)
        nbytes = None if shaped else mode.iperf3_bytes
        iperf_run = lambda: baseline.iperf3(net, port.port, mode.iperf3_seconds, reverse=True,     # noqa: E731
                                            nbytes=nbytes, timeout=mode.iperf3_seconds + mode.run_timeout)
    except LabError as exc:
        base_note = f"no iperf3 baseline: {str(exc).splitlines()[0][:200]}"
    by_key: dict[str, dict] = {}
    for cls, (cell, spec) in reps.items():
        by_key.setdefault(servers.server_key(topology, spec), {})[cls] = (cell, spec)
    measured: dict = {"runs": {}, "errors": {}, "notes": {}, "pairs": {}}
    base_runs: list[float] = []
    for n, (key, members) in enumerate(by_key.items()):
        if time.monotonic() >= deadline:
            measured["notes"].update({cls: f"skipped: {why}" for cls in members})
            continue
        server = servers.start(net, topology, key, g.workdir, g.plan.pki, 100 + n)
        try:
            runners = {"iperf3": iperf_run} if iperf_run else {}
            for cls, (cell, spec) in members.items():
                runners[cls] = _class_runner(net, topology, cell, spec, g, server, path, mode.ftp_seconds,
                                             mode.run_timeout)
            part = speed.measure(mode.runs, runners, closing="iperf3", class_budget=mode.class_budget,
                                 deadline=deadline, why_deadline=why)
        finally:
            if g.agent is not None and not g.agent.exited():
                g.agent.send({"close": True})           # the classes' sessions, before their server goes
                g.agent.reply(5)
            server.stop()
        group_base = part["runs"].pop("iperf3", [])
        base_runs += group_base
        measured["pairs"].update(dict.fromkeys(members, group_base))
        measured["runs"].update(part["runs"])
        measured["errors"].update(part["errors"])
        measured["notes"].update(part["notes"])
    measured["runs"]["iperf3"] = base_runs
    measured["busy"] = {"before": busy_before, "after": speed.machine_busy()}
    if iperf_run and not any(v > 0 for v in base_runs):
        base_note = f"no iperf3 baseline: {measured['errors'].get('iperf3') or 'no run completed'}"
    doc = speed.summary(name, measured, reps, started, file_size=size, shaped=shaped,
                        baseline={**port.to_dict(), "note": base_note})
    if capture:
        doc["capture"] = capture
    return doc


def _class_runner(net, topology, cell: scenario.Cell, spec: scenario.CellSpec, g: Group, server: ServerRun,
                  path: str, seconds: float, timeout: float = 30.0):
    """A function measuring one class once: MB/s of RETRs for `seconds` in the client agent; no
    reply within seconds + timeout: the agent is stopped (MeasurementTimeout)."""
    implicit = cell.security.startswith("implicit")
    cfile = g.workdir / f"throughput-{cell.security}-{cell.data}.client.ftpdata"
    cfile.write_text(ftpdata_text(client_statements(topology, spec)))
    request = {"host": str(topology.ftp.server_address), "user": server.user, "password": server.password,
               "port": topology.ftp.implicit_port if implicit else topology.ftp.control_port, "path": path,
               "security": cell.security, "data": cell.data, "ftpdata": str(cfile),
               "ca": str(g.plan.pki / "ca.pem"), "seconds": seconds, "session": cell.id}

    def run() -> float:
        agent = g.client_agent(net, topology)
        agent.send({"measure": request})
        reply = agent.reply(seconds + timeout)
        if reply is None:
            agent.stop()
            raise baseline.MeasurementTimeout(f"{cell.id}: the client agent gave no throughput result "
                                              f"within {seconds + timeout:g} s")
        if reply.get("error") or not reply.get("seconds"):
            raise LabError(f"{cell.id}: {reply.get('error') or 'no transfer completed'}")
        return reply["bytes"] / reply["seconds"] / 1e6
    return run


def run_group(g: Group) -> None:
    from lab.network.net import LabNet

    scen = scenario.load(g.plan.scenario_file)
    # the group's ALG override, per NAT router (lab.topology.override): a variation changes only what it says
    topology, _ = override.apply(topo.load(g.group_plan.topology), g.group_plan.alg)
    # the group's timing (lab.topology.timing): the devices' idle timeouts; the server's link shaped below
    topology = timing.apply(topology, g.group_plan.timing)
    wd = g.workdir
    (wd / "root").mkdir(parents=True, exist_ok=True)
    info_path = wd / "topology.json"
    sha = payload(wd / "root" / DATA_FILE, g.plan.size)
    picture = (None if g.group_plan.user_file else scen.pictures.get(topology.name)) \
        or predict.picture_of(topology)[0]
    info = {"description": topology.description}
    info_path.write_text(json.dumps(info))
    judge = Judge(scen, picture, g.group_plan.alg, sha, wd / "cells.jsonl")

    cells = [scenario.parse_cell_id(c) for c in g.group_plan.cells]
    # Cells that need the same server statements run on one server process.
    by_server: dict[str, list] = {}
    for cell in cells:
        spec = scen.spec(cell)
        by_server.setdefault(servers.server_key(topology, spec), []).append((cell, spec))

    done: set[str] = set()
    try:
        with LabNet(topology, workdir=wd / "net", pcap=g.plan.pcap) as net:
            if rate := g.group_plan.timing.rate_bits(g.plan.size):
                info["shaped"] = {"links": net.shape(topology.ftp.server, rate), "rate_bits": rate}
            info["up_s"] = round(net.timings.get("up", 0.0), 2)
            if any(c.security in KERBEROS_MODES for c in cells):     # a KDC, a keytab, a ticket
                info["kerberos"] = kerberos.start(net, topology, wd, servers.USER)
            info_path.write_text(json.dumps(info))
            for n, (key, members) in enumerate(by_server.items()):
                server = servers.start(net, topology, key, wd, g.plan.pki, n)
                try:
                    for cell, spec in members:
                        check_runner(g.plan.heartbeat)
                        (wd / RUNNING).write_text(json.dumps({"id": cell.id, "since": time.time()}))
                        entry, fault = judge_cell(net, topology, cell, spec, g, server, judge)
                        if fault and "lab_error" not in info:
                            info["lab_error"] = f"{fault} (found at {cell.id})"
                        judge.emit(entry)
                        (wd / RUNNING).unlink(missing_ok=True)
                        done.add(cell.id)
                finally:
                    server.stop()
            (wd / VERDICTS_DONE).touch()
            if g.plan.throughput != "off" and (reps := speed.representatives(judge.entries, scen)):
                wait_turn(g)
                info["throughput"] = throughput_phase(net, topology, g, reps,
                                                      (info.get("shaped") or {}).get("rate_bits"))
                info_path.write_text(json.dumps(info))
    except (LabError, OSError) as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        for cell in cells:
            if cell.id not in done:
                judge.emit(judge.lab_error(cell, scen.spec(cell), reason))
        info.setdefault("lab_error", reason)
    if g.plan.pcap:
        # The captures of this network, one per device interface, into the report's pcaps/ folder.
        dest = g.plan.out / "pcaps" / wd.name
        dest.mkdir(parents=True, exist_ok=True)
        for p in sorted((wd / "net").rglob("*.pcap")):
            p.replace(dest / p.name)
        info["pcaps"] = [str(p.relative_to(g.plan.out)) for p in sorted(dest.glob("*.pcap"))]
    info_path.write_text(json.dumps(info))


def main(argv: list[str]) -> int:
    g = Group(RunPlan.read(Path(argv[0])), int(argv[1]))
    try:
        run_group(g)
    except RunnerGone as exc:
        print(f"ftlab matrix worker: {exc}; stopped", file=sys.stderr)
        return 3
    except KeyboardInterrupt:          # Ctrl-C: the runner reports it; a traceback here is only noise
        return 130
    except Exception:
        traceback.print_exc()
        return 3
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
