"""Third-party FTP peers as test fixtures: servers (vsftpd, ProFTPD + mod_tls, pyftpdlib) and clients
(curl, lftp, Python ftplib), the recipes of reference/peer-ftps-survey.md §4 turned into code.

Every server runs on 127.0.0.1 on free ports, in the foreground, from its own temporary directory
(config, logs, served files). It is started in its own process group and stopped by that PID (the
group, then any descendant that left it); its directory is removed afterwards, so nothing is left
behind. vsftpd and ProFTPD authenticate system users: `ensure_test_user()` creates TEST_USER
idempotently (useradd, chpasswd); the setup script creates it too.

    with start_vsftpd(certs, implicit=False) as peer:
        (peer.root / "hello.txt").write_bytes(b"hello")
        run = curl(["--ssl-reqd", "-k", peer.url("hello.txt")], peer)
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import ROOT

LOOPBACK = "127.0.0.1"
TEST_USER = "ftlabtest"
TEST_PASSWORD = "ftlab-test-pw"          # a throw-away system user for FTP logins, nothing else
PROFTPD_DIR = ROOT / ".deps" / "proftpd"
PROFTPD = PROFTPD_DIR / "usr" / "sbin" / "proftpd"
VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"


# -- availability ---------------------------------------------------------------------------

def missing(tool: str) -> str | None:
    """Why `tool` cannot run here (a skip reason), or None when it can."""
    if tool == "proftpd":
        if not PROFTPD.exists():
            return f"ProFTPD not unpacked at {PROFTPD} (the setup script puts it there)"
        if not (PROFTPD_DIR / "usr/lib/proftpd/mod_tls.so").exists():
            return "mod_tls.so missing: proftpd-mod-crypto not unpacked"
        return None
    if tool == "vsftpd":
        return None if Path(VSFTPD).exists() else "vsftpd is not installed (apt-get install vsftpd)"
    if tool == "pyftpdlib":
        try:
            import pyftpdlib  # noqa: F401
        except ImportError:
            return "pyftpdlib is not installed in the venv"
        return None
    return None if shutil.which(tool) else f"{tool} is not installed"


def need_root() -> str | None:
    return None if os.geteuid() == 0 else "system-user FTP servers need root (useradd, PAM, setuid)"


# -- small helpers ---------------------------------------------------------------------------

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


def _listening_ports() -> set[int]:
    """TCP ports in LISTEN state on any IPv4/IPv6 address of this network namespace."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":                       # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_port_range(count: int) -> tuple[int, int]:
    """`count` consecutive free ports below the kernel's ephemeral range (so an outgoing connection
    cannot take one between our check and the server's bind)."""
    for _ in range(200):
        lo = random.randrange(20000, 32000 - count)
        if all(_port_free(p) for p in range(lo, lo + count)):
            return lo, lo + count - 1
    raise RuntimeError(f"no {count} consecutive free ports found")


# -- the test user and certificates ----------------------------------------------------------------

def ensure_test_user() -> tuple[str, str]:
    """Create the system user the vsftpd/ProFTPD fixtures log in as (idempotent)."""
    if subprocess.run(["id", "-u", TEST_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER],
                       check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{TEST_PASSWORD}\n", text=True,
                   check=True, capture_output=True)
    return TEST_USER, TEST_PASSWORD


