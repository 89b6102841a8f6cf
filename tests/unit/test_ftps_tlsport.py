"""A server started on its TLSPORT is implicit (issue 15, item 4): `ftlab server --listen ADDR:P` with
`TLSPORT P` in its FTP.DATA treats every connection on P as implicit TLS, as z/OS does, and
SECUREIMPLICITZOS picks the model (clear 220 first, or the handshake first). Before, the server
answered the client's ClientHello with 500 and an implicit client failed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)

PAYLOAD = bytes(range(256)) * 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server(d, "server", ips=["127.0.0.1"])
    return d


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    (r / "f.bin").write_bytes(PAYLOAD)
    return r


def on_tlsport(pkidir: Path, root: Path, **statements) -> FTPServer:
    port = free_port()
    cfg = ServerConfig(TLSPORT=port, LOGINDELAY=0, **statements)
    return FTPServer(cfg, root, {"alice": "pw"}, cert=pkidir / "server.pem", key=pkidir / "server.key",
                     listen=("127.0.0.1", port)).start()


@pytest.mark.parametrize("zos, security", [(True, "implicit-zos"), (False, "implicit")])
def test_listen_on_tlsport_is_implicit(pkidir, root, zos, security):
    srv = on_tlsport(pkidir, root, SECUREIMPLICITZOS=zos)
    try:
        assert srv.listen_implicit and srv.tls_address == srv.address
        for data in ("pasv", "port"):
            with FTPClient(security=security, data=data, ca=pkidir / "ca.pem") as c:
                c.connect("127.0.0.1", srv.address[1])
                c.login("alice", "pw")
                assert c.get("f.bin").bytes == len(PAYLOAD)
                # a session on the secure port: no AUTH, no CCC (z/OS replies)
                assert c.command("AUTH", "TLS").code == 503
                ccc = c.command("CCC")
                assert ccc.code == 534 and "secure port" in ccc.text
        transcript = " ".join(line for _, _, line in c.transcript)
        assert "TLS established" in transcript
    finally:
        srv.close()


def test_model_mismatch_on_tlsport_fails_at_tls(pkidir, root):
    # z/OS model server (clear 220 first), handshake-first client: the client's ClientHello meets
    # the clear 220; the session fails at the tls stage, never goes on in clear.
    srv = on_tlsport(pkidir, root, SECUREIMPLICITZOS=True)
    try:
        with FTPClient(ClientConfig(MYOPENTIME=3), security="implicit", ca=pkidir / "ca.pem") as c, \
                pytest.raises(FTPError) as err:
            c.connect("127.0.0.1", srv.address[1])
            c.login("alice", "pw")
        assert err.value.stage == "tls"
    finally:
        srv.close()


def test_plain_client_on_tlsport_is_not_served_in_clear(pkidir, root):
    srv = on_tlsport(pkidir, root)
    try:
        with FTPClient(ClientConfig(MYOPENTIME=3, INACTTIME=3), security="plain") as c, \
                pytest.raises(FTPError) as err:
            c.connect("127.0.0.1", srv.address[1])
            c.login("alice", "pw")
        assert err.value.stage in ("login", "tls")
        assert "230" not in " ".join(line for _, _, line in c.transcript)
    finally:
        srv.close()


def test_tlsport_zero_leaves_the_port_clear(pkidir, root):
    port = free_port()
    srv = FTPServer(ServerConfig(TLSPORT=0, LOGINDELAY=0), root, {"alice": "pw"},
                    listen=("127.0.0.1", port)).start()
    try:
        assert not srv.listen_implicit and srv.tls_address is None
        with FTPClient(security="plain", data="pasv") as c:
            c.connect("127.0.0.1", port)
            c.login("alice", "pw")
            assert c.get("f.bin").bytes == len(PAYLOAD)
    finally:
        srv.close()


def test_tlsport_without_certificate_is_refused(root):
    port = free_port()
    with pytest.raises(ValueError, match="TLSPORT"):
        FTPServer(ServerConfig(TLSPORT=port), root, {"alice": "pw"}, listen=("127.0.0.1", port))


# -- the command line, as the issue tried it -------------------------------------------------------

def _ftlab(*argv: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", *argv]


def _wait_listening(port: int, proc: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not listen")


def test_cli_server_on_tlsport_with_implicit_zos_client(pkidir, root, tmp_path):
    port = free_port()
    ftpdata = tmp_path / "server.data"
    ftpdata.write_text(f"TLSPORT {port}\nLOGINDELAY 0\n")
    server = subprocess.Popen(_ftlab("server", "--listen", f"127.0.0.1:{port}", "--root", str(root),
                                     "--user", "alice:pw", "--cert", str(pkidir / "server.pem"),
                                     "--key", str(pkidir / "server.key"), "--ftpdata", str(ftpdata)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(port, server)
        done = subprocess.run(_ftlab("client", "--security", "implicit-zos", "--ca", str(pkidir / "ca.pem"),
                                     f"ftp://alice:pw@127.0.0.1:{port}/f.bin", "get", "-o", "/dev/null",
                                     "--verbose"),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert f"{len(PAYLOAD)} bytes" in done.stdout
        assert "TLS established" in done.stderr and "> AUTH" not in done.stderr
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=10)
    assert f"implicit TLS: TLSPORT {port}, clear 220 first" in out
    assert "< 500" not in out               # the ClientHello is no longer taken for a command


def test_cli_server_on_tlsport_without_certificate(root, tmp_path):
    port = free_port()
    ftpdata = tmp_path / "server.data"
    ftpdata.write_text(f"TLSPORT {port}\n")
    done = subprocess.run(_ftlab("server", "--listen", f"127.0.0.1:{port}", "--root", str(root),
                                 "--user", "a:b", "--ftpdata", str(ftpdata)),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--listen" in done.stderr and "TLSPORT" in done.stderr
    assert "Traceback" not in done.stderr
