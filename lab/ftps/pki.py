"""The lab PKI: one CA, server and client certificates, and deliberately bad ones for tests.

Public API (all paths are pathlib.Path; key files are created with mode 0600, never world-readable)
    init_ca(dir, name="FTPS Lab CA") -> Issued   # dir/ca.pem, dir/ca.key; kept if present; CN gets a random suffix
    issue_server(dir, name, ips=(), dns=(), days=365) -> Issued   # dir/<name>.pem/.key
    issue_client(dir, user, days=365) -> Issued                  # dir/client-<user>.pem/.key, CN=user
    issue(dir, name, *, client=False, ips=(), dns=(), cn=None, days=365, expired=False) -> Issued
    fingerprint(cert_pem_path_or_bytes) -> "AB12..." (SHA-256, upper hex, no colons)
    load_certificates(path, what) / load_private_key(path, what)   # InputError naming the file
    check_pair(cert, key, cert_flag="--cert", key_flag="--key")  # both PEM, and the key is the cert's
An "other CA" for untrusted-certificate tests is simply init_ca() in another folder; an expired
certificate is issue(..., expired=True). Keys are RSA 2048: the z/OS CIPHERSUITE names are RSA
key-exchange suites, so an RSA key works with every configuration.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.ftps.errors import InputError, Problem, read_input

#: A certificate bundle or a key is a few KiB; a CA bundle of a whole system is under 1 MiB.
MAX_PEM_BYTES = 1 << 20


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically; the file is created with its final mode (no window with wider rights)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _save(issued: Issued, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> Issued:
    """The key first, private from its first byte; then the certificate that names it."""
    _write(issued.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()), 0o600)
    _write(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return issued


def _load(issued: Issued) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    return load_certificates(issued.cert, "ca")[0], load_private_key(issued.key, "ca")


def _pem(path: str | Path, what: str) -> bytes:
    """A PEM file's bytes: a regular file, at most MAX_PEM_BYTES, text (read_input's rules:
    a FIFO, /dev/zero or a DER file is refused with its name, never handed to OpenSSL)."""
    return read_input(path, f"PEM file ({what})", MAX_PEM_BYTES).encode()


def load_certificates(path: str | Path, what: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file (a chain or a CA bundle), or InputError naming the file."""
    try:
        return x509.load_pem_x509_certificates(_pem(path, what))
    except ValueError:
        raise InputError([Problem(str(path), 0, what, "not a PEM certificate "
                                                      "(no readable -----BEGIN CERTIFICATE----- block)")]) from None


def load_private_key(path: str | Path, what: str):
    """The private key in a PEM file (without a passphrase), or InputError naming the file."""
    try:
        return serialization.load_pem_private_key(_pem(path, what), password=None)
    except TypeError:
        raise InputError([Problem(str(path), 0, what, "the private key has a passphrase; "
                                                      "the lab needs one without")]) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError([Problem(str(path), 0, what, "not a PEM private key "
                                                      "(no readable -----BEGIN ... PRIVATE KEY----- block)")]) from None


def check_pair(cert: str | Path, key: str | Path, cert_flag: str = "--cert", key_flag: str = "--key") -> None:
    """Both files are PEM and the key belongs to the (first) certificate; else InputError."""
    leaf = load_certificates(cert, cert_flag)[0]
    private = load_private_key(key, key_flag)
    if leaf.public_key() != private.public_key():
        raise InputError([Problem(str(key), 0, key_flag, f"this private key does not belong to the certificate {cert}")])


def init_ca(directory: str | Path, name: str = "FTPS Lab CA", days: int = 3650) -> Issued:
    """Create the CA in directory (ca.pem, ca.key) unless it is already there."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    issued = Issued(d / "ca.pem", d / "ca.key")
    if issued.cert.exists() and issued.key.exists():
        return issued
    key = _new_key()
    # A per-CA suffix: two lab CAs (the "other CA" of the tests) must never share a name.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {os.urandom(4).hex()}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FTPS Traversal Lab")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _save(issued, cert, key)


def issue(directory: str | Path, name: str, *, client: bool = False, ips: Iterable[str] = (),
          dns: Iterable[str] = (), cn: str | None = None, days: int = 365, expired: bool = False) -> Issued:
    """Issue <name>.pem/.key in directory, signed by directory's CA (created if missing)."""
    d = Path(directory)
    ca_cert, ca_key = _load(init_ca(d))
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
    if expired:
        start, end = now - dt.timedelta(days=30), now - dt.timedelta(days=1)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _save(Issued(d / f"{name}.pem", d / f"{name}.key"), cert, key)


def issue_server(directory: str | Path, name: str, ips: Iterable[str] = (), dns: Iterable[str] = (),
                 days: int = 365) -> Issued:
    """A server certificate; the SANs carry every address and name clients will use."""
    return issue(directory, name, ips=ips, dns=dns or [name], days=days)


def issue_client(directory: str | Path, user: str, days: int = 365) -> Issued:
    """A client certificate for user (CN=user), for SECURE_LOGIN REQUIRED / VERIFY_USER."""
    return issue(directory, f"client-{user}", client=True, cn=user, days=days)


def fingerprint(cert: str | Path | bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate (a path or the PEM bytes): upper hex, no colons."""
    data = cert if isinstance(cert, bytes) else Path(cert).read_bytes()
    return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex().upper()
