"""Helpers for tests that use third-party FTP peers: the servers (from lab.endpoints.peers), a lab CA and
server certificate for 127.0.0.1, payload files, and the clients (curl, lftp, Python ftplib) run
with the recipes of reference/peer-ftps-survey.md §4.2.

    certs = make_certs(tmp_path)
    with start_vsftpd(certs) as peer:
        sha = write_payload(peer.root / "a.bin", 100_000)
        run = curl(["--ssl-reqd", peer.url("a.bin"), "-o", out], peer.user, peer.password)
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.endpoints import peers as _peers
from lab.endpoints.peers import (  # noqa: F401  (re-exported for the tests)
    LOOPBACK,
    TEST_USER,
    Peer,
    descendants,
    free_port,
    free_port_range,
    listening_ports,
    missing,
)
from lab.ftps import pki


def need_root() -> str | None:
    return None if os.geteuid() == 0 else "system-user FTP servers need root (useradd, PAM, setuid)"


# -- files -----------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_payload(path: Path, size: int, seed: int = 0) -> str:
    """A file of `size` pseudo-random bytes (deterministic per seed); returns its SHA-256."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return sha256_file(path)


# -- certificates ----------------------------------------------------------------------------------

@dataclass
class Certs:
    """The lab CA and a server certificate for 127.0.0.1/localhost (PEM files)."""
    dir: Path
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    ca = pki.init_ca(directory)
    server = pki.issue_server(directory, "server", ips=[LOOPBACK], dns=["localhost"])
    return Certs(directory, ca.cert, server.cert, server.key)


# -- servers ---------------------------------------------------------------------------------------

def start_vsftpd(certs: Certs, implicit: bool = False, **kw) -> Peer:
    return _peers.start_vsftpd(certs.cert, certs.key, implicit=implicit, **kw)


def start_proftpd(certs: Certs, implicit: bool = False, **kw) -> Peer:
    return _peers.start_proftpd(certs.cert, certs.key, implicit=implicit, **kw)


def start_ftlab(certs: Certs | None, ftpdata: str = "", **kw) -> Peer:
    """The lab's own server via `ftlab server` (peer.tls_port set when implicit_listener=True)."""
    return _peers.start_ftlab_server(certs.cert if certs else None, certs.key if certs else None,
                                     ftpdata, **kw)


def start_pyftpdlib(certs: Certs | None) -> Peer:
    return _peers.start_pyftpdlib(certs.cert if certs else None, certs.key if certs else None)


# -- clients ---------------------------------------------------------------------------------------

@dataclass
class ClientRun:
    argv: list[str]
    rc: int
    output: str                # stdout + stderr: the client's transcript

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} -> rc={self.rc}\n{self.output[-3000:]}"


def run(argv: list[str], timeout: float) -> ClientRun:
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ClientRun(argv, -1, out + f"\n(timed out after {timeout}s)")
    return ClientRun(argv, cp.returncode, cp.stdout + cp.stderr)


def curl(args: list[str], user: str, password: str, timeout: float = 20) -> ClientRun:
    """curl -v, bounded; the certificate is not checked unless args has --cacert."""
    argv = ["curl", "-v", "-sS", "--connect-timeout", "5", "--max-time", str(int(timeout) - 2),
            "-u", f"{user}:{password}"]
    if "--cacert" not in args:
        argv.append("-k")
    return run(argv + args, timeout)


LFTP_BASE = ("set net:max-retries 1; set net:timeout 8; set net:reconnect-interval-base 1; "
             "set cmd:fail-exit yes; set xfer:clobber on; ")


def lftp(url: str, user: str, password: str, settings: str, commands: str, ca: Path | None = None,
         timeout: float = 30) -> ClientRun:
    """lftp -c with settings (e.g. "set ftp:ssl-force true") and commands (e.g. "get a -o b")."""
    tls = f"set ssl:ca-file {ca}; set ssl:check-hostname no; " if ca else "set ssl:verify-certificate no; "
    script = f"{LFTP_BASE}{tls}{settings}; debug 5; open -u {user},{password} {url}; {commands}"
    return run(["lftp", "-c", script], timeout)


class ReuseFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS that reuses the control connection's TLS session on data connections
    (the survey's 5-line subclass; vsftpd's require_ssl_reuse=YES and ProFTPD need it)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, size
