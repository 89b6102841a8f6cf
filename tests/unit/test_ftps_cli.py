"""`ftlab client/server/ca` on the command line: one distinct, documented exit code per failure stage,
a one-line reason, --json on success and failure, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab.ftps import pki
from lab.ftps.cli import EXIT_CODES
from lab.ftps.config import ServerConfig
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)


def ftlab(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server(d, "server", ips=["127.0.0.1"])
    pki.init_ca(d / "other")
    return d


@pytest.fixture
def server(pkidir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"0123456789" * 1000)
    srv = FTPServer(ServerConfig(LOGINDELAY=0, PORTCOMMAND="REJECT"), root, {"alice": "pw"},
                    cert=pkidir / "server.pem", key=pkidir / "server.key", listen=("127.0.0.1", 0)).start()
    yield srv
    srv.close()


def url(srv: FTPServer, path: str = "f.bin", user: str = "alice:pw") -> str:
    return f"ftp://{user}@127.0.0.1:{srv.address[1]}/{path}"


def test_exit_codes_are_distinct_and_documented():
    codes = [c for stage, c in EXIT_CODES.items()]
    assert len(codes) == len(set(codes))
    helptext = ftlab("client", "--help").stdout
    for stage, code in EXIT_CODES.items():
        assert f"{code:3}  {stage}" in helptext
    readme = (Path(__file__).resolve().parents[2] / "lab" / "ftps" / "README.md").read_text()
    for stage, code in EXIT_CODES.items():
        assert f"| {code} | {stage} |" in readme


def test_success_prints_bytes_sha_and_rate(server, pkidir, tmp_path):
    done = ftlab("client", url(server), "--security", "tls", "--data", "epsv", "--ca", str(pkidir / "ca.pem"),
                 "get", "-o", str(tmp_path / "f.bin"))
    assert done.returncode == 0, done.stderr
    import hashlib
    sha = hashlib.sha256(b"0123456789" * 1000).hexdigest()
    assert done.stdout.startswith(f"10000 bytes  sha256 {sha}") and "MB/s" in done.stdout


def test_ascii_get_and_put(server, pkidir, tmp_path):
    (Path(server.root) / "t.txt").write_bytes(b"one\ntwo\n")
    done = ftlab("client", url(server, "t.txt"), "--ascii", "--data", "pasv", "get", "-o", str(tmp_path / "t.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.txt").read_bytes() == b"one\ntwo\n"
    assert done.stdout.startswith("10 bytes") and "TYPE A: bytes on the wire" in done.stdout
    done = ftlab("client", url(server, "back.txt"), "--data", "pasv", "put", str(tmp_path / "t.txt"), "--ascii")
    assert done.returncode == 0 and (Path(server.root) / "back.txt").read_bytes() == b"one\ntwo\n", done.stderr


@pytest.fixture
def unreachable_pasv_server():
    """A scripted server whose 227 names a port where nothing listens (data-connect failure).
    Closed after the test: a listener left behind would count against other tests' port checks."""
    lsock = socket.create_server(("127.0.0.1", 0))
    yield _serve_unreachable_pasv(lsock)
    lsock.close()


def _serve_unreachable_pasv(lsock: socket.socket) -> int:
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()

    def run() -> None:
        while True:                      # one session per client run
            try:
                conn, _ = lsock.accept()
            except OSError:              # closed by the fixture
                return
            conn.sendall(b"220 hi\r\n")
            for line in conn.makefile("rb"):
                verb = line.split()[0].upper()
                if verb == b"PASV":
                    conn.sendall(f"227 ok (127,0,0,1,{dead_port >> 8},{dead_port & 255})\r\n".encode())
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                else:
                    conn.sendall({b"USER": b"331 pw\r\n", b"PASS": b"230 ok\r\n"}.get(verb, b"200 ok\r\n"))
            conn.close()

    threading.Thread(target=run, daemon=True).start()
    return lsock.getsockname()[1]


@pytest.mark.parametrize("case, stage", [
    ("connect", "connect"), ("tls", "tls"), ("login", "login"), ("data-setup", "data-setup"),
    ("data-connect", "data-connect"), ("transfer", "transfer"), ("usage", "usage")])
