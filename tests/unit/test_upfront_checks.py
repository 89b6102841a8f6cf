"""What would fail in a run is refused when the file is loaded (issue 18, item 4): a link address
the lab cannot route (loopback, multicast, link-local, ...), and (lab.ftps) every file an FTP.DATA
or an AT-TLS policy names, and a policy that leaves no cipher its TLS versions can use."""

from __future__ import annotations

import ipaddress

import pytest

from lab.cli import main
from lab.errors import InputError
from lab.ftps import attls, config, pki
from lab.topology import loader as topo

LAN = """name: special
description: a LAN with special addresses
ftp: {{client: client, server: server, server_address: "{server}"}}
nodes:
  client: {{kind: host}}
  server: {{kind: host}}
links:
  - {{client: "{client}", server: "{server_end}"}}
"""


def lan(client: str, server: str) -> str:
    return LAN.format(client=client, server=server.split("/")[0].strip("[]").split(",")[0], server_end=server)


@pytest.mark.parametrize(("client", "server", "what"), [
    ("127.0.0.1/8", "127.0.0.2/8", "a loopback address (127.0.0.0/8)"),
    ("224.0.0.1/24", "224.0.0.2/24", "a multicast address (224.0.0.0/4)"),
    ("169.254.0.1/16", "169.254.0.2/16", "a link-local address (169.254.0.0/16)"),
    ("0.0.0.1/8", "0.0.0.2/8", "in 0.0.0.0/8"),
    ("240.0.0.1/24", "240.0.0.2/24", "a reserved address (240.0.0.0/4)"),
    ("255.255.255.255/32", "255.255.255.254/32", "the limited broadcast address"),
    ("::1/128", "::2/128", "a loopback address (::1)"),
    ("::/127", "::1/127", "the unspecified address"),
    ("::ffff:192.0.2.1/120", "::ffff:192.0.2.2/120", "an IPv4-mapped IPv6 address"),
    ("fec0::1/64", "fec0::2/64", "a site-local address"),
])
def test_a_link_address_the_lab_cannot_route_is_refused(client, server, what):
    with pytest.raises(InputError) as info:
        topo.loads(lan(client, server), "net.yaml")
    text = str(info.value)
    assert f"net.yaml:8: links[0].client: {ipaddress.ip_interface(client).ip} is not a unicast interface address: it is {what}" in text, text


def test_ordinary_addresses_still_load():
    for client, server in (("192.168.10.10/24", "192.168.10.20/24"), ("100.64.0.1/24", "100.64.0.2/24"),
                           ("2001:db8::1/64", "2001:db8::2/64"), ("fd00::1/64", "fd00::2/64"),
                           ("198.51.100.10/31", "198.51.100.11/31")):
        assert topo.loads(lan(client, server), "net.yaml").name == "special"


