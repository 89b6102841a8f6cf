"""Third-party endpoints in a matrix cell: curl and lftp as clients, vsftpd and ProFTPD as servers.

A cell with `+curl` (or `+lftp`, `+vsftpd`, `+proftpd`) runs that program instead of the built-in
endpoint, in the same node, on the same ports (21 and 990, which the pictures forward and
permit). A client's outcome is turned into the same JSON shape as `ftlab client --json`
(outcome, stage, reason, bytes, sha256, mbps, transcript), so lab.matrix.verdict judges every client
alike. The servers' configuration files come from lab.endpoints.peers (tested there against the
built-in endpoints); here they get the pictures' ports, passive range and active port 20.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab.endpoints import peers
from lab.errors import LabError
from lab.ftps.config import ServerConfig

CLIENTS = ("curl", "lftp")
SERVERS = ("vsftpd", "proftpd")


# -- clients --------------------------------------------------------------------------------------

def client_argv(kind: str, security: str, data: str, host: str, port: int, path: str, user: str,
                password: str, ca: Path, out: Path, timeout: float) -> list[str]:
    if kind == "curl":
        scheme = "ftps" if security == "implicit" else "ftp"
        argv = ["curl", "-sS", "-v", "--cacert", str(ca), "-u", f"{user}:{password}", "-o", str(out),
                "--connect-timeout", "3", "--max-time", str(int(min(timeout, 6))),
                "-w", "ftlab-timing %{size_download} %{time_pretransfer} %{time_total}\\n"]
        if security in ("tls", "tls-ccc"):
            argv.append("--ssl-reqd")
        if security == "tls-ccc":
            argv += ["--ftp-ssl-ccc", "--ftp-ssl-ccc-mode", "active"]
        argv += {"pasv": ["--disable-epsv"], "epsv": ["--ftp-pasv"], "port": ["-P", "-", "--disable-eprt"],
                 "eprt": ["-P", "-"]}[data]
        return [*argv, f"{scheme}://{host}:{port}/{path}"]
    if kind == "lftp":
        scheme = "ftps" if security == "implicit" else "ftp"
        settings = [f"set ssl:ca-file {ca}", "set ssl:verify-certificate yes", "set ssl:check-hostname no",
                    "set net:max-retries 1", "set net:timeout 3", "set net:reconnect-interval-base 1",
                    "set cmd:fail-exit yes", "set xfer:clobber on",
                    f"set ftp:ssl-allow {'no' if security == 'plain' else 'yes'}",
                    f"set ftp:ssl-force {'yes' if security == 'tls' else 'no'}",
                    "set ftp:ssl-protect-data yes",
                    f"set ftp:passive-mode {'on' if data in ('pasv', 'epsv') else 'off'}",
                    f"set ftp:prefer-epsv {'yes' if data == 'epsv' else 'no'}"]
        script = "; ".join([*settings, f"open -u {user},{password} {scheme}://{host}:{port}",
                            f"get {path} -o {out}"])
        return ["lftp", "-d", "-c", script]
    raise LabError(f"unknown client {kind!r}")


def _transcript(kind: str, stderr: str) -> list[str]:
    """The control channel from the client's debug output, in `> command` / `< reply` form."""
    lines = []
    for raw in stderr.splitlines():
        if kind == "curl" and raw[:2] in ("> ", "< "):
            lines.append(raw)
        elif kind == "lftp":
            m = re.match(r"^\s*(--->|<---)\s?(.*)$", raw)
            if m:
                lines.append(("> " if m.group(1) == "--->" else "< ") + m.group(2))
    return [re.sub(r"^> PASS .*", "> PASS ****", x) for x in lines]


def _stage(transcript: list[str], failed_tls: bool) -> str:
    """Where a third-party client stopped, read from how far its control channel got."""
    sent = [x[2:].split(" ", 1)[0].upper() for x in transcript if x.startswith("> ")]
    replies = [x[2:5] for x in transcript if x.startswith("< ")]
    if not replies:
        return "tls" if failed_tls else "connect"
    if "230" not in replies:
        return "tls" if failed_tls or ("AUTH" in sent and "USER" not in sent) else "login"
    if any(v in sent for v in ("RETR", "STOR", "LIST")):
        tail = replies[-1] if replies else ""
        return "data-connect" if tail in ("150", "125", "425") or failed_tls else "transfer"
    if any(v in sent for v in ("PASV", "EPSV", "PORT", "EPRT")):
        return "data-setup" if replies[-1][:1] in ("4", "5") else "data-connect"
    return "data-setup"


