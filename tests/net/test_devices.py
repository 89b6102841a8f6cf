"""The devices with real packets: the scapy ALG, the kernel helper and the dynamic filter on
NFQUEUE inside the shipped pictures, with the lab's FTPS server and client (and ftplib where a
test needs to choose the exact command after CCC).

Every scenario runs in its own sandbox (lab.network.sandbox.call_in_sandbox): the `in_sandbox_*`
functions execute there and return plain JSON, the tests assert on it.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from lab.network.sandbox import call_in_sandbox

pytestmark = [pytest.mark.network]

DATA_MODES = ["pasv", "epsv", "port", "eprt"]
USER, PASSWORD = "lab", "lab-pw"
FILE_SIZE = 300_000
#: The served file: the same bytes in the sandbox and here, so every transfer is checked whole.
CONTENT = random.Random(10).randbytes(FILE_SIZE)
SHA256 = hashlib.sha256(CONTENT).hexdigest()


# -- bodies (run inside the sandbox) ------------------------------------------------------------

class Site:
    """A LabNet with the lab's server running on the `server` node."""

    def __init__(self, topology, alg=None, env=None, statements=None):
        import os
        import tempfile
        from pathlib import Path

        from lab.network.net import LabNet

        self.tmp = Path(tempfile.mkdtemp(prefix="ftlab-devtest-"))
        if env:
            os.environ.update(env)
        self.net = LabNet(topology, alg=alg, workdir=self.tmp / "run")
        self.topology = topology
        self.statements = {**topology.ftp.server_statements, **(statements or {})}

    def __enter__(self):
        import sys
        import time
        from pathlib import Path

        from lab.ftps import pki

        self.net.__enter__()
        try:
            root = self.tmp / "root"
            root.mkdir()
            (root / "f.bin").write_bytes(CONTENT)
            addr = str(self.topology.ftp.server_address)
            pki.init_ca(self.tmp / "pki")
            issued = pki.issue_server(self.tmp / "pki", "server", ips=[addr, str(self.net.address("server"))])
            ftpdata = self.tmp / "server.ftpdata"
            ftpdata.write_text("".join(f"{k} {v}\n" for k, v in self.statements.items()))
            self.ftlab = str(Path(sys.executable).with_name("ftlab"))
            self.server = self.net.popen("server", [
                self.ftlab, "server", "--listen", "0.0.0.0:21", "--tls-listen", "0.0.0.0:990",
                "--root", str(root), "--user", f"{USER}:{PASSWORD}", "--cert", str(issued.cert),
                "--key", str(issued.key), "--ftpdata", str(ftpdata), "--quiet"],
                stdout=open(self.tmp / "server.log", "w"), stderr=open(self.tmp / "server.err", "w"))
            deadline = time.monotonic() + 10
            while ":21 " not in self.net.run("server", ["ss", "-ltn"]).stdout:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError(f"server did not start: {(self.tmp / 'server.err').read_text()}")
                time.sleep(0.05)
        except BaseException:
            self.net.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        import shutil

        self.net.__exit__(*exc)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def client(self, security: str, data: str, count: int = 1, noop_after_ccc: bool = False,
               timeout: float = 4) -> dict:
        """One session of the ftplib driver in the client node."""
        import json
        import sys
        from pathlib import Path

        argv = [sys.executable, str(Path(__file__).with_name("ftp_driver.py")),
                str(self.topology.ftp.server_address), USER, PASSWORD, "f.bin", "--security", security,
                "--data", data, "--count", str(count), "--timeout", str(timeout)]
        if noop_after_ccc:
            argv.append("--noop-after-ccc")
        done = self.net.run("client", argv, check=False, timeout=timeout * (count + 4))
        try:
            result = json.loads(done.stdout)
        except ValueError:
            result = {"ok": False, "stdout": done.stdout[-500:], "stderr": done.stderr[-500:]}
        return result

    def events(self) -> list[dict]:
        from lab.matrix.jsonl import read_all as read

        return read(self.net.events_path)

    def capture_control(self) -> None:
        """tcpdump of the control port on every NAT router: the segments its kernel helper reads."""
        import subprocess
        import time

        self.captures = {}
        for name, node in self.topology.nodes.items():
            if node.nat is None:
                continue
            path, err = self.tmp / f"{name}-control.pcap", self.tmp / f"{name}-control.err"
            with open(err, "w") as ferr:
                self.net.popen(name, ["tcpdump", "-n", "-U", "--immediate-mode", "-i", node.interfaces[0].name,
                                      "-w", str(path), "tcp port 21"], stdout=subprocess.DEVNULL, stderr=ferr)
            self.captures[name] = path
        deadline = time.monotonic() + 10
        while not all("listening on" in (self.tmp / f"{n}-control.err").read_text() for n in self.captures):
            if time.monotonic() > deadline:
                raise RuntimeError("tcpdump did not start on the NAT routers")
            time.sleep(0.05)

    def helper_replay(self, windows: dict[str, list[float]]) -> dict[str, dict]:
        """Per cell (its time window) and NAT router: the kernel helper's tracker replayed on the
        control connection opened in that window (first_clear_line, per direction)."""
        import time

        time.sleep(0.3)                          # let tcpdump write the last segments
        out: dict[str, dict] = {cell: {} for cell in windows}
        for router, path in self.captures.items():
            conns = control_connections(path)
            for cell, (t0, t1) in windows.items():
                found = [c for c in conns if t0 <= c["syn"] <= t1]
                out[cell][router] = (replay(found[0]) if len(found) == 1
                                     else {"error": f"{len(found)} control connections in the cell's window"})
        return out


# -- the kernel helper's newline tracker, replayed on the segments a router forwarded --------------
#
# nf_conntrack_ftp (help(), find_nl_seq, update_nl_seq) reads a segment only if it starts where an
# earlier segment of the same direction ended in '\n' (two such positions remembered per direction),
# and every segment that ends in '\n' is remembered, TLS records included. Inside TLS that is
# chance: a record's last byte is 0x0a once in 256. So the first clear line after CCC is missed,
# unless the TLS record just before it (the close_notify) happened to end in 0x0a: then it is read
# like any other line. Which of the two happened is in the captured bytes, so a test can know.

