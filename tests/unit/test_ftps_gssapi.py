"""Kerberos (issue 15, item 1): AUTH GSSAPI, ADAT, MIC/ENC-protected commands (631/632 replies), PBSZ,
PROT C/S/P data in RFC 2228 blocks, and CCC, between the lab's client and server, with tickets from
a real MIT KDC (krb5kdc) run for this module in a temporary folder on 127.0.0.1. Nothing touches
/etc/krb5.conf: KRB5_CONFIG points into the folder, the server reads its own keytab, the client
its own ticket cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
from ftps_fixtures import RawControl

from lab.ftps import gss, kdc
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)

PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    missing = kdc.missing_programs()
    if missing or gss.available():
        pytest.skip(f"Kerberos: missing {', '.join(missing) or gss.available()} (tools: krb5-kdc, "
                    f"krb5-admin-server, krb5-user; python gssapi)")
    r = kdc.Realm(tmp_path_factory.mktemp("realm")).create()
    r.add_service("127.0.0.1")
    r.add_user("alice")
    r.add_user("mallory")
    saved = {k: os.environ.get(k) for k in r.env()}
    os.environ.update(r.env())          # the GSSAPI library finds the realm's KDC through it
    r.start()
    r.ccache = {u: r.kinit(u) for u in ("alice", "mallory")}
    yield r
    r.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def serve(realm, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(PAYLOAD)
    started = []

    def start(**statements) -> FTPServer:
        events: list[dict] = []
        statements.setdefault("LOGINDELAY", 0)
        srv = FTPServer(ServerConfig(**statements), root, {"alice": "pw", "mallory": "pw2", "bob": "pw3"},
                        listen=("127.0.0.1", 0), keytab=realm.keytab, log=events.append)
        srv.events, srv.root_dir = events, root
        started.append(srv.start())
        return srv
    yield start
    for s in started:
        s.close()


def client(realm, security="gssapi", user="alice", **statements) -> FTPClient:
    return FTPClient(ClientConfig(**statements), security=security, ccache=realm.ccache[user])


def transcript(c: FTPClient) -> str:
    return "\n".join(f"{d} {line}" for _, d, line in c.transcript)


def server_log(srv) -> str:
    return "\n".join(str(e.get("line", "")) for e in srv.events)


@pytest.mark.parametrize("security", ["gssapi", "gssapi-ccc"])
@pytest.mark.parametrize("data", ["pasv", "epsv", "port", "eprt"])
def test_gssapi_transfers_every_data_mode(realm, serve, security, data):
    srv = serve()
    with client(realm, security) as c:
        c.data_mode = data
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice")
        assert c.get("f.bin").sha256 == SHA
        c.put(srv.root_dir / "f.bin", "up.bin")
        assert (srv.root_dir / "up.bin").read_bytes() == PAYLOAD
        assert c.prot == "P" and c.ccc_done == (security == "gssapi-ccc")
    t = transcript(c)
    assert "C>S ADAT ****" in t and "S>C 235 ADAT=" in t          # the ticket is never shown
    assert "C>S [MIC] USER alice" in t and "S>C [631] 232 GSSAPI user alice@FTPLAB.TEST" in t
    if security == "gssapi-ccc":
        assert "C>S [MIC] CCC" in t and "S>C [631] 200 CCC" in t and "C>S TYPE I" in t   # clear after CCC
    else:
        assert "C>S TYPE" not in t                                    # every command protected


def test_enc_protected_commands_and_632_replies(realm, serve):
    srv = serve(SECURE_CTRLCONN="PRIVATE")
    with client(realm, SECURE_CTRLCONN="PRIVATE") as c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice")
        assert c.get("f.bin").sha256 == SHA
    t = transcript(c)
    assert "C>S [ENC] RETR f.bin" in t and "S>C [632] 226" in t
    assert "[ENC] RETR f.bin" in server_log(srv)


def test_wire_protection_as_rfc_2228_says(realm, serve):
    """By hand: what goes over the wire, and what the server refuses."""
    srv = serve(SECURE_CTRLCONN="SAFE")
    raw = RawControl(srv.address)
    assert raw.cmd("ADAT AAAA").code == 503                          # ADAT before AUTH
    assert raw.cmd("MIC AAAA").code == 503                           # protection before security
    assert raw.cmd("AUTH GSSAPI").code == 334
    assert raw.cmd("ADAT not*base64").code == 501
    init = gss.Initiator("127.0.0.1", realm.ccache["alice"])
    r = raw.cmd(f"ADAT {gss.b64encode(init.first_token())}")
    assert r.code == 235 and r.text.startswith("ADAT=")
    init.step(gss.b64decode(r.text.split("=", 1)[1]))
    p = init.protection
    assert raw.cmd("USER alice").code == 533                         # clear after ADAT: SAFE wants protection
    assert raw.cmd("CONF AAAA").code == 537                          # no GSSAPI form
    assert raw.cmd("MIC AAAA").code == 535                           # a token that fails its check
    mic = raw.cmd(p.command("USER alice", private=False))
    assert mic.code == 631
    inner, private = p.open_reply(mic.code, mic.lines)
    assert inner.startswith(b"232 GSSAPI user alice@FTPLAB.TEST") and not private
    enc = raw.cmd(p.command("PBSZ 100", private=True))
    assert enc.code == 632 and p.open_reply(632, enc.lines)[0].startswith(b"501")   # z/OS: 512..32768
    assert p.open_reply(631, raw.cmd(p.command("PBSZ 4096", False)).lines)[0].startswith(b"200 PBSZ=4096")
    assert p.open_reply(631, raw.cmd(p.command("PROT E", False)).lines)[0].startswith(b"536")
    assert p.open_reply(631, raw.cmd(p.command("PROT S", False)).lines)[0].startswith(b"200")
    assert p.open_reply(631, raw.cmd(p.command("CCC", False)).lines)[0].startswith(b"534")   # SAFE: no CCC
    noop = p.command("NOOP", False)
    assert p.open_reply(631, raw.cmd(noop).lines)[0].startswith(b"200")
    assert raw.cmd(noop).code == 535                                 # the same token again: a replay
    nested = raw.cmd(p.command(p.command("NOOP", False), False))
    assert p.open_reply(631, nested.lines)[0].startswith(b"500")     # no command inside a command
    assert p.open_reply(631, raw.cmd(p.command("ADAT AAAA", False)).lines)[0].startswith(b"503")  # it is over
    raw.sock.close()


@pytest.mark.parametrize("level", ["S", "C"])
def test_prot_safe_and_clear_data(realm, serve, level):
    srv = serve()
    dc = {"S": "SAFE", "C": "CLEAR"}[level]
    with FTPClient(ClientConfig(SECURE_MECHANISM="GSSAPI", SECURE_DATACONN=dc), data="pasv",
                   ccache=realm.ccache["alice"]) as c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice")
        assert c.prot == level
        assert c.get("f.bin").sha256 == SHA


def test_principal_must_match_the_user(realm, serve):
    # mallory's ticket asking for alice: a password is asked for (331); under SECURE_LOGIN it is 530
    srv = serve()
    with client(realm, user="mallory") as c:
        c.connect("127.0.0.1", srv.address[1])
        with pytest.raises(FTPError) as err:
            c.login("alice", "wrong")
        assert err.value.stage == "login"
    assert "[631] 331 GSSAPI user mallory@FTPLAB.TEST is not authorized as alice" in transcript(c)
    strict = serve(SECURE_LOGIN="REQUIRED")
    with client(realm, user="mallory") as c, pytest.raises(FTPError) as err:
        c.connect("127.0.0.1", strict.address[1])
        c.login("alice", "pw")
    assert err.value.code == 530


def test_after_ccc_prot_is_refused_and_data_stays_private(realm, serve):
    srv = serve()
    with client(realm, "gssapi-ccc") as c:
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice")
        assert c.command("PROT", "C").code == 503
        assert c.get("f.bin").sha256 == SHA


def test_truncated_protected_data_is_an_incomplete_transfer(realm, serve, monkeypatch):
    # the server's end-of-data token never comes: the client must not call that a complete file
    srv = serve()
    monkeypatch.setattr(gss.GSSConn, "close_notify", lambda self: None)
    with client(realm) as c:
        c.data_mode = "pasv"
        c.connect("127.0.0.1", srv.address[1])
        c.login("alice")
        with pytest.raises(FTPError) as err:
            c.get("f.bin")
        assert err.value.stage == "transfer"


def test_server_without_keytab_refuses_auth_gssapi(realm, tmp_path):
    srv = FTPServer(ServerConfig(LOGINDELAY=0), tmp_path, {"alice": "pw"}, listen=("127.0.0.1", 0)).start()
    try:
        assert "AUTH GSSAPI" not in RawControl(srv.address).cmd("FEAT").text
        with client(realm) as c, pytest.raises(FTPError) as err:
            c.connect("127.0.0.1", srv.address[1])
            c.login("alice")
        assert err.value.stage == "tls" and err.value.code == 504
    finally:
        srv.close()


def test_cli_gssapi_client_and_server(realm, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(PAYLOAD)
    port_probe = FTPServer(ServerConfig(), root, {"a": "b"}, listen=("127.0.0.1", 0))
    port = port_probe.address[1]
    port_probe.close()
    env = {**os.environ, **realm.env()}
    server = subprocess.Popen([sys.executable, "-m", "lab.cli", "server", "--listen", f"127.0.0.1:{port}",
                               "--root", str(root), "--user", "alice:pw", "--keytab", str(realm.keytab)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-m", "lab.cli", "client", "--security", "gssapi", "--json",
                                   f"ftp://alice@127.0.0.1:{port}/f.bin", "get", "-o", "/dev/null"],
                                  env={**env, "KRB5CCNAME": realm.ccache["alice"]}, capture_output=True,
                                  text=True, timeout=30)
            if '"connect"' not in done.stdout:
                break
            time.sleep(0.2)
        import json
        out = json.loads(done.stdout)
        assert out["outcome"] == "ok" and out["sha256"] == SHA, out
        assert "> ADAT ****" in out["transcript"] and "> [MIC] RETR f.bin" in out["transcript"]
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert "GSSAPI: alice@FTPLAB.TEST authenticated" in log
    bad = subprocess.run([sys.executable, "-m", "lab.cli", "server", "--listen", "127.0.0.1:0", "--root",
                          str(root), "--user", "a:b", "--keytab", str(root / "f.bin")],
                         env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--keytab" in bad.stderr and "Traceback" not in bad.stderr
