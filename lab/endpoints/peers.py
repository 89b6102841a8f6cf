"""Third-party FTP servers as processes: vsftpd, ProFTPD + mod_tls, pyftpdlib (the recipes of
reference/peer-ftps-survey.md §4, as code). Used by the interop tests, the benchmark and any runner
that wants a real peer instead of the lab's own server.

    with start_vsftpd(cert, key, implicit=False) as peer:        # on 127.0.0.1, free ports
        (peer.root / "hello.txt").write_bytes(b"hello")
        ... connect to peer.host:peer.port as peer.user/peer.password ...

Each server runs in the foreground from its own temporary directory (config, logs, served files),
in its own process group; stop() ends the group and every descendant by PID, then removes the
directory. `popen` lets a caller start it elsewhere (e.g. inside a lab namespace): it gets the argv
and the keyword arguments of subprocess.Popen. vsftpd and ProFTPD log in system users:
ensure_system_user() creates TEST_USER idempotently (useradd, chpasswd).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError, MissingFeature
from lab.network.ready import log_tail, wait_until

LOOPBACK = "127.0.0.1"
TEST_USER = "ftlabtest"
TEST_PASSWORD = "ftlab-test-pw"     # a throw-away system user for FTP logins to vsftpd/ProFTPD
PYFTPDLIB_USER, PYFTPDLIB_PASSWORD = "ftlabpy", "ftlabpy-pw"
PROFTPD_DIR = Path(__file__).resolve().parents[2] / ".deps" / "proftpd"
PROFTPD = PROFTPD_DIR / "usr" / "sbin" / "proftpd"
VSFTPD = shutil.which("vsftpd") or "/usr/sbin/vsftpd"

Popen = Callable[..., subprocess.Popen]


def missing(tool: str) -> str | None:
    """Why `tool` cannot run here (a one-line reason), or None when it can."""
    if tool == "proftpd":
        if not PROFTPD.exists():
            return f"ProFTPD is not unpacked at {PROFTPD} (./setup.sh puts it there)"
        if not (PROFTPD_DIR / "usr/lib/proftpd/mod_tls.so").exists():
            return "ProFTPD's mod_tls.so is missing (proftpd-mod-crypto not unpacked; run ./setup.sh)"
        return None
    if tool == "vsftpd":
        return None if Path(VSFTPD).exists() else "vsftpd is not installed (apt-get install vsftpd)"
    if tool == "pyftpdlib":
        try:
            import pyftpdlib  # noqa: F401
        except ImportError:
            return "pyftpdlib is not installed (pip install pyftpdlib)"
        return None
    return None if shutil.which(tool) else f"{tool} is not installed"


def ensure_system_user(user: str = TEST_USER, password: str = TEST_PASSWORD) -> tuple[str, str]:
    """Create the system user vsftpd/ProFTPD log in (idempotent; needs root)."""
    if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
        done = subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise LabError(f"cannot create the FTP test user {user}: {done.stderr.strip()}")
    done = subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, capture_output=True)
    if done.returncode != 0:
        raise LabError(f"cannot set the password of {user}: {done.stderr.strip()}")
    return user, password


# -- ports ---------------------------------------------------------------------------------------

def listening_ports(pid: int | str = "self") -> set[int]:
    """TCP ports in LISTEN state in the network namespace of process `pid`."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":                       # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _port_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_range(count: int, host: str = LOOPBACK) -> tuple[int, int]:
    """`count` consecutive free ports below the kernel's ephemeral range (32768-), so an outgoing
    connection cannot take one between this check and the server's bind."""
    for _ in range(200):
        lo = random.randrange(20000, 32000 - count)
        if all(_port_free(p, host) for p in range(lo, lo + count)):
            return lo, lo + count - 1
    raise LabError(f"no {count} consecutive free TCP ports found on {host}")


# -- processes -----------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc), children first."""
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


def _become_subreaper() -> None:
    """Orphans of the processes we start are reparented to us, not to PID 1 (which, in some
    containers, never reaps them): stop_process() then reaps exactly the PIDs it killed."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)      # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _reap(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:         # not (or no longer) our child: its parent reaps it
                break
            if done:
                break
            time.sleep(0.01)


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process started in its own session, and everything it forked, by PID (the group,
    then every descendant that left it); the killed descendants are reaped, not left as zombies."""
    _become_subreaper()
    stray: list[int] = []
    if proc.poll() is None:
        stray = descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _wait(proc, grace)
        stray += [p for p in descendants(proc.pid) if p not in stray]
        for pid in [proc.pid, *stray]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _wait(proc, grace)
    _reap(stray, grace)


