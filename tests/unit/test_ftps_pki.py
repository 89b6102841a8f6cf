"""The lab PKI: a CA, server/client certificates that chain to it, safe key files."""

import datetime as dt
import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from lab.ftps import pki


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_server_client_chain_and_modes(tmp_path):
    ca = pki.init_ca(tmp_path)
    assert pki.init_ca(tmp_path).cert.read_bytes() == ca.cert.read_bytes()    # kept, not replaced
    srv = pki.issue_server(tmp_path, "server", ips=["192.0.2.10"], dns=["ftp.example"])
    cli = pki.issue_client(tmp_path, "alice")
    ca_cert = _load(ca.cert)
    for issued in (ca, srv, cli):
        assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
        cert = _load(issued.cert)
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                    cert.signature_hash_algorithm)
    sans = _load(srv.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["ftp.example"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    cn = _load(cli.cert).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "alice" and cli.cert.name == "client-alice.pem"
    assert len(pki.fingerprint(cli.cert)) == 64


def test_expired_and_other_ca(tmp_path):
    old = pki.issue(tmp_path / "a", "old", expired=True)
    assert _load(old.cert).not_valid_after_utc < dt.datetime.now(dt.UTC)
    other = pki.issue_client(tmp_path / "b", "alice")
    assert _load(other.cert).issuer != _load(pki.init_ca(tmp_path / "a").cert).subject


def test_key_file_never_world_readable_even_with_open_umask(tmp_path):
    import os
    old = os.umask(0)
    try:
        issued = pki.issue_server(tmp_path, "s")
    finally:
        os.umask(old)
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))
