"""The lab's own FTP server (lab.ftps, `ftlab server`) started in a node of a running network:
the one way the matrix's servers (lab.matrix.servers) and the shell (lab.network.cli) start it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lab.network.ready import file_shows, wait_until
from lab.topology.model import Topology

#: The user every lab server has (the matrix's cells and the shell log in as it).
USER, PASSWORD = "lab", "lab-secret"
DATA_FILE = "data.bin"
READY_TIMEOUT = 10.0


def ftpdata_text(statements: dict) -> str:
    """FTP.DATA lines for statements (a list value: the statement once per item; None: left out)."""
    lines = [f"{key} {item}" for key, value in statements.items() if value is not None
             for item in (value if isinstance(value, list) else [value])]
    return "\n".join(lines) + "\n"


def start(net, topology: Topology, ftpdata: Path, root: Path, cert: Path, key: Path, log: Path
          ) -> subprocess.Popen:
    """`ftlab server` in the picture's server node on its control and implicit ports (one
    listener for both families where the picture has IPv6: IPv4 arrives mapped), once it listens."""
    any_address = "[::]" if any(i.address6 for n in topology.nodes.values() for i in n.interfaces) else "0.0.0.0"
    argv = [sys.executable, "-m", "lab.cli", "server", "--listen", f"{any_address}:{topology.ftp.control_port}",
            "--tls-listen", f"{any_address}:{topology.ftp.implicit_port}", "--root", str(root),
            "--user", f"{USER}:{PASSWORD}", "--cert", str(cert), "--key", str(key), "--ftpdata", str(ftpdata)]
    with open(log, "wb") as out:
        proc = net.popen(topology.ftp.server, argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(file_shows(log, "listening on"), timeout=READY_TIMEOUT,
                   what=f"the FTP server in {topology.ftp.server}", proc=proc, log=log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc
