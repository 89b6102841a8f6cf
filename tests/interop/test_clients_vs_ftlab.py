"""Other clients against the lab's server (`ftlab server` in its own process on 127.0.0.1): curl,
lftp and Python ftplib, each with the recipe of reference/peer-ftps-survey.md §4.2. Every transfer
checks bytes and SHA-256; the server requires TLS session reuse on data connections wherever the
client is expected to do it, so reuse is proven, not assumed."""

from __future__ import annotations

import hashlib
import io
import ssl
from pathlib import Path

import peers
import pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

SIZE = 700_000

# TLS allowed, data protection and session reuse required when TLS is on; implicit = handshake first.
STRICT = "SECURE_SESSION_REUSE REQUIRED\nSECUREIMPLICITZOS FALSE"


@pytest.fixture(autouse=True)
def _clients_present(request: pytest.FixtureRequest) -> None:
    for tool in ("curl", "lftp"):
        if tool in request.node.name and (why := peers.missing(tool)):
            pytest.skip(why)


def _check_get(run: peers.ClientRun, out: Path, sha: str) -> None:
    assert run.ok, run
    assert out.stat().st_size == SIZE, run
    assert peers.sha256_file(out) == sha


def _check_put(run: peers.ClientRun, server_file: Path, sha: str) -> None:
    assert run.ok, run
    assert server_file.stat().st_size == SIZE
    assert peers.sha256_file(server_file) == sha


# -- curl ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--disable-epsv"]], ids=["epsv", "pasv"])
def test_curl_explicit_tls(ftlab_server, certs: peers.Certs, tmp_path: Path, mode: list[str]) -> None:
    srv = ftlab_server(STRICT)
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    tls = ["--ssl-reqd", "--cacert", str(certs.ca)]
    run = peers.curl([*tls, *mode, srv.url("a.bin"), "-o", str(out)], srv.user, srv.password)
    _check_get(run, out, sha)
    assert ("> EPSV" in run.output) == (not mode) and "> PROT P" in run.output and "> AUTH" in run.output
    run = peers.curl([*tls, *mode, "-T", str(out), srv.url("up.bin")], srv.user, srv.password)
    _check_put(run, srv.root / "up.bin", sha)


def test_curl_uploads_repeated(ftlab_server, tmp_path: Path) -> None:
    # Ten uploads in a row must all arrive complete. Under TLS 1.3 the server's NewSessionTickets on
    # the data connection stay unread by curl, whose close then sends RST and loses the tail (426):
    # the server's default TLS version must avoid that.
    srv = ftlab_server(STRICT)
    sha = peers.write_payload(tmp_path / "a.bin", SIZE)
    failures = []
    for i in range(10):
        run = peers.curl(["--ssl-reqd", "-T", str(tmp_path / "a.bin"), srv.url(f"up{i}.bin")],
                         srv.user, srv.password)
        if not run.ok or peers.sha256_file(srv.root / f"up{i}.bin") != sha:
            failures.append(run.output.strip().splitlines()[-1])
    assert not failures, failures


def test_curl_implicit(ftlab_server, certs: peers.Certs, tmp_path: Path) -> None:
    srv = ftlab_server(STRICT, implicit_listener=True)
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    url = f"ftps://{srv.host}:{srv.tls_port}/a.bin"
    run = peers.curl(["--cacert", str(certs.ca), url, "-o", str(out)], srv.user, srv.password)
    _check_get(run, out, sha)
    assert "> AUTH" not in run.output


def test_curl_ccc_active_shutdown(ftlab_server, tmp_path: Path) -> None:
    srv = ftlab_server("TLSRFCLEVEL RFC4217")
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    run = peers.curl(["--ssl-reqd", "--ftp-ssl-ccc", "--ftp-ssl-ccc-mode", "active", srv.url("a.bin"),
                      "-o", str(out)], srv.user, srv.password)
    _check_get(run, out, sha)
    replies_after_ccc = [ln for ln in run.output.split("> CCC", 1)[1].splitlines() if ln.startswith("< ")]
    assert replies_after_ccc[0].startswith("< 200"), run
    # The server saw the commands after CCC in clear text, and the data stayed protected.
    log = srv.logs()
    assert "> CCC" in log and "> PROT P" in log