#: Who sends the line a NAT must rewrite: the server's 227/229 in passive modes, the client's
#: PORT/EPRT in active ones.
ANNOUNCER = {"pasv": "s2c", "epsv": "s2c", "port": "c2s", "eprt": "c2s"}


def assemble(segments: list[tuple[int, bytes]], isn: int) -> bytes:
    """One direction's byte stream from its segments (repeats dropped), up to the first gap."""
    at: dict[int, bytes] = {}
    for seq, payload in segments:
        offset = (seq - isn - 1) % 2**32
        if len(payload) > len(at.get(offset, b"")):
            at[offset] = payload
    stream = bytearray()
    for offset in sorted(at):
        if offset > len(stream):
            break
        stream += at[offset][len(stream) - offset:]
    return bytes(stream)


def clear_after_tls(stream: bytes) -> int | None:
    """Where, in one direction's control stream, TLS ended (CCC) and clear text began; None if it never did."""
    from lab.ftps.grammar import is_tls_record

    pos, tls = 0, False
    while pos < len(stream):
        if is_tls_record(stream[pos:pos + 3]):
            pos += 5 + int.from_bytes(stream[pos + 3:pos + 5], "big")
            tls = True
        elif tls:
            return pos
        else:
            newline = stream.find(b"\n", pos)
            if newline < 0:
                return None
            pos = newline + 1
    return None


def first_clear_line(segments: list[tuple[int, bytes]], isn: int) -> dict | None:
    """The first clear line after TLS in one direction, and whether nf_conntrack_ftp reads it.

    segments: (seq, payload) in the order the router forwarded them (retransmissions included);
    isn: the sequence number of that direction's SYN. None if the direction never left TLS."""
    stream = assemble(segments, isn)
    start = clear_after_tls(stream)
    if start is None:
        return None
    line = (isn + 1 + start) % 2**32
    seen = {"line": stream[start:start + 16].decode("latin-1"), "after": stream[start - 1:start].hex(),
            "read": False}
    remembered: list[int] = []                  # the helper's seq_aft_nl for this direction
    for seq, payload in segments:
        if seq == line:                         # find_nl_seq, before this segment's own update
            seen["read"] = line in remembered
            break
        if payload.endswith(b"\n"):            # update_nl_seq: keep the two newest
            end = (seq + len(payload)) % 2**32
            if end in remembered:
                continue
            if len(remembered) < 2:
                remembered.append(end)
            else:
                oldest = 0 if _before(remembered[0], remembered[1]) else 1
                if _before(remembered[oldest], end):
                    remembered[oldest] = end
    return seen


def replay(conn: dict) -> dict[str, dict | None]:
    """first_clear_line in both directions of one control connection (control_connections)."""
    return {d: first_clear_line([(seq, payload) for sent, seq, payload in conn["segments"] if sent == d],
                                conn["isn"][d]) if d in conn["isn"] else None
            for d in ("c2s", "s2c")}


def _before(a: int, b: int) -> bool:
    """TCP sequence order (the kernel's before())."""
    return (a - b) & 0x80000000 != 0