def test_topo_check_exits_2_on_a_loopback_link(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_text(lan("127.0.0.1/8", "127.0.0.2/8"))
    assert main(["topo", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8: links[0].client: 127.0.0.1 is not a unicast interface address: it is a loopback address" in err
    assert f"{path}:8: links[0].server: 127.0.0.2 is not a unicast interface address: it is a loopback address" in err


# -- FTP.DATA and AT-TLS: every file named is read when the configuration is loaded ----------------------

EXAMPLES = topo.TOPOLOGY_DIR.parent / "lab" / "ftps" / "examples" / "attls"

POLICY = """TTLSRule ftpd
{{
  LocalPortRange 2121
  Direction Inbound
  TTLSGroupActionRef grp
  TTLSEnvironmentActionRef env
}}
TTLSGroupAction grp
{{
  TTLSEnabled On
}}
TTLSEnvironmentAction env
{{
  HandshakeRole {role}
  TTLSKeyringParms
  {{
    Keyring {keyring}
  }}
  TTLSEnvironmentAdvancedParms
  {{
    {versions}
    ApplicationControlled On
    {label}
  }}
  TTLSCipherParms
  {{
    V3CipherSuites4Char {ciphers}
  }}
}}
"""


def policy(tmp_path, keyring="*AUTH*/*", role="Server", versions="TLSv1.2 On", label="", ciphers="C02F"):
    path = tmp_path / "p.policy"
    path.write_text(POLICY.format(keyring=keyring, role=role, versions=versions, label=label, ciphers=ciphers))
    return path


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    pki.init_ca(folder)
    return folder, pki.issue_server(folder, "server", ips=["127.0.0.1"])


def test_a_keyring_that_is_not_a_key_ring_is_named_by_its_line(tmp_path):
    (tmp_path / "notes.pem").write_text("not a certificate\n")
    data = tmp_path / "ftp.data"
    data.write_text(f"SECURE_FTP ALLOWED\n; the ring\nKEYRING {tmp_path / 'notes.pem'}\n")
    with pytest.raises(InputError) as info:
        config.check_files(config.parse_ftpdata(data), data)
    assert str(info.value) == f"{data}:3: KEYRING: {tmp_path / 'notes.pem'}: not a PEM certificate " \
                              f"(no readable -----BEGIN CERTIFICATE----- block)"


def test_a_zos_key_ring_name_says_what_the_lab_reads(tmp_path):
    data = tmp_path / "ftp.data"
    data.write_text("KEYRING FTPD/FTPRING\n")
    with pytest.raises(InputError, match=f"{data}:1: KEYRING: .*a z/OS key ring name"):
        config.check_files(config.parse_ftpdata(data), data)


def test_an_attls_keyring_that_is_not_a_key_ring_is_an_error_at_load(tmp_path, issued):
    _, server = issued
    (tmp_path / "ring.txt").write_text("FTPD/FTPRING\n")
    path = policy(tmp_path, keyring=tmp_path / "ring.txt")
    with pytest.raises(InputError) as info:
        attls.check_files(attls.load_policy(path), server.cert, server.key)
    assert str(info.value).startswith(f"{path}:17: Keyring: {tmp_path / 'ring.txt'}: not a PEM certificate")


def test_a_missing_certificate_label_and_a_missing_certificate_are_named(tmp_path, issued):
    ca, _ = issued
    path = policy(tmp_path, keyring=ca, label="CertificateLabel nosuch")
    with pytest.raises(InputError) as info:
        attls.check_files(attls.load_policy(path))
    assert f"{path}:23: CertificateLabel: " in str(info.value) and "nosuch.pem" in str(info.value)
    path = policy(tmp_path, keyring="*AUTH*/*")
    with pytest.raises(InputError, match=f"{path}:1: ftpd: HandshakeRole Server needs a certificate"):
        attls.check_files(attls.load_policy(path))


def test_good_files_pass(tmp_path, issued):
    ca, server = issued
    attls.check_files(attls.load_policy(policy(tmp_path)), server.cert, server.key, ca / "ca.pem")
    attls.check_files(attls.load_policy(policy(tmp_path, keyring=ca, label="CertificateLabel server")))
    attls.check_files(attls.load_policy(EXAMPLES / "server.policy"), server.cert, server.key, ca / "ca.pem")
    data = EXAMPLES / "server.data"
    config.check_files(config.parse_ftpdata(data), data, server.cert, server.key, ca / "ca.pem")


@pytest.mark.parametrize(("versions", "ciphers", "says"), [
    ("TLSv1.3 On", "C02FC030", "only TLSv1.3 is On, and every suite named is a TLS 1.2 one"),
    ("TLSv1.2 On", "1301", "only TLSv1.2 is On, and every suite named is a TLS 1.3 one"),
])
def test_a_policy_with_no_usable_cipher_is_refused_at_its_line(tmp_path, versions, ciphers, says):
    path = policy(tmp_path, versions=versions, ciphers=ciphers)
    with pytest.raises(InputError) as info:
        attls.load_policy(path)
    assert f"{path}:27: V3CipherSuites4Char: no cipher suite is usable: {says}" in str(info.value)


def test_a_policy_with_a_usable_cipher_loads(tmp_path):
    attls.load_policy(policy(tmp_path, versions="TLSv1.2 On\n TLSv1.3 On", ciphers="1301"))
    attls.load_policy(policy(tmp_path, versions="TLSv1.3 On", ciphers="C02F1302"))


def test_ftlab_server_exits_2_on_a_policy_without_a_usable_cipher(tmp_path, issued, capsys):
    ca, server = issued
    path = policy(tmp_path, versions="TLSv1.3 On", ciphers="C02F")
    data = tmp_path / "ftp.data"
    data.write_text(f"EXTENSIONS AUTH_TLS\nTLSMECHANISM ATTLS\nATTLSPOLICY {path}\n")
    code = main(["server", "--listen", "127.0.0.1:0", "--root", str(tmp_path), "--user", "a:b",
                 "--cert", str(server.cert), "--key", str(server.key), "--ftpdata", str(data)])
    assert code == 2
    assert f"{path}:27: V3CipherSuites4Char: no cipher suite is usable" in capsys.readouterr().err


def test_a_keyring_two_rules_share_is_named_once(tmp_path, issued):
    _, server = issued
    (tmp_path / "ring.txt").write_text("FTPD/FTPRING\n")
    text = (EXAMPLES / "server.policy").read_text()
    path = tmp_path / "server.policy"
    path.write_text(text.replace("Keyring *AUTH*/*", f"Keyring {tmp_path / 'ring.txt'}"))
    with pytest.raises(InputError) as info:
        attls.check_files(attls.load_policy(path), server.cert, server.key)
    assert len(info.value.problems) == 1 and info.value.problems[0].field == "Keyring"
    path.write_text(text.replace("TLSv1.2 On", "TLSv1.2 Off").replace("TLSv1.3 Off", "TLSv1.3 On"))
    with pytest.raises(InputError) as info:
        attls.load_policy(path)
    assert [p.field for p in info.value.problems] == ["V3CipherSuites4Char"]


def test_a_relative_zos_ring_name_in_a_policy_says_what_the_lab_reads(tmp_path, issued):
    _, server = issued
    path = policy(tmp_path, keyring="FTPD/TLSRING")
    with pytest.raises(InputError, match=f"{path}:17: Keyring: .*FTPD/TLSRING: no such .*a z/OS key ring name"):
        attls.check_files(attls.load_policy(path), server.cert, server.key)


def test_ftlab_server_exits_2_on_an_attls_keyring_that_is_not_a_key_ring(tmp_path, issued, capsys):
    """The issue's case end to end: before, the server started and every AUTH TLS ended in a
    traceback and a reset; now it does not start, and says which line names which file."""
    _, server = issued
    (tmp_path / "ring.txt").write_text("FTPD/FTPRING\n")
    path = policy(tmp_path, keyring=tmp_path / "ring.txt")
    data = tmp_path / "ftp.data"
    data.write_text(f"EXTENSIONS AUTH_TLS\nTLSMECHANISM ATTLS\nATTLSPOLICY {path}\n")
    code = main(["server", "--listen", "127.0.0.1:0", "--root", str(tmp_path), "--user", "a:b",
                 "--cert", str(server.cert), "--key", str(server.key), "--ftpdata", str(data)])
    assert code == 2
    assert f"{path}:17: Keyring: {tmp_path / 'ring.txt'}: not a PEM certificate" in capsys.readouterr().err
