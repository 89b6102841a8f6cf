"""curl `ftps://` against the lab's server started on its TLSPORT (issue 15, item 4): with
SECUREIMPLICITZOS FALSE the port started with --listen speaks the handshake-first model that curl
and lftp expect; with TRUE (the z/OS default) curl's ClientHello meets a clear 220 and curl fails."""

from __future__ import annotations

import socket

import peers
import pytest

from lab.ftps.config import ServerConfig
from lab.ftps.server import FTPServer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _curl_present() -> None:
    if why := peers.missing("curl"):
        pytest.skip(why)


def on_tlsport(certs: peers.Certs, root, **statements) -> FTPServer:
    """The lab's server with --listen on its TLSPORT (a free port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return FTPServer(ServerConfig(TLSPORT=port, LOGINDELAY=0, **statements), root, {"alice": "pw"},
                     cert=certs.cert, key=certs.key, listen=("127.0.0.1", port)).start()


@pytest.fixture
def served(certs: peers.Certs, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    sha = peers.write_payload(root / "a.bin", 300_000)
    started = []

    def start(**statements):
        srv = on_tlsport(certs, root, **statements)
        started.append(srv)
        return srv
    yield start, root, sha
    for srv in started:
        srv.close()


def test_curl_ftps_url_on_the_tlsport(served, certs: peers.Certs, tmp_path) -> None:
    start, root, sha = served
    srv = start(SECUREIMPLICITZOS=False)
    out = tmp_path / "a.bin"
    url = f"ftps://127.0.0.1:{srv.address[1]}/a.bin"
    run = peers.curl(["--cacert", str(certs.ca), url, "-o", str(out)], "alice", "pw")
    assert run.ok, run
    assert peers.sha256_file(out) == sha
    assert "> AUTH" not in run.output and "> PROT P" in run.output
    run = peers.curl(["--cacert", str(certs.ca), "-T", str(out), f"ftps://127.0.0.1:{srv.address[1]}/up.bin"],
                     "alice", "pw")
    assert run.ok, run
    assert peers.sha256_file(root / "up.bin") == sha


def test_curl_ftps_url_against_the_zos_model_fails(served, certs: peers.Certs, tmp_path) -> None:
    start, _, _ = served
    srv = start(SECUREIMPLICITZOS=True)
    run = peers.curl(["--cacert", str(certs.ca), f"ftps://127.0.0.1:{srv.address[1]}/a.bin",
                      "-o", str(tmp_path / "x")], "alice", "pw", timeout=10)
    assert not run.ok, run