def test_each_failure_stage_has_its_exit_code_and_one_line(server, pkidir, tmp_path, case, stage,
                                                            unreachable_pasv_server):
    ca = str(pkidir / "ca.pem")
    out = ["get", "-o", str(tmp_path / "x")]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    argv = {
        "connect": [f"ftp://a:b@127.0.0.1:{closed_port}/f", *out],
        "tls": [url(server), "--security", "tls", "--ca", str(pkidir / "other" / "ca.pem"), *out],
        "login": [url(server, user="alice:nope"), *out],
        "data-setup": [url(server), "--data", "port", *out],
        "data-connect": [f"ftp://a:b@127.0.0.1:{unreachable_pasv_server}/f", "--data", "pasv", *out],
        "transfer": [url(server, "missing.bin"), "--security", "tls", "--data", "pasv", "--ca", ca, *out],
        "usage": ["http://nowhere/f", *out],
    }[case]
    for json_mode in (False, True):
        done = ftlab("client", *argv, *(["--json"] if json_mode else []))
        assert done.returncode == EXIT_CODES[stage], (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if json_mode:
            result = json.loads(done.stdout)
            assert result["outcome"] == "failed" and result["stage"] == stage and result["reason"]
        else:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_json_success_has_the_runner_fields(server, pkidir, tmp_path):
    done = ftlab("client", url(server), "--security", "tls-ccc", "--data", "pasv", "--ca", str(pkidir / "ca.pem"),
                 "--json", "get", "-o", str(tmp_path / "f.bin"))
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["outcome"] == "ok" and result["stage"] is None
    assert result["bytes"] == 10000 and len(result["sha256"]) == 64 and result["seconds"] >= 0
    assert "> CCC" in result["transcript"] and "> PASS ****" in result["transcript"]


@pytest.mark.parametrize("argv, needle", [
    (["server", "--listen", "127.0.0.1", "--root", "/", "--user", "a:b"], "ADDR:PORT"),
    (["server", "--listen", "127.0.0.1:0", "--root", "/nonexistent", "--user", "a:b"], "not a directory"),
    (["server", "--listen", "127.0.0.1:0", "--root", "/", "--user", "nopassword"], "NAME:PASSWORD"),
    (["server", "--listen", "127.0.0.1:0", "--root", "/", "--user", "a:b", "--cert", "/nonexistent"], "give both"),
    (["server", "--listen", "127.0.0.1:0", "--root", "/", "--user", "a:b", "--ftpdata", "/nonexistent"], "no such FTP.DATA file"),
    (["ca", "issue", "/nonexistent-dir", "--client", "bob"], "ftlab ca init"),
])
def test_bad_arguments_are_clear_errors(argv, needle):
    done = ftlab(*argv)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_bad_ftpdata_names_file_and_line(tmp_path):
    bad = tmp_path / "ftp.data"
    bad.write_text("SECURE_FTP REQUIRED\nPASSIVEDATAPORTS (70000,70010)\n")
    done = ftlab("server", "--listen", "127.0.0.1:0", "--root", str(tmp_path), "--user", "a:b", "--ftpdata", str(bad))
    assert done.returncode == 2 and f"{bad}:2: PASSIVEDATAPORTS" in done.stderr, done.stderr


def test_server_port_in_use_is_a_clear_error(tmp_path):
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        done = ftlab("server", "--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--root", str(tmp_path),
                     "--user", "a:b")
    finally:
        busy.close()
    assert done.returncode == 3 and "cannot listen" in done.stderr and "Traceback" not in done.stderr


# -- hostile input files (issue 10, item 13): one line naming the file, exit 2, never a traceback ---------

@pytest.fixture
def bad_files(tmp_path, pkidir) -> dict[str, Path]:
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    (tmp_path / "text.pem").write_text("this is not a certificate\n")
    (tmp_path / "der.pem").write_bytes(b"\x30\x82\x03\x00" + bytes(range(256)))
    (tmp_path / "keyring.data").write_text(f"KEYRING {tmp_path / 'missing-keyring.pem'}\n")
    (tmp_path / "zero.data").symlink_to("/dev/zero")
    return {"fifo": fifo, "text": tmp_path / "text.pem", "der": tmp_path / "der.pem",
            "keyring": tmp_path / "keyring.data", "zero": tmp_path / "zero.data",
            "cert": pkidir / "server.pem", "key": pkidir / "server.key", "otherkey": pkidir / "other" / "ca.key"}


def _one_clear_line(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "OpenSSL" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


SERVER = ["server", "--listen", "127.0.0.1:0", "--root", "/", "--user", "a:b"]


@pytest.mark.parametrize("extra, file, why", [
    (["--ftpdata", "{zero}"], "zero", "not a regular file"),
    (["--ftpdata", "{fifo}"], "fifo", "not a regular file"),
    (["--ftpdata", "{keyring}"], "keyring", "no such"),
    (["--cert", "{text}", "--key", "{key}"], "text", "not a PEM certificate"),
    (["--cert", "{der}", "--key", "{key}"], "der", "not UTF-8"),
    (["--cert", "{fifo}", "--key", "{key}"], "fifo", "not a regular file"),
    (["--cert", "{cert}", "--key", "{text}"], "text", "not a PEM private key"),
    (["--cert", "{cert}", "--key", "{otherkey}"], "otherkey", "does not belong"),
    (["--cert", "{cert}", "--key", "{key}", "--ca", "{text}"], "text", "not a PEM certificate"),
    (["--cert", "{cert}", "--key", "{key}", "--ca", "{fifo}"], "fifo", "not a regular file"),
])
def test_server_input_files(bad_files, extra, file, why):
    argv = [a.format(**bad_files) for a in extra]
    _one_clear_line(ftlab(*SERVER, *argv, timeout=10), str(bad_files[file]) if file != "keyring" else "missing-keyring",
                    why)


@pytest.mark.parametrize("extra, file, why", [
    (["--ca", "{text}"], "text", "not a PEM certificate"),
    (["--ca", "{fifo}"], "fifo", "not a regular file"),
    (["--ftpdata", "{zero}"], "zero", "not a regular file"),
    (["--cert", "{cert}", "--key", "{text}"], "text", "not a PEM private key"),
])
def test_client_input_files(bad_files, extra, file, why):
    argv = [a.format(**bad_files) for a in extra]
    _one_clear_line(ftlab("client", "ftp://a:b@127.0.0.1:1/f", *argv, "get", timeout=10), str(bad_files[file]), why)


def test_client_refuses_a_url_that_smuggles_a_command():
    _one_clear_line(ftlab("client", "ftp://a:b@127.0.0.1:1/f%0d%0aDELE%20x", "get"), "CR, LF or NUL in the path")


@pytest.mark.parametrize("damage", ["ca.pem", "ca.key"])
def test_ca_issue_with_a_damaged_ca(tmp_path, damage):
    pki.init_ca(tmp_path)
    (tmp_path / damage).write_text("garbage\n")
    _one_clear_line(ftlab("ca", "issue", str(tmp_path), "--client", "bob"), str(tmp_path / damage), "not a PEM")
