"""`ftlab shell`, `ftlab baseline`, `ftlab clean`: bring a picture up by hand, measure it, clean up.

shell and baseline re-run themselves in a sandbox (lab.network.sandbox.ensure_sandbox) before they
touch the network, so whatever happens to them the kernel reaps the whole run.

The shell starts the lab's FTP server (lab.ftps, by module name) in the picture's server node and
says so (address, user, password, log), then opens shell_cli(): Mininet's CLI where a command's
words stay as typed and `events` says what each device saw (lab.devkit.events.describe). `--watch`
serves the live page (lab.network.live) on 127.0.0.1 from the ftlab process outside the sandbox.
`ftlab course shell` (lab.course.shell) uses the same CLI, variables and banner.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.devkit.types import ALG_MODES
from lab.network import baseline, ftpserver
from lab.topology.model import Topology


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shell", help="bring a topology up with its FTP server and open a CLI on it (training)",
        description="Bring the picture up (in a sandbox), start the lab's FTP server in its server node and "
                    "open Mininet's CLI, where a command's words stay as typed (`client ftlab client "
                    "ftp://...` runs the lab's client) and `events` says what each device saw. --watch: a "
                    "live page on 127.0.0.1 with the picture and the devices' events. See lab/network/cli.py.")
    p.add_argument("topology", help="a shipped topology name or a YAML file")
    p.add_argument("--alg", choices=ALG_MODES, default=None,
                   help="override the NAT devices' ALG (default: as the topology file says)")
    p.add_argument("--no-devices", action="store_true",
                   help="kernel rules only: start no ALG, inspector or dropwatch program")
    p.add_argument("--pcap", action="store_true", help="capture every interface into the workdir")
    p.add_argument("--workdir", type=Path,
                   help="keep configs, logs, events and captures here (default: a /tmp dir removed on exit)")
    p.add_argument("--no-server", action="store_true",
                   help="start no FTP server (by default the lab's runs in the picture's server node)")
    p.add_argument("--watch", action="store_true",
                   help="also serve a live page on 127.0.0.1: the picture and each device's events as they happen")
    p.add_argument("--port", type=int, default=0, help="the live page's port (default: a free one)")
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

USER, PASSWORD, DATA_FILE = ftpserver.USER, ftpserver.PASSWORD, ftpserver.DATA_FILE


def cmd_shell(args: argparse.Namespace) -> int:
    from lab.network.sandbox import ensure_sandbox, in_sandbox
    from lab.topology.loader import load

    topo = load(args.topology)          # a bad file is reported at once (and without root)
    if args.watch and not in_sandbox():
        return _watched(args, topo)
    ensure_sandbox()                    # re-runs this command in a sandbox, then exits
    return _shell(args, load(args.topology))


def _watched(args: argparse.Namespace, topo: Topology) -> int:
    """--watch: the live page, served from this process (outside the sandbox, whose loopback is its
    own) from the events file the sandboxed shell's devices append to; then the shell itself."""
    from lab.network.live import LiveView
    from lab.network.sandbox import ensure_sandbox

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix=f"ftlab-{topo.name}-"))).resolve()
    argv = [sys.executable, "-m", "lab.cli", *sys.argv[1:]] + ([] if args.workdir else ["--workdir", str(workdir)])
    view = LiveView(topo, lambda: [workdir / "events.jsonl"], title=f"{topo.name}: ftlab shell", port=args.port)
    try:
        print(f"live view: {view.start()}  (open it in a browser on this machine)", file=sys.stderr, flush=True)
        ensure_sandbox(argv)            # exits with the shell's exit code
        return 0
    finally:
        view.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _shell(args: argparse.Namespace, topo: Topology) -> int:
    from lab.network.net import LabNet

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"ftlab-{topo.name}-"))
    progress(f"bringing up {topo.name} (workdir {workdir}) ...")
    try:
        with LabNet(topo, alg=args.alg, workdir=workdir, pcap=args.pcap, devices=not args.no_devices) as net:
            server = None if args.no_server else start_ftp_server(net, topo, workdir / "ftp")
            try:
                env = shell_env(topo, server)
                prepare_nodes(net, topo, env)
                print(banner(topo, env, server, "the picture's server FTP.DATA"), flush=True)
                progress(f"up in {net.timings['up']:.2f} s; device logs and events in {workdir} "
                         "(Type 'exit' or Ctrl-D to tear down)")
                shell_cli()(net.mn, events=net.events_path)
            finally:
                if server is not None:
                    stop(server.proc)
            progress("tearing down ...")
        progress(f"down in {net.timings['down']:.2f} s")
    finally:
        if args.workdir is None:   # a throw-away dir: keep only what the user asked to keep
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


@dataclass
class ShellServer:
    proc: subprocess.Popen
    log: Path
    ca: Path                  # the CA that signed its certificate (the client's --ca)
    client_ftpdata: Path      # the picture's client statements, for the client's --ftpdata