@dataclass
class Certs:
    """The lab CA and one server certificate for 127.0.0.1/localhost (PEM files)."""
    dir: Path
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1/localhost (PEM), key files 0600."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save_key(key, path: Path) -> None:
        path.touch(mode=0o600)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("ftlab test CA")).issuer_name(name("ftlab test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = Certs(directory, directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    save_key(key, paths.key)
    return paths


# -- processes ---------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process we started (in its own session) and everything it forked, by PID."""
    if proc.poll() is None:
        stray = _descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        stray += _descendants(proc.pid)
        for pid in [proc.pid, *stray]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(grace)


def wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 10.0) -> None:
    """Wait until `port` is in LISTEN state (without connecting: a probe would be a session)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: {tail(log)}")
        if port in _listening_ports():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on port {port} within {timeout}s: {tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# -- servers -----------------------------------------------------------------------------------

@dataclass
class Peer:
    """A running third-party FTP server."""
    name: str
    proc: subprocess.Popen
    port: int
    root: Path                 # the directory the user sees as its login directory
    workdir: Path
    log: Path
    user: str
    password: str
    implicit: bool = False
    pasv_range: tuple[int, int] = (0, 0)
    host: str = LOOPBACK
    extra_logs: list[Path] = field(default_factory=list)

    def url(self, path: str = "", scheme: str | None = None, credentials: bool = False) -> str:
        scheme = scheme or ("ftps" if self.implicit else "ftp")
        auth = f"{self.user}:{self.password}@" if credentials else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{path}"

    def logs(self) -> str:
        return "\n".join(tail(p, 40) for p in [self.log, *self.extra_logs])

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(name: str, owner: str | None) -> tuple[Path, Path]:
    """A fresh directory for one server (config, logs) with `root/` owned by the FTP user."""
    work = Path(tempfile.mkdtemp(prefix=f"ftlab-{name}-"))
    work.chmod(0o755)                      # the FTP user must be able to reach root/
    root = work / "root"
    root.mkdir()
    if owner:
        shutil.chown(root, owner, owner)
    return work, root


def _spawn(argv: list[str], log: Path, port: int, name: str, **peer: object) -> Peer:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_listening(proc, port, log)
    except BaseException:
        stop_process(proc)
        shutil.rmtree(peer["workdir"], ignore_errors=True)  # type: ignore[arg-type]
        raise
    return Peer(name=name, proc=proc, port=port, log=log, **peer)  # type: ignore[arg-type]


def start_vsftpd(certs: Certs, implicit: bool = False, require_ssl_reuse: bool = True,
                 client_ca: Path | None = None) -> Peer:
    """vsftpd 3.0.3, explicit FTPS (AUTH TLS) or implicit_ssl=YES, TLS forced on login and data."""
    user, password = ensure_test_user()
    work, root = _workdir("vsftpd", user)
    (work / "empty").mkdir()
    port, (lo, hi) = free_port(), free_port_range(10)
    log = work / "vsftpd.log"
    yes = {True: "YES", False: "NO"}
    conf = f"""\
listen=YES
listen_ipv6=NO
listen_address={LOOPBACK}
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_root={root}
pam_service_name=vsftpd
nopriv_user=nobody
secure_chroot_dir={work}/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
ssl_enable=YES
implicit_ssl={yes[implicit]}
rsa_cert_file={certs.cert}
rsa_private_key_file={certs.key}
ssl_ciphers=HIGH
ssl_tlsv1=YES
ssl_sslv2=NO
ssl_sslv3=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse={yes[require_ssl_reuse]}
ssl_request_cert={yes[client_ca is not None]}
require_cert={yes[client_ca is not None]}
validate_cert={yes[client_ca is not None]}
{f"ca_certs_file={client_ca}" if client_ca else ""}
pasv_enable=YES
pasv_min_port={lo}
pasv_max_port={hi}
port_enable=YES
connect_from_port_20=NO
xferlog_enable=YES
log_ftp_protocol=YES
vsftpd_log_file={log}
debug_ssl=YES
"""
    conf_path = work / "vsftpd.conf"
    conf_path.write_text(conf)
    return _spawn([VSFTPD, str(conf_path)], work / "stdout.log", port, "vsftpd-implicit" if implicit
                  else "vsftpd", root=root, workdir=work, user=user, password=password,
                  implicit=implicit, pasv_range=(lo, hi), extra_logs=[log])


def start_proftpd(certs: Certs, implicit: bool = False, tls_required: str = "auth+data",
                  tls_options: str = "") -> Peer:
    """ProFTPD 1.3.8 + mod_tls. Explicit with `TLSRequired auth+data` (CCC allowed after login), or
    implicit (`TLSOptions UseImplicitSSL`, `TLSRequired on`)."""
    user, password = ensure_test_user()
    work, root = _workdir("proftpd", user)
    port, (lo, hi) = free_port(), free_port_range(10)
    log, tls_log = work / "proftpd.log", work / "tls.log"
    if implicit:
        tls_required = "on"
        tls_options = f"UseImplicitSSL {tls_options}".strip()
    conf = f"""\
ServerType              standalone
DefaultServer           on
ServerName              "ftlab-proftpd"
DefaultAddress          {LOOPBACK}
Port                    {port}
SocketBindTight         on
UseIPv6                 off
User                    nobody
Group                   nogroup
Umask                   022
PidFile                 {work}/proftpd.pid
ScoreboardFile          {work}/proftpd.scoreboard
DelayTable              {work}/proftpd.delay
SystemLog               {log}
TransferLog             {work}/xfer.log
WtmpLog                 off
UseReverseDNS           off
AuthOrder               mod_auth_unix.c
RequireValidShell       off
DefaultRoot             {root}
DefaultChdir            {root}
PassivePorts            {lo} {hi}
AllowForeignAddress     off
ModulePath              {PROFTPD_DIR}/usr/lib/proftpd
LoadModule              mod_tls.c
<IfModule mod_tls.c>
  TLSEngine             on
  TLSLog                {tls_log}
  TLSProtocol           TLSv1.2 TLSv1.3
  TLSRSACertificateFile {certs.cert}
  TLSRSACertificateKeyFile {certs.key}
  TLSRequired           {tls_required}
  TLSVerifyClient       off
  TLSRenegotiate        none
  {f"TLSOptions {tls_options}" if tls_options else ""}
</IfModule>
<Directory {root}>
  AllowOverwrite on
</Directory>
"""
    conf_path = work / "proftpd.conf"
    conf_path.write_text(conf)
    return _spawn([str(PROFTPD), "-n", "-q", "-c", str(conf_path)], work / "stdout.log", port,
                  "proftpd-implicit" if implicit else "proftpd", root=root, workdir=work, user=user,
                  password=password, implicit=implicit, pasv_range=(lo, hi), extra_logs=[log, tls_log])


def start_pyftpdlib(certs: Certs | None) -> Peer:
    """pyftpdlib 2.2 (its own CLI), explicit FTPS with TLS required on control and data, or plain."""
    user, password = "ftlabpy", "ftlabpy-pw"     # pyftpdlib has its own user table
    work, root = _workdir("pyftpdlib", None)
    port, (lo, hi) = free_port(), free_port_range(10)
    argv = [sys.executable, "-m", "pyftpdlib", "-i", LOOPBACK, "-p", str(port), "-d", str(root),
            "-u", user, "-P", password, "-w", "-r", f"{lo}-{hi}", "--timeout", "60"]
    if certs:
        argv += ["--tls", "--certfile", str(certs.cert), "--keyfile", str(certs.key),
                 "--tls-control-required", "--tls-data-required"]
    log = work / "pyftpdlib.log"
    return _spawn(argv, log, port, "pyftpdlib", root=root, workdir=work, user=user,
                  password=password, pasv_range=(lo, hi))


# -- clients -----------------------------------------------------------------------------------

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


def _run(argv: list[str], timeout: float) -> ClientRun:
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ClientRun(argv, -1, out + f"\n(timed out after {timeout}s)")
    return ClientRun(argv, cp.returncode, cp.stdout + cp.stderr)


def curl(args: list[str], user: str, password: str, timeout: float = 20) -> ClientRun:
    """curl with the survey's conventions: -v transcript, bounded, certificate not checked unless
    the caller passes --cacert."""
    argv = ["curl", "-v", "-sS", "--connect-timeout", "5", "--max-time", str(int(timeout) - 2),
            "-u", f"{user}:{password}"]
    if "--cacert" not in args:
        argv.append("-k")
    return _run(argv + args, timeout)


LFTP_BASE = ("set net:max-retries 1; set net:timeout 8; set net:reconnect-interval-base 1; "
             "set cmd:fail-exit yes; set xfer:clobber on; ")


def lftp(url: str, user: str, password: str, settings: str, commands: str, ca: Path | None = None,
         timeout: float = 30) -> ClientRun:
    """lftp -c with settings (e.g. "set ftp:ssl-force true") and commands (e.g. "get a -o b")."""
    tls = f"set ssl:ca-file {ca}; set ssl:check-hostname no; " if ca else "set ssl:verify-certificate no; "
    script = f"{LFTP_BASE}{tls}{settings}; debug 5; open -u {user},{password} {url}; {commands}"
    return _run(["lftp", "-c", script], timeout)


class ReuseFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS that reuses the control connection's TLS session on data connections
    (the survey's 5-line subclass; vsftpd's require_ssl_reuse=YES and ProFTPD need it)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
        return conn, size
