"""`ftlab course shell DIR`: the exercise's network, with the student's files, as students use it.

The network of DIR's files comes up (in a sandbox, as every run), the lab's FTP server runs in the
picture's server node with the server's FTP.DATA - and the banner says so, with the user, the
password and the address to dial - and Mininet's CLI opens with three differences:

- a command's words are never replaced by addresses: `client ftlab client ftp://...` runs the
  lab's client (Mininet's own CLI turns the word `client` into the client's address). In every
  node `ftlab` is the lab's command, and $SERVER, $SERVER6, $USER_PASS, $CA, $FTPDATA (the
  client's FTP.DATA of the exercise) and $GET (a whole example command's arguments) are set;
- `events` prints, in words, what each device saw since the last `events` (`events all`: from
  the start): commands seen, rewrites, mappings, pinholes, drops with their rule;
- `help` says the above.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from lab.course import exercise, progress, workspace
from lab.errors import InputError

SHELL = "shell"


def event_words(e: dict) -> str:
    """One device event in words."""
    from lab.matrix.verdict import describe_drop

    kind = e.get("type", "?")
    device = e.get("device", "?")
    skip = {"ts", "device", "type", "program"}
    if kind == "drop":
        return describe_drop(e)
    if kind == "rewrite":
        before, after = e.get("before") or e.get("old"), e.get("after") or e.get("new")
        if before is not None and after is not None:
            return f"{device} rewrote {str(before).strip()!r} -> {str(after).strip()!r}"
    if kind == "tls-detected":
        way = {"c2s": "from the client", "s2c": "from the server"}.get(str(e.get("direction")), "")
        return f"{device} saw TLS on the control connection {e.get('conn', '')} {way}: it cannot read it any more"
    if kind == "ccc":
        return f"{device} saw CCC: the control connection is in clear again, it reads the commands"
    rest = ", ".join(f"{k}={v}" for k, v in e.items() if k not in skip and v not in (None, "", [], {}))
    words = {"pinhole-open": "opened a pinhole", "pinhole-used": "let a connection through its pinhole",
             "pinhole-expired": "closed an unused pinhole", "mapping-open": "opened a NAT mapping",
             "mapping-used": "used a NAT mapping", "mapping-expired": "removed an unused NAT mapping",
             "ready": "is ready", "ignored": "ignored an announcement", "error": "reported an error"}
    return f"{device} {words.get(kind, kind)}" + (f": {rest}" if rest else "")


def read_events(path: Path, start: int = 0) -> tuple[list[dict], int]:
    """The events appended to `path` since byte `start`, and the new offset (whole lines only)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], start
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out, start + end


def run(folder: Path, watch: bool = False, port: int = 0) -> int:
    """Bring the network of the student's files up with its FTP server, and the students' CLI;
    `watch`: the live view (lab.course.live) on 127.0.0.1 as well, served from this process."""
    from lab.network.sandbox import ensure_sandbox, in_sandbox

    state = progress.load(folder)
    ex = exercise.load(state.exercise_ref, seed=state.seed)
    try:
        files = workspace.read(ex, folder)
    except InputError as exc:
        raise InputError([*exc.problems]) from None
    network = workspace.compose(ex, files, folder / workspace.WORK)
    from lab.matrix import targets

    where = targets.target(str(network), "network")
    targets.deep_check(where)
    if watch and not in_sandbox():
        from lab.course.live import LiveView

        events = folder.resolve() / workspace.WORK / SHELL / "net" / "events.jsonl"
        url = LiveView(where.model, lambda: [events], title=f"{ex.id} (your files)", port=port).start()
        print(f"live view: {url}  (open it in a browser on this machine)", file=sys.stderr)
    ensure_sandbox()          # re-runs this command in a sandbox of its own, then exits
    return _inside(ex, folder.resolve(), network.resolve())


