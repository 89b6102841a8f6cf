"""Three-way (proxy, FXP) transfers between two of the lab's servers, driven by the lab's client
(lab/ftps/fxp.py), on loopback addresses of their own: the client is 127.0.0.1, the source server
127.0.0.2, the destination 127.0.0.3, so that the z/OS statements against three-way transfers see
another host than the client. Every copy is checked by SHA-256 in the destination's root."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ftps_fixtures import event_text

from lab.ftps import pki
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.fxp import fxp
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)

PAYLOAD = bytes(range(256)) * 4000            # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
SRC, DST = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue_server(d, "server", ips=["127.0.0.1", SRC, DST], dns=["localhost"])
    return d


class Pair:
    """A source and a destination server, each on its own address with its own root."""

    def __init__(self, pkidir: Path, tmp: Path):
        self.pkidir, self.tmp = pkidir, tmp
        self.started: list[FTPServer] = []

    def start(self, src: dict | None = None, dst: dict | None = None) -> dict:
        found = {}
        for name, addr, statements in (("src", SRC, src or {}), ("dst", DST, dst or {})):
            root = self.tmp / name
            root.mkdir(exist_ok=True)
            events: list[dict] = []
            cfg = ServerConfig(**{"LOGINDELAY": 0, "DATATIMEOUT": 5, **statements})
            srv = FTPServer(cfg, root, {"alice": "pw"}, cert=self.pkidir / "server.pem",
                            key=self.pkidir / "server.key", ca=self.pkidir / "ca.pem", listen=(addr, 0),
                            log=events.append)
            srv.events = events
            self.started.append(srv.start())
            found[name], found[f"{name}_srv"] = root, srv
        (found["src"] / "f.bin").write_bytes(PAYLOAD)
        return found

    def close(self) -> None:
        for s in self.started:
            s.close()


@pytest.fixture
def pair(pkidir, tmp_path):
    p = Pair(pkidir, tmp_path)
    yield p
    p.close()


def session(srv, pkidir: Path, security: str) -> FTPClient:
    c = FTPClient(ClientConfig(DATACONNTIME=2), security=security, ca=pkidir / "ca.pem")
    c.connect(srv.address[0], srv.address[1])
    c.login("alice", "pw")
    return c


def run(roots, pkidir, security="plain", **kw):
    with session(roots["src_srv"], pkidir, security) as a, session(roots["dst_srv"], pkidir, security) as b:
        return fxp(a, b, "f.bin", "copy.bin", **kw)


@pytest.mark.parametrize("data", ["pasv", "epsv"])
@pytest.mark.parametrize("passive", ["src", "dst"])
def test_plain_three_way_transfer(pair, pkidir, data, passive):
    roots = pair.start()
    result = run(roots, pkidir, data=data, passive=passive)
    assert result.bytes == len(PAYLOAD) and result.passive == passive
    assert hashlib.sha256((roots["dst"] / "copy.bin").read_bytes()).hexdigest() == SHA


@pytest.mark.parametrize("sscn, passive", [("src", "dst"), ("dst", "src"), ("src", "src")])
def test_protected_three_way_transfer_with_sscn(pair, pkidir, sscn, passive):
    roots = pair.start()
    result = run(roots, pkidir, "tls", passive=passive, sscn=sscn)
    assert result.sscn == sscn
    assert hashlib.sha256((roots["dst"] / "copy.bin").read_bytes()).hexdigest() == SHA
    # the data connection's TLS client was the SSCN server: the other one logged a TLS server handshake
    assert "SSCN:CLIENT METHOD" in event_text(roots[f"{sscn}_srv"])


def test_protected_three_way_transfer_after_ccc(pair, pkidir):
    roots = pair.start()
    result = run(roots, pkidir, "tls-ccc", sscn="dst")
    assert result.bytes == len(PAYLOAD)


def test_protected_without_sscn_is_refused_with_the_reason(pair, pkidir):
    roots = pair.start()
    with pytest.raises(FTPError) as err:
        run(roots, pkidir, "tls")
    assert err.value.stage == "data-setup" and "SSCN" in err.value.reason and "RFC 4217" in err.value.reason


def test_sscn_off_by_zos_extensions(pair, pkidir):
    # a pasted z/OS FTP.DATA names its EXTENSIONS: no SSCN, so no protected three-way transfer
    roots = pair.start(src={"EXTENSIONS": ["AUTH_TLS", "SIZE"]}, dst={"EXTENSIONS": ["AUTH_TLS", "SIZE"]})
    with pytest.raises(FTPError) as err:
        run(roots, pkidir, "tls", sscn="src")
    assert err.value.stage == "data-setup" and err.value.code == 502 and "SSCN" in err.value.reason


def test_portcommandipaddr_noredirect_refuses_the_active_side(pair, pkidir):
    roots = pair.start(dst={"PORTCOMMANDIPADDR": "NOREDIRECT"})
    with pytest.raises(FTPError) as err:
        run(roots, pkidir, passive="src")             # dst is the active side: PORT names 127.0.0.2
    assert err.value.stage == "data-setup" and err.value.code == 504
    assert "PORTCOMMANDIPADDR NOREDIRECT" in err.value.reason and "dst" in err.value.reason
    assert not (roots["dst"] / "copy.bin").exists()


@pytest.mark.parametrize("passive", ["src", "dst"])
def test_passivedataconn_noredirect_refuses_the_passive_side(pair, pkidir, passive):
    roots = pair.start(**{passive: {"PASSIVEDATACONN": "NOREDIRECT"}})
    with pytest.raises(FTPError) as err:
        run(roots, pkidir, passive=passive)
    assert err.value.code == 425 and "PASSIVEDATACONN NOREDIRECT" in err.value.reason
    assert err.value.reason.startswith(passive)
    assert f"PASSIVEDATACONN NOREDIRECT: closed data connection from {SRC if passive == 'dst' else DST}" \
        in event_text(roots[f"{passive}_srv"])


def test_the_same_settings_leave_two_party_transfers_alone(pair, pkidir):
    roots = pair.start(src={"PASSIVEDATACONN": "NOREDIRECT", "PORTCOMMANDIPADDR": "NOREDIRECT"})
    for data in ("pasv", "port"):
        with session(roots["src_srv"], pkidir, "tls") as c:
            c.data_mode = data
            assert c.get("f.bin").sha256 == SHA


def test_cli_fxp_json(pair, pkidir):
    roots = pair.start()
    src, dst = roots["src_srv"].address, roots["dst_srv"].address
    done = subprocess.run([sys.executable, "-m", "lab.cli", "client", f"ftp://alice:pw@{src[0]}:{src[1]}/f.bin",
                           "--security", "tls", "--ca", str(pkidir / "ca.pem"), "--json",
                           "fxp", f"ftp://alice:pw@{dst[0]}:{dst[1]}/cli.bin", "--sscn", "dst", "--passive", "src"],
                          capture_output=True, text=True, timeout=60)
    out = json.loads(done.stdout)
    assert done.returncode == 0 and out["outcome"] == "ok", out
    assert out["op"] == "fxp" and out["bytes"] == len(PAYLOAD) and out["fxp"]["sscn"] == "dst"
    assert any(line.startswith("[dst] > SSCN ON") for line in out["transcript"])
    assert hashlib.sha256((roots["dst"] / "cli.bin").read_bytes()).hexdigest() == SHA