def _wait(proc: subprocess.Popen, grace: float) -> None:
    """Wait up to `grace` seconds for the process to exit; still running is not an error here."""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def wait_listening(proc: subprocess.Popen, port: int, log: Path, timeout: float = 10.0) -> None:
    """Wait until `port` listens in the process's namespace (without connecting: a probe would be a
    session in the server's log)."""
    name = Path(str(proc.args[0] if isinstance(proc.args, list) else proc.args)).name
    wait_until(lambda: port in listening_ports(proc.pid), timeout=timeout, what=f"{name} (port {port})",
               proc=proc, log=log)


# -- servers -------------------------------------------------------------------------------------

@dataclass
class Peer:
    """A running third-party FTP server."""
    name: str
    proc: subprocess.Popen
    host: str
    port: int
    root: Path                 # the user's login directory (files put here can be fetched by name)
    workdir: Path
    log: Path
    user: str
    password: str
    implicit: bool = False
    pasv_range: tuple[int, int] = (0, 0)
    extra_logs: list[Path] = field(default_factory=list)
    tls_port: int | None = None          # the implicit-TLS listener beside an explicit one

    def url(self, path: str = "", scheme: str | None = None, credentials: bool = False) -> str:
        scheme = scheme or ("ftps" if self.implicit else "ftp")
        auth = f"{self.user}:{self.password}@" if credentials else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{path}"

    def logs(self) -> str:
        paths = dict.fromkeys([self.log, *self.extra_logs, self.workdir / "stdout.log"])
        return "\n".join(f"== {p.name}\n{log_tail(p, 40)}" for p in paths if p.exists())

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _workdir(name: str, owner: str | None, base: Path | None = None) -> tuple[Path, Path]:
    """A fresh directory for one server (config, logs) with root/ owned by the FTP user; under
    `base` (e.g. /dev/shm, so that a benchmark measures the endpoints, not the disk) or $TMPDIR."""
    work = Path(tempfile.mkdtemp(prefix=f"ftlab-{name}-", dir=base))
    work.chmod(0o755)                      # the FTP user must be able to reach root/
    root = work / "root"
    root.mkdir()
    if owner:
        shutil.chown(root, owner, owner)
    return work, root


def _spawn(argv: list[str], popen: Popen, port: int, work: Path, **peer: object) -> Peer:
    log = work / "stdout.log"
    with open(log, "ab") as out:
        proc = popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                     start_new_session=True)
    try:
        wait_listening(proc, port, log)
        if peer.get("tls_port"):
            wait_listening(proc, peer["tls_port"], log)  # type: ignore[arg-type]
    except BaseException:
        stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Peer(proc=proc, port=port, workdir=work, **peer)  # type: ignore[arg-type]


def vsftpd_config(*, host: str, port: int, root: Path, work: Path, cert: Path, key: Path,
                  implicit: bool, pasv_range: tuple[int, int], require_ssl_reuse: bool = True,
                  client_ca: Path | None = None, log: Path, force_tls: bool = True) -> str:
    """vsftpd 3.0.3: explicit or implicit FTPS, TLS forced on login and data (unless force_tls is
    False: then plain FTP is allowed too), foreground."""
    yes = {True: "YES", False: "NO"}
    lines = [
        "listen=YES", "listen_ipv6=NO", f"listen_address={host}", f"listen_port={port}",
        "background=NO", "anonymous_enable=NO", "local_enable=YES", "write_enable=YES",
        f"local_root={root}", "pam_service_name=vsftpd", "nopriv_user=nobody",
        f"secure_chroot_dir={work}/empty",
        # no seccomp sandbox / netns isolation: they fail in containers and lab namespaces
        "seccomp_sandbox=NO", "isolate=NO", "isolate_network=NO",
        "ssl_enable=YES", f"implicit_ssl={yes[implicit]}", f"rsa_cert_file={cert}",
        f"rsa_private_key_file={key}", "ssl_ciphers=HIGH", "ssl_tlsv1=YES", "ssl_sslv2=NO",
        "ssl_sslv3=NO", f"force_local_logins_ssl={yes[force_tls]}", f"force_local_data_ssl={yes[force_tls]}",
        f"require_ssl_reuse={yes[require_ssl_reuse]}",
        f"ssl_request_cert={yes[client_ca is not None]}", f"require_cert={yes[client_ca is not None]}",
        f"validate_cert={yes[client_ca is not None]}",
        "pasv_enable=YES", f"pasv_min_port={pasv_range[0]}", f"pasv_max_port={pasv_range[1]}",
        "port_enable=YES", "connect_from_port_20=NO",
        "xferlog_enable=YES", "log_ftp_protocol=YES", f"vsftpd_log_file={log}", "debug_ssl=YES",
    ]
    if client_ca:
        lines.append(f"ca_certs_file={client_ca}")
    return "\n".join(lines) + "\n"


