"""Running the cells of one network inside a sandbox: `python -m lab.matrix.worker PLAN INDEX`.

One group = one picture brought up once with one ALG mode. The worker measures the iperf3
baseline of the picture's data path, brings the picture up with its devices, starts the FTP
server in the server node (restarted only when a cell needs other server statements), and runs
the cells one after the other, each as `ftlab client ... --json` in the client node. While a
client runs, the devices' event file is watched: when a device drops a new connection of this
cell, the client gets a short grace to report and is then killed, so a failing cell ends within
2 s of its drop. Each cell's result is appended as one JSON line to the group's cells.jsonl,
which the parent (lab.matrix.runner) reads for its progress bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError
from lab.matrix import predict, scenario
from lab.matrix.verdict import Observation, is_new_connection, verdict
from lab.report import results
from lab.topology import loader as topo

USER, PASSWORD = "lab", "lab-secret"
DATA_FILE = "data.bin"
DROP_GRACE = 1.5          # after a decisive drop: let the client report, then kill it (< 2 s)
CLIENT_DATACONNTIME = 1.5  # the client gives up a data connection after this (lab RTT is < 1 ms)
SERVER_READY_TIMEOUT = 10.0
BASELINE_SECONDS = 1.0
#: Server statements of the slides' pictures (DESIGN.md): the topology file adds PASSIVEDATAPORTS.
SERVER_BASE = {"TLSRFCLEVEL": "RFC4217"}


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


def ftpdata_text(statements: dict) -> str:
    lines = []
    for key, value in statements.items():
        if value is None:
            continue
        lines += [f"{key} {item}" for item in (value if isinstance(value, list) else [value])]
    return "\n".join(lines) + "\n"


def server_statements(topology, spec: scenario.CellSpec) -> dict:
    st = {**SERVER_BASE, **topology.ftp.server_statements}
    for key, value in spec.server_statements.items():
        if value is None:
            st.pop(key, None)
        else:
            st[key] = value
    # The server's implicit port speaks the z/OS way (clear 220 first) only for implicit-zos.
    st["SECUREIMPLICITZOS"] = "TRUE" if spec.cell.security == "implicit-zos" else "FALSE"
    return st


def client_statements(topology, spec: scenario.CellSpec) -> dict:
    st = {"DATACONNTIME": CLIENT_DATACONNTIME, **topology.ftp.client_statements}
    st.update({k: v for k, v in spec.client_statements.items() if v is not None})
    return st


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
            from lab.matrix.verdict import describe_drop
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
    index: int
    topology: str                    # name or path
    alg: str | None
    cells: list[str]
    out: Path
    size: int
    timeout: float
    pcap: bool
    scenario_file: str
    pki: Path
    heartbeat: Path | None = None
    seen_flows: set = field(default_factory=set)

    @property
    def workdir(self) -> Path:
        label = Path(self.topology).stem + (f"-alg-{self.alg}" if self.alg else "")
        return self.out / "work" / f"{self.index:02d}-{label}"


class EventTail:
    """Reads the devices' JSON-lines event file from an offset on (a torn last line waits)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._pending = b""

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def _flow(e: dict) -> tuple:
    return (e.get("src"), e.get("sport"), e.get("dst"), e.get("dport"))


@dataclass
class ServerRun:
    """A running FTP server of a group: who logs in, where its log is, how to stop it."""
    kind: str
    user: str
    password: str
    logs: dict                         # "explicit" / "implicit" -> log path
    stop: object                       # callable

    def log_for(self, security: str) -> Path:
        return self.logs["implicit" if security.startswith("implicit") else "explicit"]


def server_key(topology, spec: scenario.CellSpec) -> str:
    """Cells with the same key share one server process."""
    st = server_statements(topology, spec)
    if spec.server != "builtin":
        st = {"PASSIVEDATAPORTS": st.get("PASSIVEDATAPORTS")}
    return json.dumps({"server": spec.server, "statements": st}, sort_keys=True)


