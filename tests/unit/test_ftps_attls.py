"""AT-TLS (issue 15, item 3): with TLSMECHANISM ATTLS an endpoint takes its TLS settings from a Policy
Agent policy (lab/ftps/attls.py). The parser refuses bad policies with file:line problems; the rules
pick role, versions and ciphers, observed on the wire; the combinations IBM documents as invalid
behave as documented (CCCNONOTIFY with ATTLS fails the session at CCC)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ftps_fixtures import server_pki

from lab.ftps import pki
from lab.ftps.attls import load_policy, parse_policy
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.config import ClientConfig, ServerConfig, parse_ftpdata, parse_ftpdata_text
from lab.ftps.errors import InputError
from lab.ftps.server import FTPServer

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parents[2] / "lab" / "ftps" / "examples" / "attls"
PAYLOAD = bytes(range(256)) * 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_text(rule_ports: str, direction: str = "Inbound", role: str = "Server", enabled: str = "On",
                advanced: str = "TLSv1.2 On\n ApplicationControlled On\n SecondaryMap On",
                ciphers: str = "", name: str = "ftp", priority: int = 100) -> str:
    """One rule with its group and environment actions (names suffixed by `name`)."""
    cipher_block = f"TTLSCipherParms\n {{\n {ciphers}\n }}" if ciphers else ""
    return f"""
