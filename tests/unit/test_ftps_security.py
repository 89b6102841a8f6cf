"""Issue 6 security items for the FTPS endpoints: no one let in, nothing leaked.

FTP bounce and passive-connection theft, slowed and logged failed logins, root escapes, client
certificates that must not log in, clear logins under SECURE_FTP REQUIRED, no password or private
key in any log or client output, and key files created 0600."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ftps_fixtures import RawControl, Servers, event_text, server_pki

from lab.endpoints.peers import free_port, stop_process, wait_listening
from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.grammar import format_command, parse_227
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(40)
SECRET = "S3cret pass;word"          # a password with a space and a ';', easy to spot in a log


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = server_pki(tmp_path_factory.mktemp("pki"))
    pki.issue_client(d, "alice")
    pki.issue_client(d, "bob")
    pki.issue(d, "client-expired", client=True, cn="alice", expired=True)
    pki.init_ca(d / "rogue", name="Rogue CA")
    pki.issue_client(d / "rogue", "alice")
    return d


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "root"
    (r / "pub").mkdir(parents=True)
    (r / "pub" / "f.txt").write_text("public\n")
    (tmp_path / "secret.txt").write_text("outside the root\n")
    os.symlink(tmp_path, r / "escape-dir")
    os.symlink(tmp_path / "secret.txt", r / "escape-file")
    return r


@pytest.fixture
def serve(pkidir, root):
    servers = Servers(pkidir, root, {"alice": SECRET, "bob": "pw2"}, implicit=False)
    yield servers.start
    servers.close()


class Raw(RawControl):
    """Logs in as alice with the secret password unless told otherwise."""

    def login(self, user="alice", password=SECRET):
        return super().login(user, password)


# -- bounce and theft ---------------------------------------------------------------------------------

def test_bounce_refused_under_portcommandipaddr_noredirect(serve):
    victim = socket.create_server(("127.0.0.2", 0))     # a third host
    victim.setblocking(False)
    vport = victim.getsockname()[1]
    r = Raw(serve(PORTCOMMANDIPADDR="NOREDIRECT").address)
    r.login()
    assert r.cmd(f"PORT 127,0,0,2,{vport >> 8},{vport & 255}").code == 504
    assert r.cmd(f"EPRT |1|127.0.0.2|{vport}|").code == 504
    # No data address was accepted, so LIST falls back to RFC 959's default: the client's own
    # control address and port, where nothing listens. The server tries that, and only that.
    me = r.sock.getsockname()
    reply = r.cmd("LIST")
    assert (reply.code, reply.text) == (425, f"Can't open data connection to {me[0]}:{me[1]}: Connection refused.")
    assert r.cmd("NOOP").code == 200                     # the session goes on
    # The server replied only after its connect attempt ended, so a connection to the victim would
    # be in its accept queue by now: there is none.
    with pytest.raises(BlockingIOError):
        victim.accept()


def test_bounce_possible_without_noredirect_shows_the_statement_matters(serve):
    victim = socket.create_server(("127.0.0.2", 0))
    victim.settimeout(5)
    vport = victim.getsockname()[1]
    r = Raw(serve(PORTCOMMANDIPADDR="UNRESTRICTED").address)
    r.login()
    assert r.cmd(f"PORT 127,0,0,2,{vport >> 8},{vport & 255}").code == 200
    r.sock.sendall(format_command("LIST", ""))
    conn, _ = victim.accept()                            # the server did connect to the third host
    conn.close()


def test_passive_theft_refused_under_passivedataconn_noredirect(serve):
    srv = serve(PASSIVEDATACONN="NOREDIRECT")
    r = Raw(srv.address)
    r.login()
    hp = parse_227(r.cmd("PASV").text)
    thief = socket.socket()
    thief.bind(("127.0.0.2", 0))
    thief.settimeout(5)
    thief.connect((hp.host, hp.port))                   # the thief races in before the RETR
    r.sock.sendall(format_command("RETR", "pub/f.txt"))
    assert thief.recv(100) == b""                        # closed, nothing leaked
    mine = socket.create_connection((hp.host, hp.port), timeout=5)
    assert r.reply().code == 150
    assert mine.recv(100) == b"public\n"
    assert "closed data connection from 127.0.0.2" in event_text(srv)


# -- logins -------------------------------------------------------------------------------------------

def test_failed_logins_are_slowed_and_logged_without_the_password(serve):
    srv = serve(LOGINDELAY=0.4)
    r = Raw(srv.address)
    times = []
    for attempt in ("guess1", "guess 2", SECRET + "x"):
        t = time.monotonic()
        assert r.login("alice", attempt).code == 530
        times.append(time.monotonic() - t)
    assert min(times) >= 0.35, times
    failures = [e for e in srv.events if "failed login" in str(e.get("line"))]
    assert len(failures) == 3 and all("alice" in str(e["line"]) for e in failures)
    text = event_text(srv)
    assert "guess1" not in text and "guess 2" not in text and SECRET not in text
    assert r.login("alice", SECRET).code == 230         # the right password still works


@pytest.mark.parametrize("path", ["../secret.txt", "../../../../etc/passwd", "/../secret.txt",
                                  "escape-file", "escape-dir/secret.txt", "pub/../../secret.txt"])
def test_root_escapes_refused(serve, path):
    r = Raw(serve().address)
    r.login()
    assert r.cmd(f"SIZE {path}").code == 550
    assert r.cmd(f"MLST {path}").code == 550
    r.cmd("PASV")
    assert r.cmd(f"RETR {path}").code == 550


def test_cwd_cannot_leave_the_root(serve, root):
    r = Raw(serve().address)
    r.login()
    assert r.cmd("CWD ../..").code == 250               # clamps at "/", as a chroot would
    assert '"/"' in r.cmd("PWD").text
    assert r.cmd("CWD escape-dir").code == 550
    r.cmd("PASV")
    assert r.cmd("STOR escape-dir/planted.txt").code == 550
    assert not (root.parent / "planted.txt").exists()


@pytest.mark.parametrize("cert, user", [("client-expired", "alice"), ("rogue/client-alice", "alice"),
                                        ("client-bob", "alice")])
def test_secure_login_refuses_bad_certificates(serve, pkidir, cert, user):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice", "bob": "bob"})
    c = FTPClient(ClientConfig(), security="tls", data="pasv", ca=pkidir / "ca.pem",
                  cert=pkidir / f"{cert}.pem", key=pkidir / f"{cert}.key")
    with c, pytest.raises(FTPError) as err:
        c.connect("127.0.0.1", srv.address[1])
        c.login(user, SECRET)
    assert err.value.stage in ("tls", "login"), err.value


def test_secure_login_admits_the_right_certificate(serve, pkidir):
    srv = serve(SECURE_LOGIN="VERIFY_USER", CERTUSERMAP={"alice": "alice"})
    c = FTPClient(ClientConfig(), security="tls", data="pasv", ca=pkidir / "ca.pem",
                  cert=pkidir / "client-alice.pem", key=pkidir / "client-alice.key")
    with c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice", SECRET)


def test_secure_ftp_required_refuses_a_clear_login(serve):
    srv = serve(SECURE_FTP="REQUIRED")
    r = Raw(srv.address)
    assert r.cmd("USER alice").code == 530
    assert r.cmd(f"PASS {SECRET}").code in (503, 530)
    assert r.cmd("PASV").code == 530                     # not logged in
    assert "login alice" not in event_text(srv)


# -- nothing secret in logs or outputs ------------------------------------------------------------------

def test_no_password_or_private_key_in_server_log_or_client_output(pkidir, root, tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    (tmp_path / "ftp.data").write_text("LOGINDELAY 0.1\n")
    argv = [sys.executable, "-m", "lab.cli", "server", "--listen", f"127.0.0.1:{port}", "--root", str(root),
            "--user", f"alice:{SECRET}", "--cert", str(pkidir / "server.pem"), "--key", str(pkidir / "server.key"),
            "--ftpdata", str(tmp_path / "ftp.data")]
    with open(log, "wb") as f:
        server = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    outputs = []
    try:
        wait_listening(server, port, log)
        base = ["ftlab", "client", "--ca", str(pkidir / "ca.pem"), "--verbose"]
        quoted = SECRET.replace(" ", "%20").replace(";", "%3B")
        for security in ("plain", "tls"):
            for password in (quoted, "wrong%20" + quoted):
                url = f"ftp://alice:{password}@127.0.0.1:{port}/pub/f.txt"
                for extra in ([], ["--json"]):
                    done = subprocess.run([*base, url, "--security", security, *extra, "get", "-o",
                                           str(tmp_path / "f.txt")], capture_output=True, text=True, timeout=30)
                    outputs.append(done.stdout + done.stderr)
        done = subprocess.run([*base, f"ftp://alice@127.0.0.1:{port}/pub/f.txt", "--password", SECRET, "get", "-o",
                               str(tmp_path / "g.txt")], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    finally:
        stop_process(server)
    server_log = log.read_text()
    assert "PASS ****" in server_log                     # the login was logged, masked
    import re
    logged = [ln for ln in server_log.splitlines() if "> USER alice" in ln]
    assert logged and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[", ln) for ln in logged)
    key_body = (pkidir / "server.key").read_text().splitlines()[1]
    for text in [server_log, *outputs]:
        assert SECRET not in text and "S3cret" not in text
        assert "PRIVATE KEY" not in text and key_body not in text


def test_failed_client_login_exit_code_and_reason(pkidir, root):
    srv = FTPServer(ServerConfig(SECURE_FTP="REQUIRED", LOGINDELAY=0), root, {"alice": SECRET},
                    cert=pkidir / "server.pem", key=pkidir / "server.key", listen=("127.0.0.1", 0)).start()
    try:
        done = subprocess.run(["ftlab", "client", f"ftp://alice@127.0.0.1:{srv.address[1]}/pub/f.txt",
                               "--password", SECRET, "--security", "plain", "get", "-o", os.devnull],
                              capture_output=True, text=True, timeout=30)
    finally:
        srv.close()
    assert done.returncode == 12, done.stderr            # login stage
    assert done.stderr.count("\n") == 1 and "login failed (reply 530)" in done.stderr
    assert "Traceback" not in done.stderr


# -- key files --------------------------------------------------------------------------------------------

def test_ca_and_issued_keys_are_0600_even_with_a_permissive_umask(tmp_path):
    d = tmp_path / "pki"
    env = dict(os.environ)
    old = os.umask(0)
    try:
        for argv in (["ca", "init", str(d)], ["ca", "issue", str(d), "--server", "srv", "--ip", "192.0.2.10"],
                     ["ca", "issue", str(d), "--client", "carol"]):
            done = subprocess.run(["ftlab", *argv], capture_output=True, text=True, env=env, timeout=30)
            assert done.returncode == 0, done.stderr
    finally:
        os.umask(old)
    keys = sorted(d.glob("*.key"))
    assert [k.name for k in keys] == ["ca.key", "client-carol.key", "srv.key"]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for cert in d.glob("*.pem"):
        assert not stat.S_IMODE(cert.stat().st_mode) & 0o022, cert


def test_concurrent_logins_do_not_cross_sessions(serve):
    """Two users logging in at once each get their own session state (no shared login flag)."""
    srv = serve()
    results = {}

    def login(user, password):
        r = Raw(srv.address)
        results[user] = (r.login(user, password).code, r.cmd("PWD").code)

    threads = [threading.Thread(target=login, args=("alice", SECRET)),
               threading.Thread(target=login, args=("bob", "wrong"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["alice"] == (230, 257) and results["bob"] == (530, 530)