def start_vsftpd(cert: Path, key: Path, implicit: bool = False, require_ssl_reuse: bool = True,
                 client_ca: Path | None = None, force_tls: bool = True, host: str = LOOPBACK,
                 popen: Popen = subprocess.Popen, workbase: Path | None = None,
                 port: int | None = None, pasv: tuple[int, int] | None = None) -> Peer:
    """vsftpd, explicit FTPS (AUTH TLS) or implicit_ssl=YES; require_ssl_reuse=YES by default.
    port and pasv: the control port and passive range (default: free ones)."""
    if reason := missing("vsftpd"):
        raise MissingFeature(reason)
    user, password = ensure_system_user()
    work, root = _workdir("vsftpd", user, workbase)
    (work / "empty").mkdir()
    port, pasv = port or free_port(host), pasv or free_port_range(10, host)
    log = work / "vsftpd.log"
    conf = work / "vsftpd.conf"
    conf.write_text(vsftpd_config(host=host, port=port, root=root, work=work, cert=cert, key=key,
                                  implicit=implicit, pasv_range=pasv, require_ssl_reuse=require_ssl_reuse,
                                  client_ca=client_ca, log=log, force_tls=force_tls))
    return _spawn([VSFTPD, str(conf)], popen, port, work,
                  name="vsftpd-implicit" if implicit else "vsftpd", host=host, root=root, log=log,
                  user=user, password=password, implicit=implicit, pasv_range=pasv)


def proftpd_config(*, host: str, port: int, root: Path, work: Path, cert: Path, key: Path,
                   pasv_range: tuple[int, int], tls_required: str, tls_options: str,
                   log: Path, tls_log: Path) -> str:
    """ProFTPD 1.3.8 + mod_tls (a DSO from proftpd-mod-crypto, loaded from .deps/proftpd)."""
    options = f"  TLSOptions            {tls_options}\n" if tls_options else ""
    return f"""\
ServerType              standalone
DefaultServer           on
ServerName              "ftlab-proftpd"
DefaultAddress          {host}
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
PassivePorts            {pasv_range[0]} {pasv_range[1]}
AllowForeignAddress     off
ModulePath              {PROFTPD_DIR}/usr/lib/proftpd
LoadModule              mod_tls.c
<IfModule mod_tls.c>
  TLSEngine             on
  TLSLog                {tls_log}
  TLSProtocol           TLSv1.2 TLSv1.3
  TLSRSACertificateFile {cert}
  TLSRSACertificateKeyFile {key}
  TLSRequired           {tls_required}
  TLSVerifyClient       off
  TLSRenegotiate        none
{options}</IfModule>
<Directory {root}>
  AllowOverwrite on
</Directory>
"""


def start_proftpd(cert: Path, key: Path, implicit: bool = False, tls_required: str = "auth+data",
                  tls_options: str = "", host: str = LOOPBACK, popen: Popen = subprocess.Popen) -> Peer:
    """ProFTPD + mod_tls. Explicit with `TLSRequired auth+data` (CCC accepted after login; session
    reuse required on data, ProFTPD's default), or implicit (`TLSOptions UseImplicitSSL`)."""
    if reason := missing("proftpd"):
        raise MissingFeature(reason)
    user, password = ensure_system_user()
    work, root = _workdir("proftpd", user)
    port, pasv = free_port(host), free_port_range(10, host)
    log, tls_log = work / "proftpd.log", work / "tls.log"
    if implicit:
        tls_required = "on"
        tls_options = f"UseImplicitSSL {tls_options}".strip()
    conf = work / "proftpd.conf"
    conf.write_text(proftpd_config(host=host, port=port, root=root, work=work, cert=cert, key=key,
                                   pasv_range=pasv, tls_required=tls_required, tls_options=tls_options,
                                   log=log, tls_log=tls_log))
    return _spawn([str(PROFTPD), "-n", "-q", "-c", str(conf)], popen, port, work,
                  name="proftpd-implicit" if implicit else "proftpd", host=host, root=root, log=log,
                  user=user, password=password, implicit=implicit, pasv_range=pasv,
                  extra_logs=[tls_log])


