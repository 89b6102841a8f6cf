"""The peer harness checked peer to peer (curl <-> vsftpd, lftp <-> ProFTPD, ftplib <-> vsftpd,
curl <-> pyftpdlib), so a failure of the lab's own client or server against a peer is never a
fixture problem. Every transfer checks bytes and SHA-256."""

from __future__ import annotations

import hashlib
import ssl
import time
from pathlib import Path

import peers
import pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


def _fetch_ok(run: peers.ClientRun, out: Path, sha: str, size: int) -> None:
    assert run.ok, run
    assert out.stat().st_size == size
    assert peers.sha256_file(out) == sha


@pytest.mark.parametrize("mode", [[], ["--disable-epsv"]], ids=["epsv", "pasv"])
def test_curl_vsftpd_explicit(vsftpd_explicit: peers.Peer, tmp_path: Path, mode: list[str]) -> None:
    p = vsftpd_explicit
    sha = peers.write_payload(p.root / "a.bin", 300_000)
    out = tmp_path / "a.bin"
    _fetch_ok(peers.curl(["--ssl-reqd", *mode, p.url("a.bin"), "-o", str(out)], p.user, p.password),
              out, sha, 300_000)
    # curl 7.88 uploads to vsftpd 3.0.3 under TLS 1.3 fail ~6 in 10 ("426 Failure reading network
    # stream": vsftpd's TLS shutdown on the data connection meets EPIPE); under TLS 1.2 10 in 10.
    up = peers.curl(["--ssl-reqd", "--tls-max", "1.2", *mode, "-T", str(out), p.url("up.bin")],
                    p.user, p.password)
    assert up.ok, up
    assert peers.sha256_file(p.root / "up.bin") == sha


def test_curl_vsftpd_refuses_no_session_reuse(vsftpd_explicit: peers.Peer, tmp_path: Path) -> None:
    # The fixture really enforces require_ssl_reuse=YES: a client without reuse is refused (rc 18/19/...).
    p = vsftpd_explicit
    peers.write_payload(p.root / "a.bin", 1000)
    run = peers.curl(["--ssl-reqd", "--no-sessionid", p.url("a.bin"), "-o", str(tmp_path / "x")],
                     p.user, p.password)
    assert not run.ok, run
    deadline = time.monotonic() + 5                 # vsftpd may log it after curl has gone
    while "session reuse required" not in p.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "session reuse required" in p.logs()


def test_curl_vsftpd_implicit(vsftpd_implicit: peers.Peer, tmp_path: Path) -> None:
    p = vsftpd_implicit
    sha = peers.write_payload(p.root / "a.bin", 200_000)
    out = tmp_path / "a.bin"
    _fetch_ok(peers.curl([p.url("a.bin"), "-o", str(out)], p.user, p.password), out, sha, 200_000)


def test_curl_ca_verifies_fixture_certificate(vsftpd_explicit: peers.Peer, certs: peers.Certs,
                                              tmp_path: Path) -> None:
    p = vsftpd_explicit
    sha = peers.write_payload(p.root / "a.bin", 5000)
    out = tmp_path / "a.bin"
    _fetch_ok(peers.curl(["--ssl-reqd", "--cacert", str(certs.ca), p.url("a.bin"), "-o", str(out)],
                         p.user, p.password), out, sha, 5000)


@pytest.mark.parametrize("settings", ["set ftp:ssl-force true",
                                      "set ftp:ssl-force true; set ftp:passive-mode false"],
                         ids=["pasv", "port"])
def test_lftp_proftpd_explicit(proftpd_explicit: peers.Peer, tmp_path: Path, settings: str) -> None:
    p = proftpd_explicit
    sha = peers.write_payload(p.root / "a.bin", 300_000)
    out = tmp_path / "a.bin"
    run = peers.lftp(p.url(), p.user, p.password, settings, f"get a.bin -o {out}; put {out} -o up.bin")
    _fetch_ok(run, out, sha, 300_000)
    assert peers.sha256_file(p.root / "up.bin") == sha


def test_lftp_proftpd_implicit(proftpd_implicit: peers.Peer, tmp_path: Path) -> None:
    p = proftpd_implicit
    sha = peers.write_payload(p.root / "a.bin", 100_000)
    out = tmp_path / "a.bin"
    _fetch_ok(peers.lftp(p.url(), p.user, p.password, "set ftp:ssl-protect-data true", f"get a.bin -o {out}"),
              out, sha, 100_000)


def test_curl_ccc_proftpd(proftpd_explicit: peers.Peer, tmp_path: Path) -> None:
    p = proftpd_explicit
    sha = peers.write_payload(p.root / "a.bin", 100_000)
    out = tmp_path / "a.bin"
    run = peers.curl(["--ssl-reqd", "--ftp-ssl-ccc", "--ftp-ssl-ccc-mode", "active", p.url("a.bin"),
                      "-o", str(out)], p.user, p.password)
    _fetch_ok(run, out, sha, 100_000)
    assert "< 200 CCC command successful" in run.output or "\n< 200" in run.output.split("> CCC", 1)[1], run


def test_ftplib_reuse_vsftpd(vsftpd_explicit: peers.Peer) -> None:
    p = vsftpd_explicit
    sha = peers.write_payload(p.root / "a.bin", 100_000)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ftp = peers.ReuseFTP_TLS(context=ctx, timeout=10)
    ftp.connect(p.host, p.port)
    ftp.login(p.user, p.password)
    ftp.prot_p()
    data = bytearray()
    ftp.retrbinary("RETR a.bin", data.extend)
    ftp.quit()
    assert hashlib.sha256(data).hexdigest() == sha


def test_curl_pyftpdlib(pyftpdlib_tls: peers.Peer, tmp_path: Path) -> None:
    p = pyftpdlib_tls
    sha = peers.write_payload(p.root / "a.bin", 100_000)
    out = tmp_path / "a.bin"
    _fetch_ok(peers.curl(["--ssl-reqd", p.url("a.bin"), "-o", str(out)], p.user, p.password), out, sha, 100_000)


@pytest.mark.parametrize("kind", ["vsftpd", "proftpd", "pyftpdlib"])
def test_fixture_leaves_nothing_behind(certs: peers.Certs, kind: str) -> None:
    if why := peers.missing(kind) or (kind != "pyftpdlib" and peers.need_root()):
        pytest.skip(why)
    peer = {"vsftpd": peers.start_vsftpd, "proftpd": peers.start_proftpd,
            "pyftpdlib": peers.start_pyftpdlib}[kind](certs)
    # a session still open when the fixture stops: its per-session process must go too
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ftp = peers.ReuseFTP_TLS(context=ctx, timeout=10)
    ftp.connect(peer.host, peer.port)
    ftp.login(peer.user, peer.password)
    pid, work = peer.proc.pid, peer.workdir
    children = peers.descendants(pid)
    assert children or kind == "pyftpdlib", "expected a per-session process"
    peer.stop()
    ftp.close()
    assert not any(Path(f"/proc/{p}").exists() for p in [pid, *children])
    assert not work.exists()
    assert peer.port not in peers.listening_ports()