def control_connections(path) -> list[dict]:
    """The control connections in a capture: when the client's SYN passed, each direction's initial
    sequence number, and the segments with data as (direction, seq, payload) in capture order."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    conns, current = [], {}
    for pkt in rdpcap(str(path)):
        if IP not in pkt or TCP not in pkt:
            continue
        tcp = pkt[TCP]
        d = "c2s" if tcp.dport == 21 else "s2c"
        client = (pkt[IP].src, tcp.sport) if d == "c2s" else (pkt[IP].dst, tcp.dport)
        if d == "c2s" and tcp.flags.S and not tcp.flags.A:
            current[client] = {"syn": float(pkt.time), "isn": {}, "segments": []}
            conns.append(current[client])
        conn = current.get(client)
        if conn is None:
            continue
        if tcp.flags.S:
            conn["isn"][d] = tcp.seq
        elif payload := bytes(tcp.payload):
            conn["segments"].append((d, tcp.seq, payload))
    return conns


def in_sandbox_matrix(name: str, alg: str | None, cells: list[list[str]], timeout: float = 4,
                      replay: bool = False) -> dict:
    """Each cell one driver session; replay: capture the control port on the NAT routers and
    replay the kernel helper's tracker on each cell's control connection (results[cell]["helper"])."""
    import time

    from lab.topology.loader import load

    with Site(load(name), alg) as site:
        if replay:
            site.capture_control()
        results = {}
        for s, d in cells:
            t0 = time.time()
            results[f"{s}/{d}"] = site.client(s, d, timeout=timeout)
            results[f"{s}/{d}"]["window"] = [t0, time.time()]
        if replay:
            for cell, seen in site.helper_replay({c: r["window"] for c, r in results.items()}).items():
                results[cell]["helper"] = seen
        return {"results": results, "events": site.events()}


def in_sandbox_both(name: str, cells: list[list[str]]) -> dict:
    return {alg: in_sandbox_matrix(name, alg, cells, timeout=2, replay=alg == "kernel")
            for alg in ("scapy", "kernel")}


# -- tests ----------------------------------------------------------------------------------------

def ok(result: dict) -> bool:
    """The session ended well and every transfer delivered the file, byte for byte."""
    n = result.get("transfers", 0)
    return (result.get("ok") is True and n > 0 and result["bytes"] == [FILE_SIZE] * n
            and result["sha256"] == [SHA256] * n)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["client-nat", "server-nat", "double-nat"])
def test_alg_plain_all_data_modes(name):
    out = call_in_sandbox(__file__, "in_sandbox_matrix", name, "scapy",
                          [["plain", d] for d in DATA_MODES], timeout=110)
    failed = {k: v for k, v in out["results"].items() if not ok(v)}
    assert not failed, (failed, [e for e in out["events"] if e["type"] in ("error", "drop")])


def in_sandbox_session(name: str, alg: str | None, security: str, data: str, count: int,
                       noop_after_ccc: bool = False, env: dict | None = None, timeout: float = 4,
                       replay: bool = False) -> dict:
    import time

    from lab.topology.loader import load

    with Site(load(name), alg, env) as site:
        if replay:
            site.capture_control()
        t0 = time.time()
        result = site.client(security, data, count=count, noop_after_ccc=noop_after_ccc, timeout=timeout)
        helper = site.helper_replay({"session": [t0, time.time()]})["session"] if replay else None
        return {"result": result, "events": site.events(), "helper": helper}


def in_sandbox_tls_byte_identical(name: str, device: str, implicit: bool = False) -> dict:
    """A TLS session through the ALG (explicit with the ftplib driver, or implicit on 990 with
    curl), captured on every interface of the device: the control connection's bytes, per
    direction, on each side."""
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap

    from lab.topology.loader import load

    topo = load(name)
    # curl speaks the immediate-handshake model of implicit FTPS, not z/OS's clear 220 first
    site = Site(topo, "scapy", statements={"SECUREIMPLICITZOS": "FALSE"} if implicit else None)
    site.net.pcap = True
    port = 990 if implicit else 21
    with site:
        if implicit:
            got = site.tmp / "got.bin"
            done = site.net.run("client", ["curl", "-s", "-S", "-k", "--max-time", "10", "-o", str(got),
                                           "--user", f"{USER}:{PASSWORD}",
                                           f"ftps://{topo.ftp.server_address}/f.bin"], check=False)
            result = {"ok": done.returncode == 0 and got.exists() and got.read_bytes() == CONTENT,
                      "stderr": done.stderr}
        else:
            result = site.client("tls", "epsv")
            result["ok"] = ok(result)
        import time
        time.sleep(0.3)                          # let tcpdump flush
        streams = {}
        for intf in topo.nodes[device].interfaces:
            per_dir: dict[str, dict[int, bytes]] = {"c2s": {}, "s2c": {}}
            for pkt in rdpcap(str(site.net.workdir / "pcap" / f"{intf.name}.pcap")):
                if TCP in pkt and port in (pkt[TCP].sport, pkt[TCP].dport) and bytes(pkt[TCP].payload):
                    d = "c2s" if pkt[TCP].dport == port else "s2c"
                    per_dir[d][pkt[TCP].seq] = bytes(pkt[TCP].payload)
            streams[intf.name] = {d: b"".join(v for _, v in sorted(segs.items())).hex()
                                  for d, segs in per_dir.items()}
        return {"result": result, "streams": streams, "events": site.events()}


def kinds(events: list[dict], kind: str, device: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == kind and (device is None or e["device"] == device)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lose_one", [False, True], ids=["clean", "rewritten-segment-lost-once"])
def test_fifty_transfers_with_length_changing_rewrites(lose_one):
    # double-nat, PASV: nat-s rewrites 227 (10,1,1,10,...) -> (203,0,113,1,...): 2 bytes longer
    # each time, so every later segment of the session rides on the sequence adjustment.
    env = {"FTLAB_ALG_DROP_FIRST_REWRITE": "1"} if lose_one else None
    out = call_in_sandbox(__file__, "in_sandbox_session", "double-nat", "scapy", "plain", "pasv", 50,
                          False, env, timeout=110)
    assert ok(out["result"]) and out["result"]["transfers"] == 50, out["result"]
    rewrites = kinds(out["events"], "rewrite", "nat-s")
    assert len(rewrites) == 50 and all(len(r["after"]) == len(r["before"]) + 2 for r in rewrites)
    lost = [e for e in kinds(out["events"], "drop") if "test hook" in e["reason"]]
    assert [e["device"] for e in lost] == (["nat-s"] if lose_one else [])   # nat-c rewrites nothing in PASV


@pytest.mark.timeout(60)
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit-990"])
def test_tls_crosses_the_alg_byte_identical(implicit):
    out = call_in_sandbox(__file__, "in_sandbox_tls_byte_identical", "client-nat", "nat-c", implicit, timeout=55)
    assert out["result"]["ok"], out["result"]
    sides = list(out["streams"].values())
    assert len(sides) == 2 and sides[0] == sides[1]
    assert all(len(s["c2s"]) > 1000 and len(s["s2c"]) > 1000 for s in sides)
    assert kinds(out["events"], "tls-detected", "nat-c") and not kinds(out["events"], "rewrite")


CCC_CASES = [("client-nat", "port"), ("client-nat", "eprt"), ("server-nat", "pasv"), ("double-nat", "pasv")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,data", CCC_CASES)
def test_tls_ccc_rewritten_when_transfer_command_is_first_after_ccc(name, data):
    out = call_in_sandbox(__file__, "in_sandbox_session", name, "scapy", "tls-ccc", data, 2, timeout=55)
    assert ok(out["result"]) and out["result"]["transfers"] == 2, (out["result"], kinds(out["events"], "error"))
    assert kinds(out["events"], "ccc") and len(kinds(out["events"], "rewrite")) >= 2


def _record(kind: int, body: bytes) -> bytes:
    return bytes([kind, 3, 3]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize("last,split,read", [(0x41, False, False), (0x0A, False, True), (0x0A, True, False)],
                         ids=["close-notify-ends-0x41", "close-notify-ends-0x0a", "line-coalesced-with-it"])
def test_helper_replay_reads_the_first_clear_line_only_after_a_newline(last, split, read):
    """The replay of nf_conntrack_ftp's tracker on made-up segments: greeting and AUTH lines, TLS
    records, then the first clear line. A retransmitted record changes nothing; a line that does
    not start a segment is never read."""
    isn = 2**32 - 40                              # the sequence numbers wrap inside the stream
    clear = [b"220 ready\r\n", b"234 AUTH TLS OK\r\n"]
    tls = [_record(0x16, bytes(90)), _record(0x17, bytes(40) + b"\n"), _record(0x15, bytes(25) + bytes([last]))]
    line = b"227 Entering Passive Mode (10,1,1,10,234,162)\r\n"
    payloads = clear + tls[:-1] + ([tls[-1] + line] if split else [tls[-1], line])
    segments, seq = [], isn + 1
    for payload in payloads:
        segments.append((seq % 2**32, payload))
        seq += len(payload)
    segments.insert(3, segments[2])               # a retransmission of the first TLS record
    seen = first_clear_line(segments, isn)
    assert seen == {"line": line[:16].decode(), "after": f"{last:02x}", "read": read}
    assert first_clear_line(segments[:4], isn) is None      # still inside TLS: no clear line yet


def helper_read(helper: dict, data: str) -> bool:
    """Did the kernel helper read the announcement (PASV/EPSV: the server's first clear line,
    PORT/EPRT: the client's) on every NAT router? A router that saw no clear line after TLS
    (the session failed before CCC) read nothing."""
    d = ANNOUNCER[data]
    return all((seen.get(d) or {}).get("read", False) for seen in helper.values())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,data", [CCC_CASES[0], CCC_CASES[3]])
def test_kernel_helper_blind_spot_first_line_after_ccc(name, data):
    """The kernel helper misses the first clear line after CCC (it reads a segment only where one
    ended in a newline, and inside TLS that is chance): PASV/PORT first fails, NOOP first works.
    The chance is replayed from the routers' captures: when the close_notify before PASV/PORT
    ended in 0x0a (1 in 256) the helper reads the line and the session must pass."""
    first = call_in_sandbox(__file__, "in_sandbox_session", name, "kernel", "tls-ccc", data, 1, False, None, 2,
                            True, timeout=55)
    assert ok(first["result"]) == helper_read(first["helper"], data), (first["result"], first["helper"])
    assert all(seen.get(ANNOUNCER[data]) for seen in first["helper"].values()), first["helper"]
    noop = call_in_sandbox(__file__, "in_sandbox_session", name, "kernel", "tls-ccc", data, 1, True, timeout=55)
    assert ok(noop["result"]), noop["result"]


AFTER_RECORD = r"""
import json, socket, sys, time
addr = sys.argv[1]
out = {}
for last in (0x41, 0x0A):
    s = socket.create_connection((addr, 21), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()
    me = s.getsockname()[0].replace(".", ",")
    s.sendall(bytes([0x15, 3, 3, 0, 26]) + bytes(25) + bytes([last]))     # a close_notify's size and type
    time.sleep(0.1)                                                       # its own segment
    s.sendall(("PORT %s,4,1\r\n" % me).encode())
    while b"PORT " not in (reply := f.readline()):
        pass
    out["%02x" % last] = reply.split(b"PORT ")[1].decode().strip()
    s.close()
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_kernel_helper_reads_a_line_only_where_a_segment_ended_in_a_newline():
    """What the replay above assumes, on this kernel: a PORT right after a TLS-looking record is
    not read when the record ends in 0x41, and is read (rewritten by nf_nat_ftp, expectation
    created) when it ends in 0x0a, the one byte in 256 that resynchronises the helper."""
    out = call_in_sandbox(__file__, "in_sandbox_echo", "kernel", AFTER_RECORD, timeout=55)
    client, public = "192,168,1,10", "198,51,100,1"
    assert out["echo"]["41"] == f"{client},4,1", out["echo"]
    assert out["echo"]["0a"].startswith(f"{public},"), out["echo"]
    assert len(kinds(out["events"], "mapping-open", "nat-c")) == 1, out["events"]


@pytest.mark.timeout(150)
def test_dynamic_filter_plain_and_ccc_pass_tls_fails_with_observed_drop():
    cells = [[s, d] for s in ("plain", "tls", "tls-ccc") for d in DATA_MODES]
    out = call_in_sandbox(__file__, "in_sandbox_matrix", "dynamic-filter", None, cells, timeout=140)
    res, events = out["results"], out["events"]
    for d in DATA_MODES:
        assert ok(res[f"plain/{d}"]), (d, res[f"plain/{d}"])
        assert ok(res[f"tls-ccc/{d}"]), (d, res[f"tls-ccc/{d}"])
        assert not res[f"tls/{d}"]["ok"], d
    drops = kinds(events, "drop", "fw")
    # every TLS data mode left a drop naming the firewall, the reason and the packet (a SYN)
    blind = [e for e in drops if "TLS" in e["reason"]]
    server, client = "203.0.113.10", "198.51.100.10"
    assert {(e["src"], e["dst"]) for e in blind} == {(client, server), (server, client)}
    assert all(e["flags"] == "S" and e["proto"] == "tcp" and e["dport"] > 1023 for e in blind)
    assert len(kinds(events, "pinhole-used", "fw")) == 8        # plain and tls-ccc, 4 modes each
    assert not [e for e in kinds(events, "error", "fw") if "failed" in e.get("message", "")]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["client-nat", "server-nat", "double-nat", "dynamic-filter-nat"])
def test_scapy_alg_and_kernel_helper_agree_except_first_line_after_ccc(name):
    cells = [[s, d] for s in ("plain", "tls", "tls-ccc") for d in DATA_MODES]
    out = call_in_sandbox(__file__, "in_sandbox_both", name, cells, timeout=230)
    scapy, kernel = out["scapy"]["results"], out["kernel"]["results"]

    def mapped(cell: str) -> bool:      # the scapy ALG had to open a mapping for this cell
        t0, t1 = scapy[cell]["window"]
        return any(t0 <= e["ts"] <= t1 for e in kinds(out["scapy"]["events"], "mapping-open"))

    differ = {c for c in scapy if ok(scapy[c]) != ok(kernel[c])}
    # The kernel's blind spot: a cell that needs the ALG after CCC, unless the helper read the
    # announcement after all (the close_notify before it ended in 0x0a: replayed from the capture)
    needs_alg = [d for d in DATA_MODES if mapped(f"tls-ccc/{d}")]
    replayed = {d: kernel[f"tls-ccc/{d}"]["helper"] for d in needs_alg}
    assert all(seen.get(ANNOUNCER[d]) for d in needs_alg for seen in replayed[d].values()), replayed
    blind = {f"tls-ccc/{d}" for d in needs_alg if not helper_read(replayed[d], d)}
    assert blind, ("this picture needs the ALG after CCC somewhere", replayed)
    assert differ == blind, {c: (scapy[c], kernel[c]) for c in differ ^ blind}
    assert all(ok(scapy[f"tls-ccc/{d}"]) for d in needs_alg)
    assert all(ok(scapy[f"plain/{d}"]) for d in DATA_MODES)


def peer_commands(addr: str) -> dict[str, list[str]]:
    """curl and lftp through the ALG, each told to use the announced address as sent (curl skips
    the 227 address by default since 7.74, lftp "fixes" private ones: both would hide the ALG).
    `{out}` in an argument is the file the download goes to."""
    url = f"ftp://{addr}/f.bin"
    curl = ["curl", "-s", "-S", "--max-time", "10", "-o", "{out}", "--user", f"{USER}:{PASSWORD}"]
    lftp_set = ("set ftp:ssl-allow no; set ftp:fix-pasv-address no; set net:max-retries 1; "
                "set net:timeout 5; set xfer:clobber on; ")
    lftp = ["lftp", "-u", f"{USER},{PASSWORD}", "-e"]
    return {
        "curl/pasv": [*curl, "--disable-epsv", "--no-ftp-skip-pasv-ip", url],
        "curl/epsv": [*curl, url],
        "curl/port": [*curl, "--ftp-port", "-", "--disable-eprt", url],
        "curl/eprt": [*curl, "--ftp-port", "-", url],
        "lftp/pasv": [*lftp, lftp_set + "set ftp:prefer-epsv no; get f.bin -o {out}; bye", addr],
        "lftp/port": [*lftp, lftp_set + "set ftp:passive-mode no; get f.bin -o {out}; bye", addr],
    }


def in_sandbox_peers(name: str) -> dict:
    from lab.topology.loader import load

    with Site(load(name), "scapy") as site:
        out = {}
        for label, argv in peer_commands(str(site.topology.ftp.server_address)).items():
            got = site.tmp / label.replace("/", "-")
            done = site.net.run("client", [a.replace("{out}", str(got)) for a in argv], check=False, timeout=30)
            out[label] = {"rc": done.returncode, "stdout": done.stdout[-200:], "stderr": done.stderr[-300:],
                          "sha256": hashlib.sha256(got.read_bytes()).hexdigest() if got.exists() else None}
        return {"results": out, "events": site.events()}


@pytest.mark.interop
@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", ["client-nat", "server-nat", "double-nat"])
def test_alg_with_curl_and_lftp(name):
    out = call_in_sandbox(__file__, "in_sandbox_peers", name, timeout=140)
    res = out["results"]
    failed = {k: v for k, v in res.items() if v["rc"] != 0 or v["sha256"] != SHA256}
    assert not failed, failed
    assert kinds(out["events"], "rewrite") or kinds(out["events"], "mapping-open")


# Replies `200 <the line>`. SIZE is answered as a server that puts the client's argument in its
# reply and breaks the reply at each CR (as the built-in server did before issue 10): `SIZE
# a\rPORT h,0,22\rb` comes back as the lines `550-a` / `PORT h,0,22` / `550 b...`. A device must
# never take that line for a client's PORT.
ECHO = r"""
import socket, threading
srv = socket.create_server(("0.0.0.0", 21))
def serve(c):
    f = c.makefile("rb")
    c.sendall(b"220 echo\r\n")
    for line in f:
        verb, _, arg = line.rstrip(b"\r\n").partition(b" ")
        if verb.upper() == b"SIZE":
            *lines, last = arg.split(b"\r")
            c.sendall(b"550-" + b"\r\n".join(lines) + b"\r\n550 " + last + b": no such file.\r\n")
        else:
            c.sendall(b"200 " + line.rstrip(b"\r\n") + b"\r\n")
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

HOSTILE = r"""
import json, os, socket, sys, time
addr = sys.argv[1]
def conn():
    s = socket.create_connection((addr, 21), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()
    return s, f
me = None
out = {}
s, f = conn()
me = s.getsockname()[0].replace(".", ",")
hostile = ["PORT 10,9,9,9,4,1", "RETR PORT %s,4,2" % me, "PORT %s,300,1" % me,
           "EPRT |1|10.9.9.9|1030|", "227 Entering Passive Mode (%s,4,5)" % me, "PORT %s,-4,6" % me]
for line in hostile:
    s.sendall(line.encode() + b"\r\n")
    out[line] = f.readline().decode().rstrip()
s.sendall(b"PO")                                   # a valid PORT split across two segments
time.sleep(0.05)
s.sendall(("RT %s,4,9\r\n" % me).encode())
out["split"] = f.readline().decode().rstrip()
s.close()
s, f = conn()                                      # FTP-looking text inside TLS, then garbage
secret = ("\r\nPORT %s,4,10\r\n" % me).encode()
s.sendall(bytes([0x16, 3, 1, 0, 4]) + b"helo" + bytes([0x17, 3, 3, 0, len(secret)]) + secret)
s.sendall(os.urandom(3000))
time.sleep(0.2)
s.close()
s, f = conn()                                      # the device is still up and rewriting
s.sendall(("PORT %s,4,11\r\n" % me).encode())
out["after"] = f.readline().decode().rstrip()
print(json.dumps(out))
"""


def responder(net, script: str) -> None:
    """Start a scripted FTP responder on the server node's port 21 and wait until it listens."""
    import sys
    import time

    net.popen("server", [sys.executable, "-c", script])
    deadline = time.monotonic() + 5
    while ":21 " not in net.run("server", ["ss", "-ltn"]).stdout:
        assert time.monotonic() < deadline, "responder did not start"
        time.sleep(0.02)


def in_sandbox_echo(alg: str, script: str) -> dict:
    """A scripted client (script: Python source printing JSON) against the echo responder, through
    client-nat's nat-c with this ALG."""
    import json
    import sys
    import time

    from lab.matrix.jsonl import read_all as read
    from lab.network.net import LabNet
    from lab.topology.loader import load

    topo = load("client-nat")
    with LabNet(topo, alg=alg) as net:
        responder(net, ECHO)
        done = net.run("client", [sys.executable, "-c", script, str(topo.ftp.server_address)], timeout=30)
        time.sleep(0.2)
        return {"echo": json.loads(done.stdout), "events": read(net.events_path)}


@pytest.mark.timeout(60)
def test_hostile_control_traffic_opens_nothing_live():
    out = call_in_sandbox(__file__, "in_sandbox_echo", "scapy", HOSTILE, timeout=55)
    echo, events = out["echo"], out["events"]
    for line, answer in echo.items():
        if line not in ("split", "after"):
            assert answer == "200 " + line, (line, answer)         # passed through unchanged
    assert echo["split"] == "200 PORT 198,51,100,1,4,9"
    assert echo["after"] == "200 PORT 198,51,100,1,4,11"
    assert len(kinds(events, "rewrite", "nat-c")) == 2
    assert [e["public"] for e in kinds(events, "mapping-open", "nat-c")] == ["198.51.100.1:1033", "198.51.100.1:1035"]
    assert kinds(events, "tls-detected", "nat-c")
    assert len(kinds(events, "ignored", "nat-c")) >= 5


# -- slipstreaming: direction from the SYN, announcements naming their sender (issue 10) ----------

# The client: a control connection FROM source port sys.argv[2], the slipstream command, then a
# connection attempt to every address the reply announced and to the extra targets given.
SLIPSTREAM = r"""
import json, re, socket, sys
addr, sport, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[4:]]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport))
s.settimeout(5)
s.connect((addr, 21))
f = s.makefile("rb")
f.readline()
s.sendall(b"SIZE a\rPORT " + host.replace(".", ",").encode() + b",0,22\rb\r\n")
reply = []
while not reply or not reply[-1].startswith("550 "):
    line = f.readline().decode("ascii", "replace")
    if not line:
        break
    reply.append(line.rstrip("\r\n"))
for line in reply:
    m = re.match(r"PORT (\d+),(\d+),(\d+),(\d+),(\d+),(\d+)$", line)
    if m:
        n = [int(x) for x in m.groups()]
        targets.append((".".join(map(str, n[:4])), n[4] * 256 + n[5]))
tried = {}
for target in dict.fromkeys(targets):
    c = socket.socket()
    c.settimeout(1.5)
    try:
        c.connect(target)
        tried["%s:%d" % target] = "connected"
    except OSError as exc:
        tried["%s:%d" % target] = str(exc) or type(exc).__name__
    finally:
        c.close()
s.close()
print(json.dumps({"reply": reply, "tried": tried}))
"""


def wait_for_drops(net, device: str, targets: set[str], seconds: float = 3.0) -> list[dict]:
    """The events once `device` has reported a drop to every ADDR:PORT in targets (or time is up)."""
    import time

    from lab.matrix.jsonl import read_all as read

    deadline = time.monotonic() + seconds
    while True:
        events = read(net.events_path)
        dropped = {f"{e.get('dst')}:{e.get('dport')}" for e in kinds(events, "drop", device)}
        if targets <= dropped or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def in_sandbox_slipstream(name: str, device: str, cport: int) -> dict:
    import json
    import sys

    from lab.network.net import LabNet
    from lab.network.netcheck import listening
    from lab.topology.loader import load

    topo = load(name)
    with LabNet(topo) as net, listening(net, "server", [22]):
        responder(net, ECHO)
        server, dialed = str(net.address("server")), str(topo.ftp.server_address)
        # the server's port 22, directly and (NAT) at the lowest port an ALG may map it to
        extra = [f"{dialed}:22"] + ([f"{dialed}:1024"] if dialed != server else [])
        done = net.run("client", [sys.executable, "-c", SLIPSTREAM, dialed, str(cport), server, *extra],
                       timeout=30)
        out = json.loads(done.stdout)
        public = {t for t in out["tried"] if not t.startswith("10.")}
        return {**out, "server": server, "events": wait_for_drops(net, device, public)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cport", [990, 21], ids=["from-990", "from-21"])
@pytest.mark.parametrize("name,device", [("server-nat", "nat-s"), ("dynamic-filter", "fw")])
def test_slipstream_from_a_control_port_opens_nothing(name, device, cport):
    """Issue 10, item 1 on the shipped pictures: a client whose control connection comes from
    port 990 or 21 makes the server echo `PORT <server>,0,22` on a line of its own. The device
    takes the direction from the SYN: that line is the server's text. Nothing is rewritten or
    opened, and every attempt to reach the server's port 22 is dropped by the device, by name."""
    out = call_in_sandbox(__file__, "in_sandbox_slipstream", name, device, cport, timeout=55)
    events, server = out["events"], out["server"]
    assert out["tried"] and all("timed out" in r for r in out["tried"].values()), out["tried"]
    assert out["reply"] == ["550-a", f"PORT {server.replace('.', ',')},0,22", "550 b: no such file."]
    assert not [e for e in events if e["type"] in ("rewrite", "mapping-open", "pinhole-open")]
    (ignored,) = kinds(events, "ignored", device)
    assert ignored["message"].startswith("PORT sent by the server: not its announcement")
    # the device drops what reaches it; the server's private address (the echo, unrewritten)
    # never gets past the internet
    drops = {f"{e['dst']}:{e['dport']}": (e["device"], e["reason"]) for e in kinds(events, "drop")}
    assert set(drops) == set(out["tried"]), (drops, out["tried"])
    why = {"nat-s": "unsolicited inbound connection", "fw": "no pinhole: not announced",
           "internet": "private address not routed"}
    for target, (by, reason) in drops.items():
        assert by == ("internet" if target.startswith("10.") else device) and reason.startswith(why[by]), drops


# One control connection per line (so each one's pinhole, if any, stands on its own).
SAY = r"""
import json, socket, sys
out = {}
for line in sys.argv[2:]:
    with socket.create_connection((sys.argv[1], 21), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(line.encode() + b"\r\n")
        out[line] = f.readline().decode().rstrip()
print(json.dumps(out))
"""

FW_ADDRESSES = ["198.51.100.1", "203.0.113.1"]          # the dynamic-filter picture's fw


def in_sandbox_port_naming_the_firewall() -> dict:
    import json
    import sys

    from lab.network.net import LabNet
    from lab.network.netcheck import connect, listening
    from lab.topology.loader import load

    topo = load("dynamic-filter")
    with LabNet(topo) as net, listening(net, "fw", [22, 1025]), listening(net, "client", [1025]):
        responder(net, ECHO)
        lines = [f"PORT {a.replace('.', ',')},0,22" for a in FW_ADDRESSES] + ["PORT 198,51,100,10,4,1"]
        said = json.loads(net.run("client", [sys.executable, "-c", SAY, "203.0.113.10", *lines]).stdout)
        to_fw = connect(net, "server", [(a, p) for a in FW_ADDRESSES for p in (22, 1025)], timeout=1.5)
        to_client = connect(net, "server", [("198.51.100.10", 1025)], timeout=1.5)
        targets = {r["to"] for r in to_fw}
        return {"said": said, "to_fw": to_fw, "to_client": to_client,
                "events": wait_for_drops(net, "fw", targets)}


@pytest.mark.timeout(60)
def test_dynamic_filter_opens_nothing_to_itself():
    """Issue 10, item 2 on the shipped picture: a PORT naming the firewall's own address opened a
    pinhole to fw:22, and every PORT also admitted the server to any of fw's addresses. Now only
    the announced client address opens, for the server only, and the rest is dropped by name."""
    out = call_in_sandbox(__file__, "in_sandbox_port_naming_the_firewall", timeout=55)
    events = out["events"]
    assert all(not r["ok"] and "timed out" in r["error"] for r in out["to_fw"]), out["to_fw"]
    assert all(answer == "200 " + line for line, answer in out["said"].items()), out["said"]
    assert [e["message"] for e in kinds(events, "ignored", "fw")] == [
        f"PORT names {a}, not its sender 198.51.100.10: no pinhole" for a in FW_ADDRESSES]
    opened = [(e["src"], e["dst"], e["dport"], e.get("also")) for e in kinds(events, "pinhole-open", "fw")]
    assert opened == [("203.0.113.10", "198.51.100.10", 1025, None)]
    drops = {f"{e['dst']}:{e['dport']}": e["reason"] for e in kinds(events, "drop", "fw")}
    assert set(drops) == {r["to"] for r in out["to_fw"]}
    assert all(reason.startswith("no pinhole") for reason in drops.values()), drops
    (reached,) = out["to_client"]
    assert reached["ok"] and reached["seen_as"] == "203.0.113.10", reached


# -- ALG mappings: single use, limited lifetime ------------------------------------------------

MAPPINGS = r"""
import ftplib, json, socket, sys, time
addr, user, password, lifetime = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def dial(target):
    c = socket.socket()
    c.settimeout(1.5)
    try:
        c.connect(target)
        return "connected"
    except OSError as exc:
        return str(exc) or type(exc).__name__
    finally:
        c.close()
ftp = ftplib.FTP()
ftp.connect(addr, 21, timeout=5)
ftp.login(user, password)
out = {}
first = ftplib.parse227(ftp.sendcmd("PASV"))
out["used"] = "%s:%d" % first
out["first"] = dial(first)
time.sleep(0.5)                       # the ALG reads its rules' counters every 20 ms
out["again"] = dial(first)
late = ftplib.parse227(ftp.sendcmd("PASV"))
out["expired"] = "%s:%d" % late
time.sleep(lifetime + 1)
out["late"] = dial(late)
ftp.close()
print(json.dumps(out))
"""

LIFETIME = 2.0


def in_sandbox_mappings() -> dict:
    import json
    import sys

    from lab.topology.loader import load

    topo = load("server-nat")
    with Site(topo, "scapy", env={"FTLAB_ALG_LIFETIME": str(LIFETIME)}) as site:
        done = site.net.run("client", [sys.executable, "-c", MAPPINGS, str(topo.ftp.server_address), USER,
                                       PASSWORD, str(LIFETIME)], timeout=30)
        out = json.loads(done.stdout)
        return {**out, "events": wait_for_drops(site.net, "nat-s", {out["used"], out["expired"]})}


@pytest.mark.timeout(60)
def test_alg_mapping_is_single_use_and_expires():
    """server-nat, PASV through the scapy ALG: the mapping to the server's passive port admits
    one connection; a second one to the same public port is dropped (the server still listens:
    a mapping left in place would reach it). A mapping nobody uses is gone after its lifetime."""
    out = call_in_sandbox(__file__, "in_sandbox_mappings", timeout=55)
    events = out["events"]
    assert out["used"].startswith("203.0.113.1:") and out["expired"].startswith("203.0.113.1:")
    assert out["first"] == "connected", out
    assert "timed out" in out["again"] and "timed out" in out["late"], out
    assert [e["public"] for e in kinds(events, "mapping-open", "nat-s")] == [out["used"], out["expired"]]
    assert [e["public"] for e in kinds(events, "mapping-used", "nat-s")] == [out["used"]]
    assert [e["public"] for e in kinds(events, "mapping-expired", "nat-s")] == [out["expired"]]
    drops = {f"{e['dst']}:{e['dport']}": e["reason"] for e in kinds(events, "drop", "nat-s")}
    assert set(drops) == {out["used"], out["expired"]}, drops


# -- the nftables filter ---------------------------------------------------------------------------

def in_sandbox_nftables(path: str) -> dict:
    from lab.topology.loader import load

    with Site(load(path)) as site:
        results = {f"plain/{d}": site.client("plain", d, timeout=2) for d in ("pasv", "port")}
        rules = site.net.run("fw", ["nft", "list", "ruleset"]).stdout
        return {"results": results, "events": site.events(), "rules": rules}


@pytest.mark.timeout(60)
def test_nftables_ruleset_filters_and_its_drop_is_named_by_line(tmp_path):
    """The example's nft ruleset, with its port-20 rule turned into a drop, loaded with `nft -f` in
    fw (its `flush ruleset` first): passive data passes through the ruleset's range; active data
    from port 20 is dropped by the kernel, and the drop observer names the file's line (read from
    the ruleset's log group, nft cannot queue here)."""
    from lab import TOPOLOGY_DIR

    examples = TOPOLOGY_DIR / "examples"
    ruleset = (examples / "nftables-filter.nft").read_text().replace(
        'tcp sport ftp-data accept comment "active data from port 20"', 'tcp sport ftp-data drop comment "no PORT"')
    line = next(n for n, text in enumerate(ruleset.splitlines(), 1) if '"no PORT"' in text)
    (tmp_path / "nftables-filter.nft").write_text(ruleset)
    (tmp_path / "net.yaml").write_text((examples / "nftables-filter.yaml").read_text())
    out = call_in_sandbox(__file__, "in_sandbox_nftables", str(tmp_path / "net.yaml"), timeout=55)
    assert ok(out["results"]["plain/pasv"]), out["results"]
    assert not out["results"]["plain/port"].get("ok"), out["results"]
    drops = kinds(out["events"], "drop", "fw")
    assert drops and {(e["src"], e["sport"], e["flags"]) for e in drops} == {("203.0.113.10", 20, "S")}, drops
    assert drops[0]["reason"] == f'dropped by nftables-filter.nft:{line}: iifname "fw-eth1" ip saddr $server ' \
                                 'tcp sport ftp-data drop comment "no PORT"'
    assert 'log prefix "ftlab-drop ' in out["rules"] and "group 30" in out["rules"]


@pytest.mark.timeout(90)
def test_kernel_helper_attached_with_an_nft_ct_helper():
    """alg kernel-nft: the kernel's FTP helper assigned by an nftables `ct helper` object rewrites
    and maps on both NATs of double-nat in plain text, as the iptables-attached helper does."""
    out = call_in_sandbox(__file__, "in_sandbox_matrix", "double-nat", "kernel-nft",
                          [["plain", d] for d in DATA_MODES], timeout=85)
    failed = {k: v for k, v in out["results"].items() if not ok(v)}
    assert not failed, (failed, kinds(out["events"], "drop"))
    opened = {e["device"] for e in kinds(out["events"], "mapping-open")}
    assert opened == {"nat-c", "nat-s"}, kinds(out["events"], "mapping-open")


# -- 1:1 static NAT --------------------------------------------------------------------------------

def in_sandbox_one_to_one() -> dict:
    from lab import TOPOLOGY_DIR
    from lab.topology.loader import load

    with Site(load(TOPOLOGY_DIR / "examples" / "one-to-one-nat.yaml")) as site:
        cells = [("plain", "pasv"), ("tls", "epsv"), ("tls", "port"), ("tls", "pasv")]
        results = {f"{s}/{d}": site.client(s, d, timeout=2) for s, d in cells}
        # the active data connection as nat-s translated it (reply direction: to the public address)
        seen = site.net.run("nat-s", ["conntrack", "-L", "-p", "tcp", "--sport", "20"], check=False).stdout
        return {"results": results, "events": site.events(), "addresses": site.net.run(
            "nat-s", ["ip", "-br", "addr", "show", "dev", "nat-s-eth0"]).stdout, "seen": seen}


@pytest.mark.timeout(60)
def test_one_to_one_nat_publishes_every_port_of_the_servers_own_address():
    """one-to-one-nat: the client dials the server's public address 203.0.113.20, which nat-s
    holds on its outside interface. With TLS, EPSV passes (every port of that address reaches the
    server: a port forward of 21 and 990 alone would drop it) and PORT passes (the server leaves as
    203.0.113.20); PASV fails at the internet (the 227 inside TLS names 10.1.1.10). In plain text
    the ALG rewrites the 227 to the server's own public address and installs no mapping."""
    out = call_in_sandbox(__file__, "in_sandbox_one_to_one", timeout=55)
    res = out["results"]
    assert "203.0.113.20/24" in out["addresses"] and "203.0.113.30/24" in out["addresses"]
    for cell in ("plain/pasv", "tls/epsv", "tls/port"):
        assert ok(res[cell]), (cell, res[cell], kinds(out["events"], "drop"))
    assert not res["tls/pasv"].get("ok")
    assert {(e["device"], e["dst"]) for e in kinds(out["events"], "drop")} == {("internet", "10.1.1.10")}
    (rw,) = kinds(out["events"], "rewrite", "nat-s")
    assert rw["after"].startswith("227 Entering Passive Mode (203,0,113,20,") and rw["one_to_one"]
    assert not kinds(out["events"], "mapping-open")
    # active data left as the server's public address: the reply goes to 203.0.113.20 port 20
    assert "src=198.51.100.10 dst=203.0.113.20" in out["seen"] and "dport=20 " in out["seen"], out["seen"]


# -- idle timeouts -------------------------------------------------------------------------------------

IDLE_TIMEOUT = 2
TRANSFER_SECONDS = 5


def in_sandbox_control_timeout(keepalive: bool) -> dict:
    import json
    import sys
    import time

    from lab.topology.loader import load

    topo = load("dynamic-filter-nat")
    topo.nodes["fw"].firewall.idle_timeout = IDLE_TIMEOUT
    keep = {"FTPKEEPALIVE": "1"} if keepalive else {}
    with Site(topo, statements=keep) as site:
        shaped = site.net.shape("server", FILE_SIZE * 8 // TRANSFER_SECONDS)
        ftpdata = site.tmp / "client.ftpdata"
        ftpdata.write_text("".join(f"{k} {v}\n" for k, v in {**keep, "INACTTIME": 4}.items()))
        timeout = site.net.run("fw", ["sysctl", "-n", "net.netfilter.nf_conntrack_tcp_timeout_established"]).stdout
        t0 = time.monotonic()
        done = site.net.run("client", [site.ftlab, "client", f"ftp://{USER}@{topo.ftp.server_address}/f.bin",
                                       "--data", "pasv", "--ftpdata", str(ftpdata), "--password", PASSWORD,
                                       "--json", "get", "-o", str(site.tmp / "got.bin")], check=False, timeout=40)
        took = time.monotonic() - t0
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        return {"result": json.loads(lines[-1]) if lines else {"stderr": done.stderr[-800:]}, "took": took,
                "events": site.events(), "shaped": shaped, "timeout": timeout.strip(), "python": sys.version}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("keepalive", [False, True], ids=["idle", "keepalive"])
def test_control_connection_idle_timeout_and_keepalive(keepalive):
    """dynamic-filter-nat with fw's idle timeout at 2 s and the server's link shaped (HTB) so that a
    plain PASV download takes about 5 s: the control connection is silent meanwhile, the kernel
    forgets it, and fw drops the server's 226 naming the expired control connection. With
    FTPKEEPALIVE 1 on both ends the keepalive probes keep it alive and the transfer completes."""
    out = call_in_sandbox(__file__, "in_sandbox_control_timeout", keepalive, timeout=55)
    result, events = out["result"], out["events"]
    assert out["timeout"] == str(IDLE_TIMEOUT) and out["shaped"] == ["server-eth0", "fw-eth1"]
    assert out["took"] > TRANSFER_SECONDS - 1, out            # the shaping held the transfer back
    expired = [e for e in kinds(events, "drop", "fw") if "expired" in e["reason"]]
    if keepalive:
        assert result.get("outcome") == "ok" and result.get("bytes") == FILE_SIZE, result
        assert result.get("sha256") == SHA256 and not expired
    else:
        assert result.get("outcome") != "ok", result
        assert result.get("stage") == "transfer", result
        assert expired and expired[0]["sport"] == 21 and expired[0]["src"] == "10.1.1.10", expired
        assert expired[0]["reason"].startswith("control connection 198.51.100.10:") and \
            "-> 203.0.113.1:21 expired: idle longer than the idle timeout (2 s)" in expired[0]["reason"]