def start_pyftpdlib(cert: Path | None, key: Path | None, host: str = LOOPBACK,
                    popen: Popen = subprocess.Popen) -> Peer:
    """pyftpdlib (its own CLI): explicit FTPS with TLS required on control and data, or plain FTP
    when cert is None. Its users are its own (PYFTPDLIB_USER), not system users."""
    if reason := missing("pyftpdlib"):
        raise MissingFeature(reason)
    work, root = _workdir("pyftpdlib", None)
    port, pasv = free_port(host), free_port_range(10, host)
    argv = [sys.executable, "-m", "pyftpdlib", "-i", host, "-p", str(port), "-d", str(root),
            "-u", PYFTPDLIB_USER, "-P", PYFTPDLIB_PASSWORD, "-w", "-r", f"{pasv[0]}-{pasv[1]}",
            "--timeout", "60"]
    if cert and key:
        argv += ["--tls", "--certfile", str(cert), "--keyfile", str(key),
                 "--tls-control-required", "--tls-data-required"]
    return _spawn(argv, popen, port, work, name="pyftpdlib", host=host, root=root,
                  log=work / "stdout.log", user=PYFTPDLIB_USER, password=PYFTPDLIB_PASSWORD,
                  pasv_range=pasv)


def start_ftlab_server(cert: Path | None, key: Path | None, ftpdata: str = "", ca: Path | None = None,
                       implicit_listener: bool = False, users: dict[str, str] | None = None,
                       pasv_ports: int = 10, host: str = LOOPBACK, quiet: bool = False,
                       popen: Popen = subprocess.Popen, workbase: Path | None = None,
                       port: int | None = None, pasv: tuple[int, int] | None = None) -> Peer:
    """The lab's own server, as a user runs it (`ftlab server`), in a process of its own.

    ftpdata: extra FTP.DATA statements; PASSIVEDATAPORTS (a free range of `pasv_ports`) and
    LOGINDELAY 0 are added unless given. implicit_listener adds --tls-listen on a free port
    (peer.tls_port). The first of `users` (default ftlab:ftlab-pw) is peer.user. port and pasv: the
    control port and passive range (default: free ones)."""
    users = users or {"ftlab": "ftlab-pw"}
    work, root = _workdir("ftlab-server", None, workbase)
    port = port or free_port(host)
    tls_port = free_port(host) if implicit_listener else None
    pasv = pasv or free_port_range(pasv_ports, host)
    statements = ftpdata
    if "PASSIVEDATAPORTS" not in ftpdata.upper():
        statements += f"\nPASSIVEDATAPORTS ({pasv[0]},{pasv[1]})"
    if "LOGINDELAY" not in ftpdata.upper():
        statements += "\nLOGINDELAY 0"
    (work / "ftp.data").write_text(statements.strip() + "\n")
    argv = [sys.executable, "-m", "lab.cli", "server", "--listen", f"{host}:{port}", "--root", str(root),
            "--ftpdata", str(work / "ftp.data")]
    argv += [a for name, pw in users.items() for a in ("--user", f"{name}:{pw}")]
    if cert and key:
        argv += ["--cert", str(cert), "--key", str(key)]
    if ca:
        argv += ["--ca", str(ca)]
    if tls_port:
        argv += ["--tls-listen", f"{host}:{tls_port}"]
    if quiet:
        argv.append("--quiet")
    user, password = next(iter(users.items()))
    return _spawn(argv, popen, port, work, name="ftlab-server", host=host, root=root,
                  log=work / "stdout.log", user=user, password=password, pasv_range=pasv,
                  tls_port=tls_port)