def client_result(kind: str, returncode: int, stdout: str, stderr: str, out: Path, seconds: float) -> dict:
    """The outcome of a curl/lftp run in the shape of `ftlab client --json`."""
    transcript = _transcript(kind, stderr)
    size = out.stat().st_size if out.exists() else 0
    sha = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
    transfer_s = seconds
    m = re.search(r"ftlab-timing (\d+) ([\d.]+) ([\d.]+)", stdout)
    if m and float(m.group(3)) > float(m.group(2)):
        transfer_s = float(m.group(3)) - float(m.group(2))
    if returncode == 0:
        return {"outcome": "ok", "stage": None, "reason": "", "code": None, "bytes": size, "sha256": sha,
                "seconds": round(transfer_s, 6), "mbps": round(size / transfer_s / 1e6, 3) if transfer_s else 0.0,
                "transcript": transcript}
    last = [x for x in stderr.splitlines() if x.strip() and not x.startswith(("> ", "< ", "* ", "---", "<---"))]
    reason = f"{kind} exited {returncode}: {(last[-1] if last else 'no message').strip()[:200]}"
    failed_tls = kind == "curl" and returncode in (35, 58, 59, 60, 64, 66, 77, 80, 83, 90, 91)
    codes = [int(x[2:5]) for x in transcript if x.startswith("< ") and x[2:5].isdigit()]
    code = codes[-1] if codes and codes[-1] >= 400 else None
    return {"outcome": "failed", "stage": _stage(transcript, failed_tls), "reason": reason, "code": code,
            "bytes": size, "sha256": sha, "seconds": 0.0, "mbps": 0.0, "transcript": transcript}


# -- servers --------------------------------------------------------------------------------------

@dataclass
class PeerServer:
    kind: str
    procs: list[subprocess.Popen]
    logs: list[Path]
    user: str
    password: str
    root: Path
    extra: list[Path] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            terminate(p)


def terminate(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a server process: SIGTERM, then SIGKILL if it has not gone within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _passive_range(statements: dict) -> tuple[int, int] | None:
    """PASSIVEDATAPORTS as the built-in server reads it (one parser for the statement)."""
    return ServerConfig.from_dict({"PASSIVEDATAPORTS": statements.get("PASSIVEDATAPORTS")}).PASSIVEDATAPORTS


def start_peer_server(kind: str, popen, node: str, statements: dict, workdir: Path | None, data_file: Path,
                      cert: Path, key: Path, control_port: int = 21, implicit_port: int = 990) -> PeerServer:
    """vsftpd or ProFTPD in `node`: one process for explicit/plain on 21, one for implicit on 990."""
    if why := peers.missing(kind):
        raise LabError(f"{kind} is not available: {why}")
    user, password = peers.ensure_system_user()
    # The FTP user must reach its root through every parent directory: a report folder may sit in
    # a private (0700) directory, so the server's files live in the run's TMPDIR (removed with it).
    work = Path(tempfile.mkdtemp(prefix=f"ftlab-{kind}-")) if workdir is None else workdir / kind
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)
    target = root / data_file.name
    if not target.exists():
        shutil.copyfile(data_file, target)
    shutil.chown(root, user, user)
    prange = _passive_range(statements)
    procs, logs = [], []
    for implicit, port in ((False, control_port), (True, implicit_port)):
        sub = work / ("implicit" if implicit else "explicit")
        sub.mkdir(exist_ok=True)
        log = sub / f"{kind}.log"
        if kind == "vsftpd":
            (sub / "empty").mkdir(exist_ok=True)
            conf_text = peers.vsftpd_config(host="0.0.0.0", port=port, root=root, work=sub, cert=cert, key=key,
                                            implicit=implicit, pasv_range=prange or (0, 0), log=log,
                                            force_tls=implicit)
            # The slides' active mode comes from port 20 (the static filters permit exactly that).
            conf_text = conf_text.replace("connect_from_port_20=NO", "connect_from_port_20=YES")
            argv = [peers.VSFTPD, str(sub / "vsftpd.conf")]
            (sub / "vsftpd.conf").write_text(conf_text)
        elif kind == "proftpd":
            conf_text = peers.proftpd_config(host="0.0.0.0", port=port, root=root, work=sub, cert=cert, key=key,
                                             pasv_range=prange or (1024, 65535),
                                             tls_required="on" if implicit else "off",
                                             tls_options="UseImplicitSSL" if implicit else "", log=log,
                                             tls_log=sub / "tls.log")
            conf_text = conf_text.replace("SocketBindTight         on", "SocketBindTight         off")
            if prange is None:
                conf_text = re.sub(r"(?m)^PassivePorts.*\n", "", conf_text)
            (sub / "proftpd.conf").write_text(conf_text)
            argv = [str(peers.PROFTPD), "-n", "-q", "-c", str(sub / "proftpd.conf")]
        else:
            raise LabError(f"unknown server {kind!r}")
        with open(sub / "stdout.log", "ab") as out:
            proc = popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        logs.append(log)
        try:
            peers.wait_listening(proc, port, sub / "stdout.log")
        except BaseException:
            for p in procs:
                p.kill()
            raise
    return PeerServer(kind, procs, logs, user, password, root)