def start_ftp_server(net, topo: Topology, work: Path) -> ShellServer:
    """The lab's FTP server (lab.ftps, started by module name) in the picture's server node, with
    the picture's server statements, on the control port and the implicit port; a CA and a server
    certificate for every address a client may dial; a 1 MiB data.bin to fetch."""
    from lab.ftps import pki

    (work / "root").mkdir(parents=True, exist_ok=True)
    (work / "root" / DATA_FILE).write_bytes(os.urandom(1 << 20))
    node = topo.nodes[topo.ftp.server]
    ips = {str(a) for a in (topo.ftp.server_address, topo.ftp.server_address6) if a is not None}
    ips |= {str(a.ip) for i in node.interfaces for a in i.addresses}
    pki.init_ca(work / "pki")
    pki.issue_server(work / "pki", "server", ips=sorted(ips), dns=["server"])
    # the implicit port handshakes at once (SECUREIMPLICITZOS FALSE), as the matrix's implicit cells
    ftpdata = work / "server.ftpdata"
    ftpdata.write_text(ftpserver.ftpdata_text({**topo.ftp.server_statements, "SECUREIMPLICITZOS": "FALSE"}))
    client_ftpdata = work / "client.ftpdata"
    client_ftpdata.write_text(ftpserver.ftpdata_text(topo.ftp.client_statements))
    log = work / "server.log"
    proc = ftpserver.start(net, topo, ftpdata, work / "root", work / "pki" / "server.pem",
                           work / "pki" / "server.key", log)
    return ShellServer(proc, log, work / "pki" / "ca.pem", client_ftpdata)


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def shell_env(topo: Topology, server: ShellServer | None, user_pass: str = f"{USER}:{PASSWORD}") -> dict[str, str]:
    """The variables every node of a shell has: $SERVER $SERVER6 $USER_PASS $CA $FTPDATA $GET."""
    dial, dial6 = topo.ftp.server_address, topo.ftp.server_address6
    env = {"SERVER": str(dial), "SERVER6": f"[{dial6}]" if dial6 else "", "USER_PASS": user_pass,
           "CA": str(server.ca) if server else "", "FTPDATA": str(server.client_ftpdata) if server else ""}
    env["GET"] = (f"ftp://{user_pass}@{dial}/{DATA_FILE} --security tls --data pasv --ca {env['CA']} "
                  f"--ftpdata {env['FTPDATA']} --timeout 8 get -o /dev/null")
    return env


def prepare_nodes(net, topo: Topology, env: dict[str, str]) -> None:
    """In every node of the picture `ftlab` is the lab's command and `env` is exported."""
    for name in topo.nodes:
        node = net.mn[name]
        node.cmd(f"ftlab() {{ {shlex.quote(sys.executable)} -m lab.cli \"$@\"; }}")
        node.cmd(" ".join(f"export {k}={shlex.quote(v)};" for k, v in env.items()))


def banner(topo: Topology, env: dict[str, str], server, statements: str, log: Path | None = None) -> str:
    """What the shell has running and how to use it: the nodes and devices, the FTP server (node,
    user, password, the address to dial, its log) and example commands."""
    devices = ", ".join(f"{n.name} ({'+'.join(n.device_kinds())})" for n in topo.devices_on_path()) or "none"
    lines = [f"nodes: {', '.join(topo.nodes)}; devices on the path: {devices}"]
    log = log or (server.log if server is not None else None)
    user, _, password = env["USER_PASS"].partition(":")
    if log is None:
        lines.append(f"no FTP server runs (--no-server); the client would dial {env['SERVER']}")
    else:
        lines.append(
            f"the FTP server runs in {topo.ftp.server} (the lab's server, with {statements}), user {user}, "
            f"password {password}; the client dials {env['SERVER']} (21, implicit 990)"
            + (f", over IPv6 {env['SERVER6']}" if env["SERVER6"] else "") + f"; its log: {log}")
    client = topo.ftp.client
    lines += [
        "in every node: $SERVER $SERVER6 $USER_PASS $CA $FTPDATA $GET are set, and `ftlab` is the lab's command:",
        f"  {client} ftlab client $GET",
        f"  {client} ftlab client ftp://$USER_PASS@$SERVER/ ls",
        f"  {client} ftlab client ftp://$USER_PASS@$SERVER/{DATA_FILE} --security plain --data port "
        "--ca $CA get -o /dev/null --verbose",
        "  events            what each device saw since the last `events` (`events all`: from the start)",
        "  exit              tear the network down",
    ]
    return "\n".join(lines)


def shell_cli():
    """Mininet's CLI as the lab's shells (`ftlab shell`, `ftlab course shell`) have it; Mininet is
    imported only where a network runs. Two differences from Mininet's own:

    - a command's words stay as typed: `client ftlab client ftp://...` runs the lab's client in the
      client node (Mininet's CLI turns every word that names a node into its address);
    - `events [all]` prints, in words (lab.devkit.events.describe, as the live page says them), what
      each device saw since the last `events` (all: from the start), with the time since the first.
    """
    from mininet.cli import CLI

    from lab.devkit.events import describe, read

    class LabCLI(CLI):
        identchars = CLI.identchars + "-"      # node names such as nat-c

        def __init__(self, mn, events: Path, **kw):
            self.events_path = events
            self.offset = 0
            self.t0: float | None = None
            super().__init__(mn, **kw)

        def default(self, line: str) -> None:
            first, args, line = self.parseline(line)
            if first in self.mn:
                if not args:
                    print(f"*** give a command for {first}: {first} <command>")
                    return
                node = self.mn[first]
                node.sendCmd(args)           # words as typed: no node name becomes an address
                self.waitForNode(node)
            else:
                print(f"*** unknown command: {line} (`help` lists them; a node's command: NODE COMMAND)")

        def do_events(self, line: str) -> None:
            """events [all]: what each device saw, in words, since the last `events` (all: from the start)."""
            start = 0 if line.strip() == "all" else self.offset
            found, self.offset = read(self.events_path, start)
            shown = [e for e in found if e.get("type") != "ready" or line.strip() == "all"]
            for e in shown:
                if self.t0 is None:
                    self.t0 = float(e.get("ts") or 0)
                print(f"  {float(e.get('ts') or 0) - self.t0:7.2f} s  {describe(e)}")
            if not shown:
                print("  (no device event since the last `events`)")

    return LabCLI


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
