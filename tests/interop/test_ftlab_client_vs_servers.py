"""The lab's client (`ftlab client --json`, as the matrix runner uses it) against real servers:
vsftpd (explicit TLS with require_ssl_reuse=YES, implicit_ssl=YES), ProFTPD + mod_tls (CCC under
`TLSRequired auth+data`, UseImplicitSSL) and pyftpdlib. Every transfer checks bytes and SHA-256."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import peers
import pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

SIZE = 900_000


def ftlab_client(peer: peers.Peer, path: str, op: list[str], *options: str, ca: Path,
                 port: int | None = None, scheme: str = "ftp") -> dict:
    url = f"{scheme}://{peer.user}:{peer.password}@{peer.host}:{port or peer.port}/{path}"
    argv = [sys.executable, "-m", "lab.cli", "client", url, "--json", "--timeout", "15", "--ca", str(ca),
            *options, *op]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=40)
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON from ftlab client (rc {done.returncode}): {done.stdout[-500:]} {done.stderr[-1500:]}")
    assert done.returncode == result["exit_code"]
    return result


def _get_put(peer: peers.Peer, tmp_path: Path, certs: peers.Certs, *options: str, **kw) -> list[dict]:
    sha = peers.write_payload(peer.root / "a.bin", SIZE)
    out = tmp_path / "a.bin"
    got = ftlab_client(peer, "a.bin", ["get", "-o", str(out)], *options, ca=certs.ca, **kw)
    assert got["outcome"] == "ok", got
    assert got["bytes"] == SIZE and got["sha256"] == sha == peers.sha256_file(out)
    put = ftlab_client(peer, "up.bin", ["put", str(out)], *options, ca=certs.ca, **kw)
    assert put["outcome"] == "ok", put
    assert put["bytes"] == SIZE and put["sha256"] == sha == peers.sha256_file(peer.root / "up.bin")
    return [got, put]


@pytest.mark.parametrize("data", ["pasv", "epsv", "port", "eprt"])
def test_vsftpd_explicit_session_reuse(vsftpd_explicit: peers.Peer, certs: peers.Certs, tmp_path: Path,
                                       data: str) -> None:
    results = _get_put(vsftpd_explicit, tmp_path, certs, "--security", "tls", "--data", data)
    transcript = "\n".join(results[0]["transcript"])
    assert "> AUTH TLS" in transcript and "> PROT P" in transcript
    # vsftpd logs whether each data connection resumed the control session (debug_ssl=YES)
    assert "No SSL session reuse" not in vsftpd_explicit.logs()


def test_vsftpd_implicit(vsftpd_implicit: peers.Peer, certs: peers.Certs, tmp_path: Path) -> None:
    results = _get_put(vsftpd_implicit, tmp_path, certs, "--security", "implicit", "--data", "pasv")
    assert "> AUTH" not in "\n".join(results[0]["transcript"])


@pytest.mark.parametrize("data", ["pasv", "epsv"])
def test_proftpd_ccc(proftpd_explicit: peers.Peer, certs: peers.Certs, tmp_path: Path, data: str) -> None:
    results = _get_put(proftpd_explicit, tmp_path, certs, "--security", "tls-ccc", "--data", data)
    for result in results:
        lines = result["transcript"]
        ccc = lines.index("> CCC")
        assert lines[ccc + 1].startswith("< 200"), lines
        # after CCC the client still protects data: no PROT C, and the data command came after CCC
        assert "> PROT C" not in lines and any(ln.startswith(("> RETR", "> STOR")) for ln in lines[ccc:])


def test_proftpd_implicit(proftpd_implicit: peers.Peer, certs: peers.Certs, tmp_path: Path) -> None:
    _get_put(proftpd_implicit, tmp_path, certs, "--security", "implicit", "--data", "epsv")


@pytest.mark.parametrize("data", ["pasv", "port"])
def test_pyftpdlib(pyftpdlib_tls: peers.Peer, certs: peers.Certs, tmp_path: Path, data: str) -> None:
    _get_put(pyftpdlib_tls, tmp_path, certs, "--security", "tls", "--data", data)


def test_pyftpdlib_refuses_ccc_stage_is_tls(pyftpdlib_tls: peers.Peer, certs: peers.Certs, tmp_path: Path) -> None:
    # pyftpdlib has no CCC (500): the client must say so as a TLS-stage failure, not carry on silently.
    peers.write_payload(pyftpdlib_tls.root / "a.bin", 1000)
    result = ftlab_client(pyftpdlib_tls, "a.bin", ["get", "-o", str(tmp_path / "x")], "--security", "tls-ccc",
                          ca=certs.ca)
    assert result["outcome"] == "failed" and result["stage"] == "tls" and result["code"] == 500, result