def start_any_server(net, topology, key: str, g: Group, n: int) -> ServerRun:
    info = json.loads(key)
    from lab.endpoints.launch import start_peer_server, terminate

    if info["server"] == "builtin":
        proc, log = start_server(net, topology, info["statements"], g, n)
        return ServerRun("builtin", USER, PASSWORD, {"explicit": log, "implicit": log}, lambda: terminate(proc))

    peer = start_peer_server(info["server"], lambda argv, **kw: net.popen(topology.ftp.server, argv, **kw),
                             topology.ftp.server, info["statements"], None,
                             g.workdir / "root" / DATA_FILE, g.pki / "server.pem", g.pki / "server.key",
                             topology.ftp.control_port, topology.ftp.implicit_port)
    for log in peer.logs:
        log.touch()
    return ServerRun(peer.kind, peer.user, peer.password, {"explicit": peer.logs[0], "implicit": peer.logs[1]},
                     peer.stop)


def start_server(net, topology, statements: dict, g: Group, n: int):
    """The built-in server in the server node (control 21, implicit 990); returns (proc, log path)."""
    wd = g.workdir
    ftpdata = wd / f"server-{n}.ftpdata"
    ftpdata.write_text(ftpdata_text(statements))
    log = wd / f"server-{n}.log"
    argv = [sys.executable, "-m", "lab.cli", "server", "--listen", f"0.0.0.0:{topology.ftp.control_port}",
            "--tls-listen", f"0.0.0.0:{topology.ftp.implicit_port}", "--root", str(wd / "root"),
            "--user", f"{USER}:{PASSWORD}", "--cert", str(g.pki / "server.pem"), "--key", str(g.pki / "server.key"),
            "--ftpdata", str(ftpdata)]
    logf = open(log, "wb")
    proc = net.popen(topology.ftp.server, argv, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    deadline = time.monotonic() + SERVER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if b"listening on" in log.read_bytes():
            return proc, log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise LabError(f"the FTP server did not start in {topology.ftp.server}: {log.read_text()[-800:]}")


def run_cell(net, topology, cell: scenario.Cell, spec: scenario.CellSpec, g: Group, sha: str,
             server: ServerRun) -> tuple[Observation, dict]:
    """Run one cell's client; returns what was observed and side facts (timings, transcript)."""
    from lab.endpoints.launch import client_argv, client_result

    wd = g.workdir
    safe = cell.id.replace("/", "_").replace("+", "_")
    out = wd / f"{safe}.out"
    implicit = cell.security.startswith("implicit")
    port = topology.ftp.implicit_port if implicit else topology.ftp.control_port
    server_log = server.log_for(cell.security)
    if spec.client == "builtin":
        cfile = wd / f"{safe}.client.ftpdata"
        cfile.write_text(ftpdata_text(client_statements(topology, spec)))
        url = f"ftp://{server.user}@{topology.ftp.server_address}:{port}/{DATA_FILE}"
        argv = [sys.executable, "-m", "lab.cli", "client", url, "--security", cell.security, "--data", cell.data,
                "--ftpdata", str(cfile), "--ca", str(g.pki / "ca.pem"), "--password", server.password,
                "--timeout", str(min(8.0, g.timeout)), "--json", "get", "-o", str(out)]
    else:
        argv = client_argv(spec.client, cell.security, cell.data, str(topology.ftp.server_address), port,
                           DATA_FILE, server.user, server.password, g.pki / "ca.pem", out, min(15.0, g.timeout))
    tail = EventTail(net.events_path)
    log_offset = server_log.stat().st_size
    events: list[dict] = []
    t0 = time.monotonic()
    proc = net.popen(topology.ftp.client, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    drop_at = None
    killed_on_drop = timed_out = False
    stdout = stderr = b""
    while True:
        try:
            so, se = proc.communicate(timeout=0.02)
            stdout += so or b""
            stderr += se or b""
            break
        except subprocess.TimeoutExpired:
            pass
        for e in tail.read():
            events.append(e)
            if e.get("type") == "drop" and is_new_connection(e) and drop_at is None \
                    and _flow(e) not in g.seen_flows:
                drop_at = time.monotonic()
        now = time.monotonic()
        if int(now * 5) % 5 == 0:
            check_runner(g.heartbeat)
        if drop_at is not None and now - drop_at > DROP_GRACE:
            proc.kill()
            killed_on_drop = True
        elif now - t0 > g.timeout:
            proc.kill()
            timed_out = True
    duration = time.monotonic() - t0
    ended = time.time()
    time.sleep(0.02)                        # events written just before the client ended
    events.extend(tail.read())
    # A drop that an earlier cell already caused (a retransmitted SYN) is not this cell's.
    fresh = [e for e in events if not (e.get("type") == "drop" and _flow(e) in g.seen_flows)]
    g.seen_flows.update(_flow(e) for e in events if e.get("type") == "drop")
    client = None
    if spec.client != "builtin":
        if not (killed_on_drop or timed_out):
            client = client_result(spec.client, proc.returncode, stdout.decode(errors="replace"),
                                   stderr.decode(errors="replace"), out, duration)
        elif stderr:
            client = {"outcome": "failed", "stage": None, "reason": "killed",
                      "transcript": client_result(spec.client, 1, "", stderr.decode(errors="replace"), out,
                                                  duration)["transcript"]}
    for line in reversed(stdout.decode(errors="replace").splitlines() if spec.client == "builtin" else []):
        line = line.strip()
        if line.startswith("{"):
            try:
                client = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    out.unlink(missing_ok=True)
    with open(server_log, "rb") as f:
        f.seek(log_offset)
        server_lines = f.read().decode(errors="replace").splitlines()
    obs = Observation(client, exit_code=proc.returncode, events=fresh, expected_bytes=g.size,
                      expected_sha256=sha, killed_on_drop=killed_on_drop, timed_out=timed_out,
                      stderr=stderr.decode(errors="replace")[-2000:],
                      control_address=str(topology.ftp.server_address))
    transcript = [f"client {x}" for x in (client or {}).get("transcript", [])]
    transcript += [f"server {x}" for x in server_lines[-60:]]
    return obs, {"duration": duration, "ended": round(ended, 3), "transcript": transcript}


def measure_baseline(topology, g: Group) -> tuple[float | None, str | None, float | None]:
    """iperf3 over the picture's data path (kernel only, no device programs), RETR direction."""
    from lab.network.cli import _wait_for, baseline_port, measure, temporary_forward
    from lab.network.net import LabNet

    try:
        with LabNet(topology, workdir=g.workdir / "baseline", devices=False) as net:
            port = baseline_port(topology)
            forward = temporary_forward(topology, port)
            if forward:
                net.run(forward[0], forward[1])
            server = net.popen(topology.ftp.server, ["iperf3", "-s", "-p", str(port), "--forceflush"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            _wait_for(server, "Server listening", 5.0)
            mbps = measure(net, port, BASELINE_SECONDS, reverse=True)
            return round(mbps, 1), None, net.timings.get("up")
    except LabError as exc:
        return None, str(exc)[:300], None


def run_group(g: Group) -> None:
    from lab.network.net import LabNet

    scen = scenario.load(g.scenario_file)
    topology = topo.load(g.topology)
    wd = g.workdir
    (wd / "root").mkdir(parents=True, exist_ok=True)
    sink = wd / "cells.jsonl"
    info_path = wd / "topology.json"
    sha = payload(wd / "root" / DATA_FILE, g.size)
    # A user's file is judged by its own facts, even when it reuses a shipped picture's name.
    user_file = Path(g.topology).suffix in (".yaml", ".yml")
    picture = (None if user_file else scen.pictures.get(topology.name)) or predict.picture_of(topology)[0]
    info = {"description": topology.description}
    info["baseline_mbps"], info["baseline_error"], _ = measure_baseline(topology, g)
    info_path.write_text(json.dumps(info))

    cells = [scenario.parse_cell_id(c) for c in g.cells]
    # Cells that need the same server statements run on one server process.
    by_server: dict[str, list] = {}
    for cell in cells:
        spec = scen.spec(cell)
        by_server.setdefault(server_key(topology, spec), []).append((cell, spec))

    def emit(entry: dict) -> None:
        with open(sink, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def lab_error(cell, spec, reason: str) -> dict:
        from lab.matrix.verdict import Verdict
        return results.scenario_entry(cell=cell, spec=spec, prediction=predict.predict(scen, cell, picture),
                                      verdict=Verdict("error", None, f"lab: {reason}"), alg=g.alg,
                                      baseline_mbps=info["baseline_mbps"], duration_s=0.0)

    done: set[str] = set()
    try:
        with LabNet(topology, alg=g.alg, workdir=wd / "net", pcap=g.pcap) as net:
            info["up_s"] = round(net.timings.get("up", 0.0), 2)
            info_path.write_text(json.dumps(info))
            for n, (key, members) in enumerate(by_server.items()):
                server = start_any_server(net, topology, key, g, n)
                try:
                    for cell, spec in members:
                        check_runner(g.heartbeat)
                        obs, side = run_cell(net, topology, cell, spec, g, sha, server)
                        v = verdict(obs)
                        c = obs.client or {}
                        pred = predict.predict(scen, cell, picture)
                        ok = v.outcome == "pass"
                        entry = results.scenario_entry(
                            cell=cell, spec=spec, prediction=pred, verdict=v, alg=g.alg,
                            bytes=c.get("bytes") if c else None,
                            sha256_ok=(c.get("sha256") == sha) if c.get("sha256") else None,
                            throughput_mbps=c.get("mbps") if ok else None,
                            baseline_mbps=info["baseline_mbps"], duration_s=side["duration"], ended=side["ended"],
                            drop=v.drop, events=obs.events[:200], transcript=side["transcript"],
                            firewall_saw=firewall_saw(obs.events), pcaps=[])
                        if not entry["matches"] and v.outcome != "error":
                            entry["why_differs"] = (f"the slides predict {pred.outcome} ({pred.reason}); observed "
                                                    f"{v.outcome}: {v.reason}")
                        emit(entry)
                        done.add(cell.id)
                finally:
                    server.stop()
    except (LabError, OSError) as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        for cell in cells:
            if cell.id not in done:
                emit(lab_error(cell, scen.spec(cell), reason))
        info["lab_error"] = reason
    if g.pcap:
        # The captures of this network, one per device interface, into the report's pcaps/ folder.
        dest = g.out / "pcaps" / wd.name
        dest.mkdir(parents=True, exist_ok=True)
        for p in sorted((wd / "net").rglob("*.pcap")):
            p.replace(dest / p.name)
        info["pcaps"] = [str(p.relative_to(g.out)) for p in sorted(dest.glob("*.pcap"))]
    info_path.write_text(json.dumps(info))


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    raw = plan["groups"][int(argv[1])]
    g = Group(index=int(argv[1]), topology=raw["topology"], alg=raw["alg"], cells=raw["cells"],
              out=Path(plan["out"]), size=plan["size"], timeout=plan["timeout"], pcap=plan["pcap"],
              scenario_file=plan["scenario_file"], pki=Path(plan["pki"]),
              heartbeat=Path(plan["heartbeat"]) if plan.get("heartbeat") else None)
    try:
        run_group(g)
    except RunnerGone as exc:
        print(f"ftlab matrix worker: {exc}; stopped", file=sys.stderr)
        return 3
    except Exception:
        traceback.print_exc()
        return 3
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