TTLSRule rule_{name}
{{
  {rule_ports}
  Direction {direction}
  Priority {priority}
  TTLSGroupActionRef grp_{name}
  TTLSEnvironmentActionRef env_{name}
}}
TTLSGroupAction grp_{name}
{{
  TTLSEnabled {enabled}
}}
TTLSEnvironmentAction env_{name}
{{
  HandshakeRole {role}
  TTLSKeyringParms
  {{
    Keyring *AUTH*/*
  }}
  TTLSEnvironmentAdvancedParms
  {{
 {advanced}
  }}
  {cipher_block}
}}
"""


# -- the parser -----------------------------------------------------------------------------------

def test_shipped_examples_load_and_map_ftp_connections():
    server = load_policy(EXAMPLES / "server.policy")
    m = server.match("inbound", 2121, 40000)
    assert m.rule == "ftpd_control" and m.role == "server" and m.versions == ("TLSV1.2",)
    assert m.ciphers == ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384")
    assert m.application_controlled and m.secondary_map and m.unusable_for_ftp() is None
    assert server.match("inbound", 2990, 40000).rule == "ftpd_implicit"
    assert server.match("outbound", 2121, 40000) is None and server.match("inbound", 21, 40000) is None
    assert any("Trace" in line for line in server.ignored_text())
    client = load_policy(EXAMPLES / "client.policy")
    assert client.match("outbound", 40000, 2121).role == "client"
    cfg = parse_ftpdata(EXAMPLES / "server.data")
    assert cfg.TLSMECHANISM == "ATTLS" and Path(cfg.ATTLSPOLICY) == EXAMPLES / "server.policy"


def test_the_slides_policy_is_refused_line_by_line(tmp_path):
    # The presentation's policy, as printed: TTLRule/TTLEnabled/TLSSV1.1 are misspelt, the cipher
    # statement has no name, there is one brace too many, and 04 (RC4-MD5) is gone from OpenSSL 3.
    slide = """TTLRule ftp_cli_21
{
  RemotePortRange 21
  Direction Outbound
  TTLGroupActionRef grp_act1
}
TTLSGroupAction grp_act1
{
  TTLEnabled On
}
TTLSEnvironmentAction env_act_cli2
{
    HandshakeRole Client
    TTLSEnvironmentAdvancedParms
    {
        TLSSV1.1 On # Configures which TLS/SSL protocols are supported
        ApplicationControlled On
    }
}
TTLSCipherParms
{
    V3CipherSuites TLS_DHE_DSS_WITH_AES_256_CBC_SHA
    V3CipherSuites 04
}
}
"""
    f = tmp_path / "slide.policy"
    f.write_text(slide)
    with pytest.raises(InputError) as err:
        load_policy(f)
    text = str(err.value)
    for needle in (f"{f}:1: TTLRule: unknown statement (did you mean TTLSRule?)",
                   f"{f}:9: TTLEnabled: not a parameter of TTLSGroupAction (did you mean TTLSEnabled?)",
                   f"{f}:16: TLSSV1.1: not a parameter of TTLSEnvironmentAdvancedParms (did you mean TLSv1.1?)",
                   f"{f}:20: TTLSCipherParms: a statement outside another one needs a name",
                   f"{f}:23: V3CipherSuites: 0004 (TLS_RSA_WITH_RC4_128_MD5) is not offered by this OpenSSL",
                   f"{f}:25: }}: a brace without a statement"):
        assert needle in text, text


@pytest.mark.parametrize("text, line, needle", [
    ("TTLSRule r\n{\n LocalPortRange 21\n TTLSGroupActionRef g\n}\nTTLSGroupAction g\n{\n TTLSEnabled Off\n}\n",
     1, "needs Direction"),
    ("TTLSRule r\n{\n Direction Inbound\n TTLSGroupActionRef g\n}\nTTLSGroupAction g\n{\n TTLSEnabled Off\n}\n",
     1, "needs a condition besides Direction"),
    ("TTLSRule r\n{\n LocalPortRange 21\n Direction Inbound\n TTLSGroupActionRef nope\n}\n",
     5, "no TTLSGroupAction named nope"),
    ("TTLSRule r\n{\n LocalPortRange 70000\n Direction Inbound\n}\n", 3, "not a port or a range"),
    ("TTLSRule r\n{\n LocalPortRange 21\n Direction Sideways\n}\n", 4, "not Inbound, Outbound or Both"),
    ("TTLSRule r\n{\n LocalPortRange 21\n LocalPortRange 22\n}\n", 4, "given twice (also on line 3)"),
    ("TTLSGroupAction g\n{\n TTLSEnabled On\n", 1, "never closed"),
    ("TTLSGroupAction g\n{\n TTLSEnabled Maybe\n}\n", 3, "not On or Off"),
    ("TTLSGroupAction g\n{\n TTLSEnabled On\n}\nTTLSGroupAction g\n{\n TTLSEnabled On\n}\n", 5, "defined twice"),
    ("TTLSCipherParms c\n{\n V3CipherSuites4Char C0\n}\n", 3, "4-character hex codes"),
    ("TTLSCipherParms c\n{\n V3CipherSuites TLS_MADE_UP_SUITE\n}\n", 3, "not a cipher suite name"),
    (policy_text("LocalPortRange 21", advanced="TLSv1.1 On"), 21, "neither TLSv1.2 nor TLSv1.3 is On"),
    (policy_text("LocalPortRange 21", role="Boss"), 16, "not Client, Server or ServerWithClientAuth"),
])
def test_policy_problems_name_file_and_line(text, line, needle):
    with pytest.raises(InputError) as err:
        parse_policy(text, "p.policy")
    assert any(p.line == line and needle in p.message for p in err.value.problems), err.value


def test_rules_in_policy_agent_order():
    both = policy_text("LocalPortRange 21-990", name="low", priority=10) + \
        policy_text("LocalPortRange 21", name="high", priority=500, advanced="TLSv1.3 On\n ApplicationControlled On")
    p = parse_policy(both)
    assert p.match("inbound", 21, 1).rule == "rule_high"          # highest priority wins
    assert p.match("inbound", 990, 1).rule == "rule_low"
    assert p.match("inbound", 991, 1) is None
    assert p.match("inbound", 21, 1).versions == ("TLSV1.3",)
    assert not p.match("inbound", 21, 1).secondary_map            # AT-TLS default Off
    addr = policy_text("LocalPortRange 21\n  RemoteAddr 192.0.2.0/24")
    assert parse_policy(addr).match("inbound", 21, 5, "10.0.0.1", "192.0.2.7") is not None
    assert parse_policy(addr).match("inbound", 21, 5, "10.0.0.1", "198.51.100.7") is None


def test_ftpdata_attls_needs_a_policy():
    with pytest.raises(InputError) as err:
        parse_ftpdata_text("EXTENSIONS AUTH_TLS\nTLSMECHANISM ATTLS\n", "server", "FTP.DATA")
    assert "FTP.DATA:2: TLSMECHANISM: ATTLS takes TLS from an AT-TLS policy" in str(err.value)


# -- the endpoints ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pkidir(tmp_path_factory) -> Path:
    d = server_pki(tmp_path_factory.mktemp("pki"))
    pki.issue_client(d, "alice")
    return d


class Lab:
    """Servers and clients with AT-TLS policies written for their ports."""

    def __init__(self, pkidir: Path, tmp: Path):
        self.pkidir, self.tmp = pkidir, tmp
        self.root = tmp / "root"
        self.root.mkdir()
        (self.root / "f.bin").write_bytes(PAYLOAD)
        self.servers: list[FTPServer] = []

    def write(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def server(self, policy: str, port: int, **statements) -> FTPServer:
        statements.setdefault("LOGINDELAY", 0)
        cfg = ServerConfig(TLSMECHANISM="ATTLS", ATTLSPOLICY=self.write(f"server-{port}.policy", policy),
                           **statements)
        events: list[dict] = []
        srv = FTPServer(cfg, self.root, {"alice": "pw"}, cert=self.pkidir / "server.pem",
                        key=self.pkidir / "server.key", ca=self.pkidir / "ca.pem", listen=("127.0.0.1", port),
                        log=events.append)
        srv.events = events
        self.servers.append(srv.start())
        return srv

    def client(self, policy: str | None = None, security: str = "tls", data: str = "pasv", **statements) -> FTPClient:
        if policy is not None:
            statements.update(TLSMECHANISM="ATTLS", ATTLSPOLICY=self.write("client.policy", policy))
        return FTPClient(ClientConfig(**statements), security=security, data=data, ca=self.pkidir / "ca.pem",
                         cert=statements.pop("cert", None))

    def close(self) -> None:
        for s in self.servers:
            s.close()


@pytest.fixture
def lab(pkidir, tmp_path):
    lab = Lab(pkidir, tmp_path)
    yield lab
    lab.close()


def session(client: FTPClient, port: int, op: str = "get") -> FTPClient:
    client.connect("127.0.0.1", port)
    client.login("alice", "pw")
    if op == "get":
        assert client.get("f.bin").bytes == len(PAYLOAD)
    return client


def info(srv_or_client) -> str:
    if isinstance(srv_or_client, FTPClient):
        return "\n".join(line for _, _, line in srv_or_client.transcript)
    return "\n".join(str(e.get("line", "")) for e in srv_or_client.events)


def test_shipped_example_configures_both_ends(lab, pkidir):
    port, implicit = free_port(), free_port()
    server_policy = (EXAMPLES / "server.policy").read_text().replace("2121", str(port)).replace("2990", str(implicit))
    client_policy = (EXAMPLES / "client.policy").read_text().replace("2121", str(port)).replace("2990", str(implicit))
    events: list[dict] = []
    cfg = parse_ftpdata_text((EXAMPLES / "server.data").read_text().replace("2990", str(implicit)), "server")
    cfg = cfg.updated(ATTLSPOLICY=lab.write("example-server.policy", server_policy))
    srv = FTPServer(cfg, lab.root, {"alice": "pw"}, cert=pkidir / "server.pem", key=pkidir / "server.key",
                    ca=pkidir / "ca.pem", listen=("127.0.0.1", port), tls_listen=("127.0.0.1", implicit),
                    log=events.append)
    lab.servers.append(srv.start())
    srv.events = events
    for security, to in (("tls", port), ("implicit-zos", implicit)):
        for data in ("pasv", "port"):
            with lab.client(client_policy, security=security, data=data) as c:
                session(c, to)
                c.put(lab.root / "f.bin", f"up-{security}-{data}.bin")
                assert c.tls_info == {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256"}
                assert "AT-TLS rule ftp_client" in info(c)
    assert "AT-TLS rule ftpd_control" in info(srv) and "AT-TLS rule ftpd_implicit" in info(srv)


def test_versions_and_ciphers_come_from_the_policy(lab):
    port = free_port()
    lab.server(policy_text(f"LocalPortRange {port}", advanced="TLSv1.3 On\n ApplicationControlled On\n SecondaryMap On",
                           ciphers="V3CipherSuites4Char 1302"), port)
    with lab.client(security="tls") as c:        # the client's own TLS (TLSMECHANISM FTP)
        session(c, port)
        assert c.tls_info == {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}
    # a client that offers TLS 1.2 only cannot meet a TLSv1.3-only policy
    with lab.client(security="tls", TLSMAXVERSION="TLSV1.2") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls"


@pytest.mark.parametrize("policy, why", [
    (lambda p: policy_text(f"LocalPortRange {p + 1}"), "no AT-TLS rule"),
    (lambda p: policy_text(f"LocalPortRange {p}", enabled="Off"), "TTLSEnabled Off"),
    (lambda p: policy_text(f"LocalPortRange {p}", advanced="TLSv1.2 On\n SecondaryMap On"), "ApplicationControlled"),
])
def test_no_usable_rule_refuses_auth(lab, policy, why):
    port = free_port()
    srv = lab.server(policy(port), port)
    with lab.client(security="tls") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls" and err.value.code == 534 and why in err.value.reason
    assert why in info(srv)


def test_same_handshake_role_on_both_ends_fails(lab):
    port = free_port()
    lab.server(policy_text(f"LocalPortRange {port}", role="Client"), port)
    with lab.client(security="tls") as c, pytest.raises(FTPError) as err:
        session(c, port)
    # the server's ClientHello meets the client's (or, read with the 234, is no FTP reply)
    assert err.value.stage == "tls"


def test_server_with_client_auth_wants_a_certificate(lab, pkidir):
    port = free_port()
    lab.server(policy_text(f"LocalPortRange {port}", role="ServerWithClientAuth"), port)
    with lab.client(security="tls") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls"
    with FTPClient(security="tls", data="pasv", ca=pkidir / "ca.pem", cert=pkidir / "client-alice.pem",
                   key=pkidir / "client-alice.key") as c:
        session(c, port)


def test_secondary_map_off_needs_a_rule_for_the_data_connection(lab):
    port = free_port()
    low = free_port()
    advanced = "TLSv1.2 On\n ApplicationControlled On\n SecondaryMap Off"
    srv = lab.server(policy_text(f"LocalPortRange {port}", advanced=advanced), port, PASSIVEDATAPORTS=(low, low))
    with lab.client(security="tls") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls" and "SecondaryMap Off" in err.value.reason
    assert "no AT-TLS rule maps it (Inbound" in info(srv)
    # a rule for the passive port: the data connection is protected by its own rule
    port2 = free_port()
    both = policy_text(f"LocalPortRange {port2}", advanced=advanced) + \
        policy_text(f"LocalPortRange {low}", name="data", advanced=advanced)
    lab.server(both, port2, PASSIVEDATAPORTS=(low, low))
    with lab.client(security="tls") as c:
        session(c, port2)


def test_client_attls_without_rule_fails_or_goes_clear(lab):
    port = free_port()
    lab.server(policy_text(f"LocalPortRange {port}"), port)
    elsewhere = policy_text("RemotePortRange 1", direction="Outbound", role="Client")
    with lab.client(elsewhere, security="tls") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls" and "no AT-TLS rule" in err.value.reason
    # SECURE_FTP ALLOWED and no --security: the z/OS client goes on in clear
    plain = lab.client(elsewhere, security=None, SECURE_MECHANISM="TLS", SECURE_DATACONN="CLEAR")
    with plain as c:
        session(c, port)
        assert "continuing in clear" in info(c)


def test_cccnonotify_with_attls_fails_the_session_at_ccc(lab):
    port = free_port()
    srv = lab.server(policy_text(f"LocalPortRange {port}"), port, TLSRFCLEVEL="CCCNONOTIFY")
    with lab.client(security="tls-ccc", TLSRFCLEVEL="CCCNONOTIFY") as c, pytest.raises(FTPError) as err:
        session(c, port)
    assert err.value.stage == "tls" and err.value.code == 421 and "CCCNONOTIFY" in err.value.reason
    assert "CCCNONOTIFY is invalid with TLSMECHANISM ATTLS" in info(srv)
    # the same server at RFC4217: CCC works under AT-TLS (AT-TLS sends the close_notify)
    port2 = free_port()
    lab.server(policy_text(f"LocalPortRange {port2}"), port2, TLSRFCLEVEL="RFC4217")
    with lab.client(security="tls-ccc") as c:
        session(c, port2)
        assert c.ccc_done
    # and a client with ATTLS and CCCNONOTIFY fails at CCC by itself
    client_policy = policy_text(f"RemotePortRange {port2}", direction="Outbound", role="Client")
    with lab.client(client_policy, security="tls-ccc", TLSRFCLEVEL="CCCNONOTIFY") as c, \
            pytest.raises(FTPError) as err:
        session(c, port2)
    assert err.value.stage == "tls" and "not valid with TLSMECHANISM ATTLS" in err.value.reason


def test_cli_bad_policy_is_one_line_per_problem(tmp_path):
    (tmp_path / "bad.policy").write_text("TTLSRule r\n{\n LocalPortRange 21\n Direction Nowhere\n}\n")
    (tmp_path / "ftp.data").write_text("EXTENSIONS AUTH_TLS\nTLSMECHANISM ATTLS\nATTLSPOLICY bad.policy\n")
    done = subprocess.run([sys.executable, "-m", "lab.cli", "server", "--listen", "127.0.0.1:0", "--root",
                           str(tmp_path), "--user", "a:b", "--ftpdata", str(tmp_path / "ftp.data")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert f"{tmp_path / 'bad.policy'}:4: Direction: 'Nowhere' is not Inbound, Outbound or Both" in done.stderr
    assert "Traceback" not in done.stderr