def _inside(ex, folder: Path, network: Path) -> int:
    from lab.endpoints.launch import terminate
    from lab.matrix import servers
    from lab.matrix.runner import make_pki
    from lab.network.net import LabNet
    from lab.topology import loader

    model = loader.load(network)
    work = folder / workspace.WORK / SHELL
    shutil.rmtree(work, ignore_errors=True)
    (work / "root").mkdir(parents=True)
    (work / "root" / servers.DATA_FILE).write_bytes(os.urandom(1 << 20))
    pki = make_pki(work / "pki", [str(network)])
    statements = {**servers.SERVER_BASE, **model.ftp.server_statements, "SECUREIMPLICITZOS": "FALSE"}
    client_ftpdata = work / "client.ftpdata"
    client_ftpdata.write_text(servers.ftpdata_text(model.ftp.client_statements))
    dial = model.ftp.server_address
    dial6 = model.ftp.server_address6
    env = {"SERVER": str(dial), "SERVER6": f"[{dial6}]" if dial6 else "", "USER_PASS": f"{servers.USER}:{servers.PASSWORD}",
           "CA": str(pki / "ca.pem"), "FTPDATA": str(client_ftpdata)}
    env["GET"] = (f"ftp://{env['USER_PASS']}@{dial}/{servers.DATA_FILE} --security tls --data pasv "
                  f"--ca {env['CA']} --ftpdata {env['FTPDATA']} --timeout 8 get -o /dev/null")
    print(f"bringing up {ex.id}'s network with your files ...", file=sys.stderr)
    with LabNet(model, workdir=work / "net", devices=True) as net:
        proc, log = servers.start_builtin(net, model, statements, work, pki, 1)
        try:
            for name in model.nodes:
                node = net.mn[name]
                node.cmd(f"ftlab() {{ {shlex.quote(sys.executable)} -m lab.cli \"$@\"; }}")
                node.cmd(" ".join(f"export {k}={shlex.quote(v)};" for k, v in env.items()))
            print(banner(ex, model, env, log))
            student_cli()(net.mn, events=net.events_path)
        finally:
            terminate(proc)
            print("tearing down ...", file=sys.stderr)
    return 0


def banner(ex, model, env: dict, log: Path) -> str:
    devices = ", ".join(f"{n.name} ({'+'.join(n.device_kinds())})" for n in model.devices_on_path()) or "none"
    return "\n".join([
        f"{ex.id}: {ex.title}",
        f"nodes: {', '.join(model.nodes)}; devices on the path: {devices}",
        f"the FTP server runs in {model.ftp.server} (the lab's server, with your server FTP.DATA), user "
        f"{env['USER_PASS'].replace(':', ', password ')}; the client dials {env['SERVER']} (21, implicit 990)"
        + (f", over IPv6 {env['SERVER6']}" if env["SERVER6"] else "") + f"; its log: {log}",
        "in every node: $SERVER $SERVER6 $USER_PASS $CA $FTPDATA $GET are set, and `ftlab` is the lab's command:",
        f"  {model.ftp.client} ftlab client $GET",
        f"  {model.ftp.client} ftlab client ftp://$USER_PASS@$SERVER/data.bin --security plain --data port "
        "--ca $CA get -o /dev/null --verbose",
        "  events            what each device saw since the last `events` (`events all`: from the start)",
        "  exit              tear the network down",
    ])


def student_cli():
    """Mininet's CLI for students (see the module's docstring); Mininet is imported only where a network runs."""
    from mininet.cli import CLI

    class Student(CLI):
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
            found, self.offset = read_events(self.events_path, start)
            shown = [e for e in found if e.get("type") != "ready" or line.strip() == "all"]
            for e in shown:
                if self.t0 is None:
                    self.t0 = float(e.get("ts") or 0)
                print(f"  {float(e.get('ts') or 0) - self.t0:7.2f} s  {event_words(e)}")
            if not shown:
                print("  (no device event since the last `events`)")

    return Student
