"""Throughput benchmark: the lab's FTPS client and server beside iperf3 and curl + vsftpd, on the same
path in the same run, reported as ratios (never bare times: the machine decides those).

    python -m lab.endpoints.throughput [--size MiB] [--runs N]         # loopback, 127.0.0.1

For a lab path (the matrix engineer's `ftlab bench`), pass how to start a process on each side:

    result = run_bench(server_host="198.51.100.10", server_popen=lambda argv, **kw: net.popen("server", argv, **kw),
                       client_popen=lambda argv, **kw: net.popen("client", argv, **kw))
    print(format_result(result))

Every measurement moves `size` bytes one way: RETR (server -> client; iperf3 -R) into a file, and
STOR (client -> server; iperf3 forward) from a file; all files on tmpfs (/dev/shm) when present. Each tool is timed by itself over the data
transfer only (the lab client's SHA-256 of a received file is computed after it):
iperf3's own receiver figure, curl's (time_total - time_pretransfer), and the lab client's
TransferResult seconds. MB/s = 10^6 bytes per second. The median of `runs` runs is used; a ratio is
the median of the runs' own ratios (run i of one tool over run i of the other, measured side by
side), printed with its min-max. Targets (issue 14, 2-core machine), RETR and STOR alike: plain >=
0.9 x iperf3, PROT P >= 0.55 x iperf3, both >= 1.5 x curl + vsftpd with the same protection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.endpoints import peers
from lab.errors import LabError
from lab.ftps import pki

Popen = Callable[..., subprocess.Popen]
MiB = 1 << 20
#: Issue 14: plain near the machine's limit, PROT P at about 80 % of the CPU's limit for TLS here
#: (0.67 x iperf3), both well ahead of curl + vsftpd. Every ratio is per direction (RETR, STOR).
TARGETS = {"plain_vs_iperf3": 0.9, "tls_vs_iperf3": 0.55, "plain_vs_curl_vsftpd": 1.5, "tls_vs_curl_vsftpd": 1.5}
RATIOS = ("plain_vs_iperf3", "tls_vs_iperf3", "plain_vs_curl_vsftpd", "tls_vs_curl_vsftpd",
          "curl_vsftpd_plain_vs_iperf3", "curl_vsftpd_tls_vs_iperf3")


@dataclass
class Measurement:
    tool: str          # "iperf3", "curl+vsftpd", "ftlab"
    security: str      # "plain" or "tls" (PROT P)
    direction: str     # "retr" (server -> client) or "stor" (client -> server)
    mbps: list[float] = field(default_factory=list)   # one per run; 0.0 = that run failed
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        good = [m for m in self.mbps if m > 0]
        return statistics.median(good) if good else 0.0


@dataclass(frozen=True)
class BenchPorts:
    """The ports of a bench on a lab path (ones its filters admit): iperf3's, and each FTP server's
    control port and passive range."""
    iperf3: int
    ftlab: int
    ftlab_pasv: tuple[int, int]
    vsftpd: int
    vsftpd_pasv: tuple[int, int]


@dataclass
class BenchResult:
    size: int
    runs: int
    path: str
    measurements: list[Measurement]
    ratios: dict[str, float]           # e.g. {"retr.plain_vs_iperf3": 0.95, ...}: median of the runs' ratios
    meets_targets: dict[str, bool]
    ratio_ranges: dict[str, list[float]] = field(default_factory=dict)   # [min, max] of the runs' ratios

    def to_dict(self) -> dict:
        d = asdict(self)
        for m, src in zip(d["measurements"], self.measurements, strict=True):
            m["median"] = src.median
        d["iperf3_spread"] = iperf3_spread(self)
        return d


#: iperf3 alone varying more than this between runs (max / min) makes the machine "noisy".
NOISY = 1.3


def iperf3_spread(result: BenchResult) -> dict[str, float]:
    """Per direction, how much iperf3 alone varied between the runs (max / min): the machine's
    own noise, which no ratio can be firmer than."""
    spread = {}
    for m in result.measurements:
        good = [v for v in m.mbps if v > 0]
        if m.tool == "iperf3" and len(good) > 1:
            spread[m.direction] = round(max(good) / min(good), 2)
    return spread


# -- one process pair -------------------------------------------------------------------------------

def _client(popen: Popen, argv: list[str], timeout: float) -> tuple[int, str, str]:
    proc = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        peers.stop_process(proc)
        return -1, "", f"timed out after {timeout:.0f}s"
    return proc.returncode, out, err


def _iperf3(host: str, size: int, reverse: bool, server_popen: Popen, client_popen: Popen,
            timeout: float, dial: str | None = None, port: int | None = None) -> float:
    """iperf3 listening on host:port (a free port by default), the client dialling `dial` (the
    address the path leads to: a NAT's in front of the server, or host itself)."""
    port = port or peers.free_port()
    server = server_popen(["iperf3", "-s", "-1", "-B", host, "-p", str(port)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        peers.wait_listening(server, port, Path(os.devnull))
        argv = ["iperf3", "-c", dial or host, "-p", str(port), "-n", str(size), "-J", *(["-R"] if reverse else [])]
        rc, out, err = _client(client_popen, argv, timeout)
        if rc != 0:
            raise LabError(f"iperf3 failed: {(err or out).strip()[-300:]}")
        end = json.loads(out)["end"]
        return end["sum_received"]["bytes"] / end["sum_received"]["seconds"] / 1e6
    finally:
        peers.stop_process(server)


def _curl(url: str, user: str, password: str, tls: bool, upload: Path | None, client_popen: Popen,
          timeout: float, download: Path) -> float:
    argv = ["curl", "-sS", "-k", "-u", f"{user}:{password}", "--max-time", str(int(timeout)),
            "-w", "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}"]
    if tls:
        # TLS 1.2: curl 7.88 uploads to vsftpd 3.0.3 under TLS 1.3 fail most of the time (426).
        argv += ["--ssl-reqd", "--tls-max", "1.2"]
    argv += ["-T", str(upload), url] if upload else [url, "-o", str(download)]
    rc, out, err = _client(client_popen, argv, timeout + 5)
    if rc != 0:
        raise LabError(f"curl failed (rc {rc}): {err.strip()[-300:]}")
    down, up, pre, total = (float(x) for x in out.split())
    return (down + up) / (total - pre) / 1e6


def _ftlab_client(url: str, tls: bool, upload: Path | None, ca: Path, client_popen: Popen,
                  timeout: float, size: int, download: Path, data: str = "pasv") -> float:
    argv = [sys.executable, "-m", "lab.cli", "client", url, "--json", "--timeout", str(int(timeout)),
            "--security", "tls" if tls else "plain", "--data", data, "--ca", str(ca)]
    argv += ["put", str(upload)] if upload else ["get", "-o", str(download)]
    rc, out, err = _client(client_popen, argv, timeout + 5)
    try:
        result = json.loads(out)
    except json.JSONDecodeError:
        raise LabError(f"ftlab client failed (rc {rc}): {(err or out).strip()[-300:]}") from None
    if result.get("outcome") != "ok" or result.get("bytes") != size:
        raise LabError(f"ftlab client: {result.get('stage')}: {result.get('reason')}")
    return float(result["mbps"])


# -- the run --------------------------------------------------------------------------------------

def _payload(path: Path, size: int) -> None:
    """`size` bytes that do not compress (TLS does not compress, but keep the disk honest)."""
    with open(path, "wb") as f:
        chunk = os.urandom(16 * MiB)
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def run_bench(size: int = 256 * MiB, runs: int = 7, server_host: str = peers.LOOPBACK,
              server_popen: Popen = subprocess.Popen, client_popen: Popen = subprocess.Popen,
              tools: tuple[str, ...] = ("iperf3", "curl+vsftpd", "ftlab"),
              progress: Callable[[str], None] = lambda line: None, timeout: float = 120,
              workbase: Path | None = None, dial_host: str | None = None,
              ports: BenchPorts | None = None) -> BenchResult:
    """Measure every tool x security x direction `runs` times, interleaved, and compute the ratios.

    On a lab path: the servers listen on server_host and the client dials `dial_host` (a NAT's
    address in front of the server; default server_host), on `ports` (the ones the path admits,
    chosen by the caller; default: free ones). Behind a NAT the lab client uses EPSV: with no ALG
    running, a 227 reply would name the server's private address."""
    dial = dial_host or server_host
    data_mode = "pasv" if dial == server_host else "epsv"
    for tool in ("iperf3", "curl", "vsftpd"):
        if (tool in "".join(tools)) and (why := peers.missing(tool)):
            raise LabError(f"benchmark needs {tool}: {why}")
    # Files live in memory (tmpfs) when there is one: the benchmark measures the endpoints and the
    # path, not this machine's disk (a VM disk writes 256 MiB slower than loopback moves it).
    base = workbase if workbase is not None else (Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    work = Path(tempfile.mkdtemp(prefix="ftlab-bench-", dir=base))
    work.chmod(0o755)
    started: list = []
    try:
        pki.init_ca(work / "pki")
        server_cert = pki.issue_server(work / "pki", "server", ips=list(dict.fromkeys([server_host, dial])))
        ca = work / "pki" / "ca.pem"
        source = work / "payload.bin"
        _payload(source, size)
        download = work / "download.bin"     # RETR writes a real file (curl and ftlab alike)

        cells: dict[tuple[str, str, str], Measurement] = {}
        for tool in tools:
            for sec in ("plain", "tls"):
                if tool == "iperf3" and sec == "tls":
                    continue
                for d in ("retr", "stor"):
                    cells[(tool, sec, d)] = Measurement(tool, sec, d)

        vsftpd = ftlab = None
        if "curl+vsftpd" in tools:
            vsftpd = peers.start_vsftpd(server_cert.cert, server_cert.key, force_tls=False,
                                        host=server_host, popen=server_popen, workbase=base,
                                        port=ports.vsftpd if ports else None,
                                        pasv=ports.vsftpd_pasv if ports else None)
            started.append(vsftpd)
            os.link(source, vsftpd.root / "payload.bin")
        if "ftlab" in tools:
            ftlab = peers.start_ftlab_server(server_cert.cert, server_cert.key, host=server_host,
                                             quiet=True, popen=server_popen, workbase=base,
                                             port=ports.ftlab if ports else None,
                                             pasv=ports.ftlab_pasv if ports else None)
            started.append(ftlab)
            os.link(source, ftlab.root / "payload.bin")

        for run in range(runs):
            for (tool, sec, d), cell in cells.items():
                tls, retr = sec == "tls", d == "retr"
                try:
                    if tool == "iperf3":
                        mbps = _iperf3(server_host, size, retr, server_popen, client_popen, timeout, dial,
                                       ports.iperf3 if ports else None)
                    elif tool == "curl+vsftpd":
                        assert vsftpd is not None
                        url = f"ftp://{dial}:{vsftpd.port}/" + ("payload.bin" if retr else f"up-{run}.bin")
                        mbps = _curl(url, vsftpd.user, vsftpd.password, tls, None if retr else source,
                                     client_popen, timeout, download)
                        (vsftpd.root / f"up-{run}.bin").unlink(missing_ok=True)
                    else:
                        assert ftlab is not None
                        url = (f"ftp://{ftlab.user}:{ftlab.password}@{dial}:{ftlab.port}/"
                               + ("payload.bin" if retr else f"up-{run}.bin"))
                        mbps = _ftlab_client(url, tls, None if retr else source, ca, client_popen,
                                             timeout, size, download, data_mode)
                        (ftlab.root / f"up-{run}.bin").unlink(missing_ok=True)
                except LabError as exc:
                    mbps = 0.0
                    cell.errors.append(str(exc))
                finally:
                    download.unlink(missing_ok=True)
                cell.mbps.append(mbps)
                progress(f"run {run + 1}/{runs}  {tool:12} {sec:5} {d}  {mbps:8.1f} MB/s")
        ratios, meets, ranges = _ratios(cells)
        where = dial if dial == server_host else f"{dial} -> {server_host}"
        return BenchResult(size, runs, f"{where} (client -> server)", list(cells.values()), ratios, meets, ranges)
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


def paired(num: list[float], den: list[float]) -> tuple[float, float, float] | None:
    """The ratio of runs measured side by side - run i of one over run i of the other, interleaved,
    so that the machine's load at that moment weighs on both - as (median, min, max); a run where
    either failed (0.0) is left out. None: no pair."""
    each = [n / d for n, d in zip(num, den, strict=False) if n > 0 and d > 0]
    if not each:
        return None
    return statistics.median(each), min(each), max(each)


def _ratios(cells: dict[tuple[str, str, str], Measurement]) -> tuple[dict, dict, dict]:
    """Per direction: each ratio's median over the runs, whether it meets its target, its min-max."""
    def runs(tool: str, sec: str, d: str) -> list[float]:
        cell = cells.get((tool, sec, d))
        return cell.mbps if cell else []

    ratios: dict[str, float] = {}
    ranges: dict[str, list[float]] = {}
    for d in ("retr", "stor"):
        iperf3 = runs("iperf3", "plain", d)
        pairs = {"plain_vs_iperf3": (runs("ftlab", "plain", d), iperf3),
                 "tls_vs_iperf3": (runs("ftlab", "tls", d), iperf3),
                 "plain_vs_curl_vsftpd": (runs("ftlab", "plain", d), runs("curl+vsftpd", "plain", d)),
                 "tls_vs_curl_vsftpd": (runs("ftlab", "tls", d), runs("curl+vsftpd", "tls", d)),
                 "curl_vsftpd_plain_vs_iperf3": (runs("curl+vsftpd", "plain", d), iperf3),
                 "curl_vsftpd_tls_vs_iperf3": (runs("curl+vsftpd", "tls", d), iperf3)}
        for name, (num, den) in pairs.items():
            if got := paired(num, den):
                ratios[f"{d}.{name}"] = round(got[0], 3)
                ranges[f"{d}.{name}"] = [round(got[1], 3), round(got[2], 3)]
    meets = {key: value >= TARGETS[key.split(".", 1)[1]] for key, value in ratios.items()
             if key.split(".", 1)[1] in TARGETS}
    return ratios, meets, ranges


def format_result(result: BenchResult) -> str:
    lines = [f"FTPS benchmark: {result.size / MiB:.0f} MiB per transfer, median of {result.runs} run(s), "
             f"path {result.path}", "",
             f"{'tool':14}{'security':10}{'RETR MB/s':>12}{'(min-max)':>13}{'STOR MB/s':>12}{'(min-max)':>13}"]
    by_key = {(m.tool, m.security, m.direction): m for m in result.measurements}
    for tool, sec in dict.fromkeys((m.tool, m.security) for m in result.measurements):
        label = "PROT P" if sec == "tls" else "plain"
        cols = "".join(_cell(by_key.get((tool, sec, d))) for d in ("retr", "stor"))
        lines.append(f"{tool:14}{label:10}{cols}")
    lines += ["", "ratio: median of the runs' ratios (each run's tools side by side), (min-max)", "",
              f"{'ratio':30}{'RETR':>20}{'STOR':>20}   target"]
    for name in RATIOS:
        cols = "".join(f"{_ratio(result, f'{d}.{name}'):>20}" for d in ("retr", "stor"))
        target = f">= {TARGETS[name]}" if name in TARGETS else ""
        verdicts = " ".join("ok" if result.meets_targets.get(f"{d}.{name}") else "MISSED"
                            for d in ("retr", "stor") if f"{d}.{name}" in result.meets_targets)
        lines.append(f"{name:30}{cols}   {target} {verdicts}".rstrip())
    noisy = {d: x for d, x in iperf3_spread(result).items() if x > NOISY}
    if noisy:
        varied = ", ".join(f"{x:.1f}x {d.upper()}" for d, x in noisy.items())
        lines += ["", f"note: iperf3 alone varied {varied} between runs (max/min): this machine was noisy, "
                      f"so a single run's ratio may be off by as much; more --runs or a quieter machine "
                      f"make the medians firmer"]
    errors = [f"{m.tool} {m.security} {m.direction}: {e}" for m in result.measurements for e in m.errors]
    if errors:
        lines += ["", "errors:", *(f"  {e}" for e in errors)]
    return "\n".join(lines)


def _cell(m: Measurement | None) -> str:
    """Median and the spread of the runs: on a shared 2-core machine single runs vary up to 2x,
    and the reader should see how much before trusting a ratio."""
    good = [v for v in m.mbps if v > 0] if m else []
    spread = f"({min(good):.0f}-{max(good):.0f})" if len(good) > 1 else ""
    return f"{m.median if m else 0:12.1f}{spread:>13}"


def _ratio(result: BenchResult, key: str) -> str:
    value, spread = result.ratios.get(key), result.ratio_ranges.get(key)
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.endpoints.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="MiB per transfer (default 256)")
    parser.add_argument("--runs", type=int, default=7, help="runs; the median is reported (default 7)")
    parser.add_argument("--tools", default="iperf3,curl+vsftpd,ftlab", help="comma-separated subset")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = run_bench(args.size * MiB, args.runs, tools=tuple(args.tools.split(",")),
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    except LabError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
