"""Matrix cells with third-party endpoints: vsftpd sends active data from port 20 even on an
implicit session, the built-in server (RFC 959 L-1) from 989 - the static filter tells them apart."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab.report import results


def matrix(out, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "128KiB", "--throughput", "off",
                           "--out", str(out), *args], capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr
    return {s["id"]: s for s in results.load(out)["scenarios"]}


@pytest.mark.network
@pytest.mark.interop
@pytest.mark.timeout(240)
def test_static_filter_active_port_per_server(tmp_path):
    cells = matrix(tmp_path / "a", "--topologies", "static-filter", "--security", "implicit", "--data", "port",
                   "epsv", "--variants", "vsftpd")
    assert cells["static-filter/implicit/port"]["outcome"] == "fail"
    assert ":989 -> " in cells["static-filter/implicit/port"]["reason"]
    assert cells["static-filter/implicit/port+vsftpd"]["outcome"] == "pass"
    assert cells["static-filter/implicit/epsv+vsftpd"]["outcome"] == "pass"
    assert cells["static-filter/implicit/port+vsftpd"]["server"] == "vsftpd"


@pytest.mark.network
@pytest.mark.interop
@pytest.mark.timeout(240)
def test_curl_through_client_nat(tmp_path):
    cells = matrix(tmp_path / "b", "--topologies", "client-nat", "--security", "tls", "--client", "curl")
    assert set(cells) == {f"client-nat/tls/{d}+curl" for d in ("pasv", "epsv", "port", "eprt")}
    assert cells["client-nat/tls/pasv+curl"]["outcome"] == "pass"
    assert cells["client-nat/tls/pasv+curl"]["sha256_ok"] is True
    port = cells["client-nat/tls/port+curl"]
    assert port["outcome"] == "fail" and port["client"] == "curl"
    assert port["duration_s"] < 4      # the drop decides it, not curl's timeout