def test_curl_active_clear_data(ftlab_server, tmp_path: Path) -> None:
    srv = ftlab_server("")
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    run = peers.curl(["--ftp-ssl-control", "-P", "-", "--disable-eprt", srv.url("a.bin"), "-o", str(out)],
                     srv.user, srv.password)
    _check_get(run, out, sha)
    assert "> PORT 127,0,0,1," in run.output and "> PROT P" not in run.output
    run = peers.curl(["--ftp-ssl-control", "-P", "-", "--disable-eprt", "-T", str(out), srv.url("up.bin")],
                     srv.user, srv.password)
    _check_put(run, srv.root / "up.bin", sha)


def test_curl_ascii_mode(ftlab_server, tmp_path: Path) -> None:
    """curl -B (TYPE A) over TLS: the server sends CRLF and curl turns it back into LF; curl --crlf
    uploads CRLF lines and the server stores LF."""
    srv = ftlab_server(STRICT)
    text = b"".join(b"line %d\n" % i for i in range(20000))
    (srv.root / "t.txt").write_bytes(text)
    out = tmp_path / "t.txt"
    run = peers.curl(["--ssl-reqd", "-B", srv.url("t.txt"), "-o", str(out), "-w", "wire=%{size_download}"],
                     srv.user, srv.password)
    assert run.ok and "> TYPE A" in run.output, run
    lines = text.count(b"\n")
    assert f"wire={len(text) + lines}" in run.output        # one CR added per line on the wire
    assert out.read_bytes() == text
    run = peers.curl(["--ssl-reqd", "-B", "--crlf", "-T", str(out), srv.url("up.txt")], srv.user, srv.password)
    assert run.ok and "> TYPE A" in run.output, run
    assert (srv.root / "up.txt").read_bytes() == text


# -- lftp ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", ["set ftp:ssl-force true; set ftp:passive-mode true",
                                      "set ftp:ssl-force true; set ftp:passive-mode false"],
                         ids=["pasv", "port"])
def test_lftp_explicit_tls(ftlab_server, certs: peers.Certs, tmp_path: Path, settings: str) -> None:
    srv = ftlab_server(STRICT)
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    run = peers.lftp(srv.url(), srv.user, srv.password, settings,
                     f"get a.bin -o {out}; put {out} -o up.bin", ca=certs.ca)
    _check_get(run, out, sha)
    _check_put(run, srv.root / "up.bin", sha)
    verb = "PASV" if "true" in settings.rsplit(";", 1)[1] else "PORT"
    assert f"---> {verb}" in run.output and "---> PROT P" in run.output, run


def test_lftp_implicit(ftlab_server, certs: peers.Certs, tmp_path: Path) -> None:
    srv = ftlab_server(STRICT, implicit_listener=True)
    sha = peers.write_payload(srv.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    run = peers.lftp(f"ftps://{srv.host}:{srv.tls_port}", srv.user, srv.password,
                     "set ftp:ssl-protect-data true", f"get a.bin -o {out}; put {out} -o up.bin",
                     ca=certs.ca)
    _check_get(run, out, sha)
    _check_put(run, srv.root / "up.bin", sha)


# -- Python ftplib ---------------------------------------------------------------------------------

@pytest.mark.parametrize("passive", [True, False], ids=["pasv", "port"])
def test_ftplib_session_reuse(ftlab_server, certs: peers.Certs, passive: bool) -> None:
    srv = ftlab_server(STRICT)
    payload = peers.write_payload(srv.root / "a.bin", SIZE)
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ftp = peers.ReuseFTP_TLS(context=ctx, timeout=10)
    ftp.connect(srv.host, srv.port)
    ftp.login(srv.user, srv.password)
    ftp.prot_p()
    ftp.set_pasv(passive)
    data = bytearray()
    ftp.retrbinary("RETR a.bin", data.extend)
    assert len(data) == SIZE and hashlib.sha256(data).hexdigest() == payload
    ftp.storbinary("STOR up.bin", io.BytesIO(bytes(data)))
    ftp.quit()
    assert peers.sha256_file(srv.root / "up.bin") == payload


def test_ftplib_without_reuse_is_refused(ftlab_server, certs: peers.Certs) -> None:
    # The other side of the coin: stock FTP_TLS does not reuse the session, so under
    # SECURE_SESSION_REUSE REQUIRED its data connection is refused (as vsftpd/ProFTPD do).
    import ftplib

    srv = ftlab_server(STRICT)
    peers.write_payload(srv.root / "a.bin", 1000)
    ftp = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=str(certs.ca)), timeout=10)
    ftp.connect(srv.host, srv.port)
    ftp.login(srv.user, srv.password)
    ftp.prot_p()
    with pytest.raises((ftplib.error_perm, ftplib.error_temp, ssl.SSLError, OSError)):
        ftp.retrbinary("RETR a.bin", lambda b: None)
    ftp.close()
