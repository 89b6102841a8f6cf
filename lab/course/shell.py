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

The CLI, the nodes' variables and the banner are the general shell's (lab.network.cli: `ftlab
shell` has them too); the events' words are lab.devkit.events.describe, as on the live page.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from lab.course import exercise, progress, workspace
from lab.errors import InputError

SHELL = "shell"


def run(folder: Path, watch: bool = False, port: int = 0) -> int:
    """Bring the network of the student's files up with its FTP server, and the students' CLI;
    `watch`: the live view (lab.network.live) on 127.0.0.1 as well, served from this process."""
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
        from lab.network.live import LiveView

        events = folder.resolve() / workspace.WORK / SHELL / "net" / "events.jsonl"
        url = LiveView(where.model, lambda: [events], title=f"{ex.id} (your files)", port=port).start()
        print(f"live view: {url}  (open it in a browser on this machine)", file=sys.stderr)
    ensure_sandbox()          # re-runs this command in a sandbox of its own, then exits
    return _inside(ex, folder.resolve(), network.resolve())


def _inside(ex, folder: Path, network: Path) -> int:
    from lab.endpoints.launch import terminate
    from lab.matrix import servers
    from lab.matrix.runner import make_pki
    from lab.network.cli import ShellServer, banner, prepare_nodes, shell_cli, shell_env
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
    print(f"bringing up {ex.id}'s network with your files ...", file=sys.stderr)
    with LabNet(model, workdir=work / "net", devices=True) as net:
        proc, log = servers.start_builtin(net, model, statements, work, pki, 1)
        try:
            env = shell_env(model, ShellServer(proc, log, pki / "ca.pem", client_ftpdata),
                            user_pass=f"{servers.USER}:{servers.PASSWORD}")
            prepare_nodes(net, model, env)
            print(f"{ex.id}: {ex.title}\n" + banner(model, env, None, "your server FTP.DATA", log=log))
            shell_cli()(net.mn, events=net.events_path)
        finally:
            terminate(proc)
            print("tearing down ...", file=sys.stderr)
    return 0
