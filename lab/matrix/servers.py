"""The FTP server of a matrix network: its statements, one process per distinct set, alive or not.

Cells whose server needs the same statements share one server process (`server_key`). A server
that dies is the lab's failure, never the network's: `ServerRun.exited()` says so, and the
worker checks it before and after every cell (lab.matrix.worker).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints.launch import start_peer_server, terminate
from lab.matrix import scenario
from lab.network import ftpserver
from lab.network.ready import log_tail

USER, PASSWORD, DATA_FILE = ftpserver.USER, ftpserver.PASSWORD, ftpserver.DATA_FILE
ftpdata_text = ftpserver.ftpdata_text
STOPPING_WAIT = 3.0       # a server that stopped listening gets this long to exit before it is called hung
#: Server statements of the slides' pictures (DESIGN.md): the topology file adds PASSIVEDATAPORTS.
#: A run's cells share a server and all come from one client address (a NAT's): a session that an
#: earlier cell's network left hanging (until INACTIVE) must not cost a later cell a 421, so the
#: flood limit per address is off here unless the topology's own statements set it.
SERVER_BASE = {"TLSRFCLEVEL": "RFC4217", "MAXSESSIONSPERADDRESS": "0"}


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


def server_key(topology, spec: scenario.CellSpec) -> str:
    """Cells with the same key share one server process."""
    st = server_statements(topology, spec)
    if spec.server != "builtin":
        st = {"PASSIVEDATAPORTS": st.get("PASSIVEDATAPORTS")}
    return json.dumps({"server": spec.server, "statements": st}, sort_keys=True)


@dataclass
class ServerRun:
    """A running FTP server of a network: who logs in, where it logs, its processes."""
    kind: str
    node: str
    user: str
    password: str
    logs: dict[str, Path]              # "explicit" / "implicit" -> log path
    procs: list[subprocess.Popen]
    stop: Callable[[], None]

    def not_listening(self, net, ports: tuple[int, ...]) -> str | None:
        """What is wrong when the server's process lives but no longer listens on one of `ports`
        (it is stopping: a refused connection then says nothing about the network)."""
        done = net.run(self.node, ["ss", "-Hltn"], check=False)
        missing = [p for p in ports if f":{p} " not in done.stdout]
        if not missing:
            return None
        deadline = time.monotonic() + STOPPING_WAIT     # a stopping server is about to exit: say how
        while time.monotonic() < deadline:
            if why := self.exited():
                return why
            time.sleep(0.05)
        return f"the FTP server ({self.kind}) in {self.node} does not listen on port {missing[0]} any more"

    def log_for(self, security: str) -> Path:
        return self.logs["implicit" if security.startswith("implicit") else "explicit"]

    def exited(self) -> str | None:
        """None while every process of the server runs; else what died, with its log's tail."""
        for proc, log in zip(self.procs, self.logs.values(), strict=False):
            if proc.poll() is not None:
                last = log_tail(log, 1)
                return f"the FTP server ({self.kind}) in {self.node} exited with code {proc.returncode}" \
                       + (f", its log ends: {last}" if last else "")
        return None


def start(net, topology, key: str, workdir: Path, pki: Path, n: int) -> ServerRun:
    """The server of `key` (from server_key) in the picture's server node, once it listens."""
    info = json.loads(key)
    node = topology.ftp.server
    if info["server"] == "builtin":
        proc, log = start_builtin(net, topology, info["statements"], workdir, pki, n)
        return ServerRun("builtin", node, USER, PASSWORD, {"explicit": log, "implicit": log}, [proc],
                         lambda: terminate(proc))
    peer = start_peer_server(info["server"], lambda argv, **kw: net.popen(node, argv, **kw), node,
                             info["statements"], None, workdir / "root" / DATA_FILE, pki / "server.pem",
                             pki / "server.key", topology.ftp.control_port, topology.ftp.implicit_port)
    for log in peer.logs:
        log.touch()
    return ServerRun(peer.kind, node, peer.user, peer.password,
                     {"explicit": peer.logs[0], "implicit": peer.logs[1]}, peer.procs, peer.stop)


def start_builtin(net, topology, statements: dict, workdir: Path, pki: Path, n: int):
    """The built-in server (control 21, implicit 990); returns (proc, log path)."""
    ftpdata = workdir / f"server-{n}.ftpdata"
    ftpdata.write_text(ftpdata_text(statements))
    log = workdir / f"server-{n}.log"
    proc = ftpserver.start(net, topology, ftpdata, workdir / "root", pki / "server.pem", pki / "server.key", log)
    return proc, log
