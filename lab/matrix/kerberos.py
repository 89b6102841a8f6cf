"""The Kerberos realm of a matrix network, for the cells of lab.ftps.modes.KERBEROS_MODES.

A real MIT KDC (lab/ftps/kdc.py, `python -m lab.ftps.kdc`) runs in the client node on that node's
loopback (127.0.0.1:88): only the client asks it for tickets, the server needs nothing but its keytab,
so no device on the path sees Kerberos traffic and the realm leaves nothing outside the network's
folder. The realm holds ftp/<every address the client dials> and the matrix's user; the client's
ticket is fetched with kinit in the client node. The worker's environment then names the realm
(KRB5_CONFIG), the server's keytab (KRB5_KTNAME) and the client's ticket cache (KRB5CCNAME): every
process it starts afterwards in the network (server, client agent) inherits them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.network.ready import file_shows, wait_until

REALM = "FTPLAB.TEST"
KDC_READY_TIMEOUT = 20.0


def dialled(topology) -> list[str]:
    """Every address the client may dial the server at (IPv4 and, on a dual-stack picture, IPv6)."""
    found = []
    for version in (4, 6):
        try:
            found.append(str(topology.server_address_of(version)))
        except ValueError:
            pass
    return found


def start(net, topology, workdir: Path, user: str) -> dict:
    """Create the realm, run its KDC in the client node, get the user's ticket; set the environment.
    Returns what the network's topology.json records about it."""
    realm = workdir / "realm"
    log = workdir / "kdc.log"
    client = topology.ftp.client
    argv = [sys.executable, "-m", "lab.ftps.kdc", str(realm), "--realm", REALM, "--host", "127.0.0.1",
            "--port", "88", "--user", user]
    for address in dialled(topology):
        argv += ["--service", address]
    with open(log, "wb") as out:
        proc = net.popen(client, argv, stdout=out, stderr=subprocess.STDOUT)
    wait_until(file_shows(log, "KDC for"), timeout=KDC_READY_TIMEOUT, what=f"the Kerberos KDC in {client}",
               proc=proc, log=log)
    os.environ.update(KRB5_CONFIG=str(realm / "krb5.conf"), KRB5_KDC_PROFILE=str(realm / "kdc.conf"),
                      KRB5_KTNAME=str(realm / "ftp.keytab"), KRB5CCNAME=f"FILE:{workdir / 'krb5cc'}")
    net.run(client, ["kinit", "-k", "-t", str(realm / f"user-{user}.keytab"), f"{user}@{REALM}"])
    return {"realm": REALM, "kdc": f"{client} 127.0.0.1:88", "services": [f"ftp/{a}" for a in dialled(topology)]}
