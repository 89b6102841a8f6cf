"""The devices with real packets: the scapy ALG, the kernel helper and the dynamic filter on
NFQUEUE inside the shipped pictures, with the lab's FTPS server and client (and ftplib where a
test needs to choose the exact command after CCC).

Every scenario runs in its own sandbox (lab.sandbox.call_in_sandbox): the `in_sandbox_*`
functions execute there and return plain JSON, the tests assert on it.
"""

from __future__ import annotations

import pytest

from lab.sandbox import call_in_sandbox

pytestmark = [pytest.mark.network]

DATA_MODES = ["pasv", "epsv", "port", "eprt"]
USER, PASSWORD = "lab", "lab-pw"
FILE_SIZE = 300_000


# -- bodies (run inside the sandbox) ------------------------------------------------------------

class Site:
    """A LabNet with the lab's server running on the `server` node."""

    def __init__(self, topology, alg=None, env=None):
        import os
        import tempfile
        from pathlib import Path

        from lab.net import LabNet

        self.tmp = Path(tempfile.mkdtemp(prefix="ftlab-devtest-"))
        if env:
            os.environ.update(env)
        self.net = LabNet(topology, alg=alg, workdir=self.tmp / "run")
        self.topology = topology

    def __enter__(self):
        import os
        import sys
        import time
        from pathlib import Path

        from lab.ftps import pki

        self.net.__enter__()
        try:
            root = self.tmp / "root"
            root.mkdir()
            (root / "f.bin").write_bytes(os.urandom(FILE_SIZE))
            addr = str(self.topology.ftp.server_address)
            pki.init_ca(self.tmp / "pki")
            issued = pki.issue_server(self.tmp / "pki", "server", ips=[addr, str(self.net.address("server"))])
            ftpdata = self.tmp / "server.ftpdata"
            ftpdata.write_text("".join(f"{k} {v}\n" for k, v in self.topology.ftp.server_statements.items()))
            self.ftlab = str(Path(sys.executable).with_name("ftlab"))
            self.server = self.net.popen("server", [
                self.ftlab, "server", "--listen", "0.0.0.0:21", "--tls-listen", "0.0.0.0:990",
                "--root", str(root), "--user", f"{USER}:{PASSWORD}", "--cert", str(issued.cert),
                "--key", str(issued.key), "--ftpdata", str(ftpdata), "--quiet"],
                stdout=open(self.tmp / "server.log", "w"), stderr=open(self.tmp / "server.err", "w"))
            deadline = time.monotonic() + 10
            while ":21 " not in self.net.run("server", ["ss", "-ltn"]).stdout:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError(f"server did not start: {(self.tmp / 'server.err').read_text()}")
                time.sleep(0.05)
        except BaseException:
            self.net.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        import shutil

        self.net.__exit__(*exc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def client(self, security: str, data: str, count: int = 1, noop_after_ccc: bool = False,
               timeout: float = 4) -> dict:
        """One session of the ftplib driver in the client node."""
        import json
        import sys
        from pathlib import Path

        argv = [sys.executable, str(Path(__file__).with_name("ftp_driver.py")),
                str(self.topology.ftp.server_address), USER, PASSWORD, "f.bin", "--security", security,
                "--data", data, "--count", str(count), "--timeout", str(timeout)]
        if noop_after_ccc:
            argv.append("--noop-after-ccc")
        done = self.net.run("client", argv, check=False, timeout=timeout * (count + 4))
        try:
            result = json.loads(done.stdout)
        except ValueError:
            result = {"ok": False, "stdout": done.stdout[-500:], "stderr": done.stderr[-500:]}
        return result

    def events(self) -> list[dict]:
        from nat.events import read

        return read(self.net.events_path)


def in_sandbox_matrix(name: str, alg: str | None, cells: list[list[str]]) -> dict:
    from lab.topo import load

    with Site(load(name), alg) as site:
        results = {f"{s}/{d}": site.client(s, d) for s, d in cells}
        return {"results": results, "events": site.events()}


# -- tests ----------------------------------------------------------------------------------------

def ok(result: dict) -> bool:
    return result.get("ok") is True and set(result["bytes"]) == {FILE_SIZE}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["client-nat", "server-nat", "double-nat"])
def test_alg_plain_all_data_modes(name):
    out = call_in_sandbox(__file__, "in_sandbox_matrix", name, "scapy",
                          [["plain", d] for d in DATA_MODES], timeout=110)
    failed = {k: v for k, v in out["results"].items() if not ok(v)}
    assert not failed, (failed, [e for e in out["events"] if e["type"] in ("error", "drop")])
