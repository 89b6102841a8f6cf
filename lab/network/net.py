"""Build a topology as a running network: Mininet hosts and veth links, programmed by the lab.

Mininet is used as a namespace-and-veth library only: `controller=None`, no switches, every
node (routers too) a Mininet Host, one veth per model Link with the model's interface names.
Everything after that (addresses, routes, forwarding, NAT, static filters, the device
programs) is done by this module with checked commands: a command that programs the network
and fails raises LabError with the command and its stderr. Mininet's own `cmd()` hides
errors, so it is used for nothing but building.

    with LabNet(topology, workdir=path) as net:
        net.run("client", ["ping", "-c1", "198.51.100.10"])

A LabNet must be built inside a sandbox (lab.network.sandbox): the kernel then reaps everything if
the run dies, and the real root namespace is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from firewall.nftables import nft_errors
from lab.devkit.device import Restore
from lab.devkit.observed import RuleSet
from lab.devkit.types import ALG_MODES
from lab.errors import LabError
from lab.network.internet import internet_rules
from lab.network.rpfilter import SYSCTLS as RPFILTER_SYSCTLS
from lab.network.rpfilter import rpfilter_rules
from lab.topology import devices
from lab.topology.ipsave import describe_restore_error as restore_error
from lab.topology.model import Node, Topology

READY_TIMEOUT = 5.0
#: `--pcap all`: the throughput phase is captured too, but of each packet only its first
#: THROUGHPUT_SNAPLEN bytes - Ethernet, IPv6 and TCP headers with options (14 + 40 + 60) and the
#: first bytes of payload, enough to tell a TLS record - and at most THROUGHPUT_PACKETS packets per
#: interface (tcpdump -s, -c): a phase moves gigabytes, its capture a few megabytes an interface.
THROUGHPUT_SNAPLEN = 128
THROUGHPUT_PACKETS = 200_000
#: pcap record header (16) + the snapshot: the most a throughput capture takes per interface
THROUGHPUT_CAP_BYTES = 24 + THROUGHPUT_PACKETS * (16 + THROUGHPUT_SNAPLEN)
PCAP_SCOPES = ("cells", "all")       # what --pcap captures: the verdict cells, or the throughput phase too


def pcap_scope(pcap: bool | str | None) -> str | None:
    """--pcap's value as a scope: None (no capture), "cells" (True, the default) or "all"."""
    if not pcap:
        return None
    if pcap is True or pcap == "cells":
        return "cells"
    if pcap == "all":
        return "all"
    raise LabError(f"pcap must be one of {', '.join(PCAP_SCOPES)}, not {pcap!r}")


def pcap_cap_line(pcap: bool | str | None, throughput: str = "quick") -> str | None:
    """The one line a run prints (and its report keeps) about what its captures hold and their cap."""
    scope = pcap_scope(pcap)
    if scope is None:
        return None
    cells = "pcap: the verdict cells, whole packets, one file per device interface"
    if throughput == "off":
        return cells + " (no throughput phase)"
    if scope == "cells":
        return cells + "; the throughput phase is not captured (--pcap all captures it, headers only)"
    return (cells + f"; the throughput phase in its own files (*.throughput.pcap), each packet's first "
            f"{THROUGHPUT_SNAPLEN} bytes, at most {THROUGHPUT_PACKETS} packets "
            f"({THROUGHPUT_CAP_BYTES / 1e6:.0f} MB) per interface")
SHAPED_QUEUE = 20         # packets queued behind a shaped link (LabNet.shape)
SHAPED_SNDBUF = 65536     # bytes: the largest TCP send buffer of a host on a shaped link
STOP_GRACE = 2.0

#: Namespace sysctls every node gets; routers forward. IPv6 is off unless the picture has IPv6
#: addresses; then it is on without autoconfiguration: no router advertisements are accepted or
#: solicited (addresses and routes are the picture's alone) and addresses skip duplicate detection.
HOST_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
ROUTER_SYSCTLS = {**HOST_SYSCTLS, "net.ipv4.ip_forward": "1", **RPFILTER_SYSCTLS}
IPV6_SYSCTLS = {f"net.ipv6.conf.{which}.{key}": value for which in ("all", "default")
                for key, value in (("disable_ipv6", "0"), ("accept_ra", "0"), ("autoconf", "0"),
                                   ("router_solicitations", "0"), ("accept_dad", "0"))}
IPV6_ROUTER_SYSCTLS = {**IPV6_SYSCTLS, "net.ipv6.conf.all.forwarding": "1", "net.ipv6.conf.default.forwarding": "1"}
#: A veth hands a packet to the receive backlog of whichever CPU sent it. A TCP sender sends
#: from its own CPU and, on ACKs, from the softirq of the other one, so one flow's packets
#: overtake each other: thousands of spurious fast retransmits per 256 MiB on client-nat, and
#: throughput that swings 4x between runs. RPS on every lab interface keeps each flow on one
#: CPU, in order, as on a cable. The mask is inherited by the veths created after it is set
#: (kernel 6.2 and later); older kernels (Debian 12's 6.1) get each interface's rps_cpus written
#: through a sysfs mounted in the node's own netns, in a private mount namespace.
RPS_DEFAULT_MASK = "net.core.rps_default_mask"


def rps_sysctl_available() -> bool:
    return Path("/proc/sys", *RPS_DEFAULT_MASK.split(".")).exists()


def own_sysfs_argv(script: str) -> list[str]:
    """A shell script run with /sys showing the interfaces of the namespace it runs in (sysfs
    shows those of the namespace that mounts it); the private mount dies with the command."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"umount -l /sys 2>/dev/null; mount -t sysfs sysfs /sys || exit 1; {script}"]


def rps_sysfs_argv(mask: str) -> list[str]:
    """A command that sets RPS on every interface of the namespace it runs in."""
    return own_sysfs_argv(f'for f in /sys/class/net/*/queues/rx-*/rps_cpus; do echo {mask} > "$f" || exit 1; done')


def cpu_mask(cpus: int) -> str:
    """The kernel's cpumask text for CPUs 0..cpus-1: 32-bit hex groups, comma-separated."""
    value = f"{(1 << cpus) - 1:x}"
    groups = []
    while value:
        groups.insert(0, value[-8:])
        value = value[:-8]
    return ",".join(groups)


@dataclass
class Program:
    """A long-running process started by the lab inside a node (device program, capture)."""

    node: str
    name: str
    proc: subprocess.Popen
    stdout: Path
    stderr: Path
    argv: list[str]
    ready: Callable[[str, str], bool]     # ready(stdout text, stderr text)


class LabNet:
    """A topology brought up as namespaces, links, kernel rules and device programs."""

    def __init__(self, topology: Topology, alg: str | None = None, workdir: Path | None = None,
                 pcap: bool | str = False, devices: bool = True):
        if alg is not None and alg not in ALG_MODES:
            raise LabError(f"alg must be one of {', '.join(ALG_MODES)}, not {alg!r}")
        self.topology = topology
        self.alg = alg
        # Without a workdir the run's files are throw-away: made at start, removed at teardown.
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.pcap = pcap_scope(pcap)     # None, "cells" or "all" (True: "cells")
        self.devices = devices
        self.mn = None
        self.hosts: dict = {}
        self.programs: list[Program] = []
        self._popened: list[subprocess.Popen] = []
        self.timings: dict[str, float] = {}
        self._netns: dict[str, str] = {}    # node -> its netns ("net:[inode]")

    @property
    def ipv6(self) -> bool:
        """Does the picture carry IPv6 (then the nodes have it on)?"""
        return any(i.address6 is not None for n in self.topology.nodes.values() for i in n.interfaces)

    @property
    def events_path(self) -> Path:
        """The JSON-lines file every device appends its events to."""
        return self.workdir / "events.jsonl"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LabNet:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from lab.network.probe import probe
        from lab.network.sandbox import in_sandbox

        if not in_sandbox():
            raise LabError("LabNet must run inside a sandbox (lab.network.sandbox.ensure_sandbox or call_in_sandbox)")
        t0 = time.monotonic()
        probe()
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix="ftlab-run-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.events_path.touch()
        try:
            self._build()
            for node in self.topology.nodes.values():
                self._configure(node)
            if self.pcap:
                self._start_captures()
            for node in self.topology.nodes.values():
                self._program(node)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.timings["up"] = time.monotonic() - t0

    def stop(self) -> None:
        t0 = time.monotonic()
        _terminate_all([p.proc for p in self.programs] + self._popened)
        self.programs.clear()
        self._popened.clear()
        if self.mn is not None:
            # Killing a node's shell frees its netns and the veths in it; deleting links one
            # by one through Mininet's shells would only be slower.
            for host in self.mn.hosts:
                host.terminate()
            self.mn = None
            # Whatever else still holds a node's netns (something started from the CLI) is ours:
            # found by namespace inode, never by name.
            for pid in processes_in(set(self._netns.values())):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._netns.clear()
        self.hosts.clear()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.timings["down"] = time.monotonic() - t0

    # -- running things in nodes -----------------------------------------------------------
    def pid(self, node: str) -> int:
        try:
            return self.hosts[node].pid
        except KeyError:
            raise LabError(f"no node {node!r} in topology {self.topology.name}") from None

    def argv_in(self, node: str, argv: list[str]) -> list[str]:
        """argv prefixed to run inside the node's network and mount namespaces."""
        return ["mnexec", "-a", str(self.pid(node)), *argv]

    def run(self, node: str, argv: list[str], timeout: float = 30, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside a node; with check, a failure raises LabError with its stderr."""
        try:
            done = subprocess.run(self.argv_in(node, argv), capture_output=True, text=True,
                                  timeout=timeout, input=input)
        except subprocess.TimeoutExpired:
            raise LabError(f"{node}: `{' '.join(argv)}` timed out after {timeout} s") from None
        if check and done.returncode != 0:
            message = (done.stderr or done.stdout).strip()
            raise LabError(f"{node}: `{' '.join(argv)}` failed (exit {done.returncode}): {message}")
        return done

    def popen(self, node: str, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        """Start argv inside a node; the lab kills it at teardown if it is still running."""
        proc = subprocess.Popen(self.argv_in(node, argv), **popen_kwargs)
        self._popened.append(proc)
        return proc

    def shape(self, node: str, rate_bits: int) -> list[str]:
        """Make the link of host `node` (its first interface) as slow as `rate_bits` bits a second,
        both ways, with HTB on both of its ends (netem is not available here; HTB is, and the
        start-up probe checks it). Returns the interfaces shaped.

        The queue behind the shaper is short (SHAPED_QUEUE packets), as on a slow WAN link, and the
        host's TCP send buffers are capped at SHAPED_SNDBUF: otherwise a sender's socket buffer
        grows until the whole file sits in it, and a server writes its 226 long before the data
        has crossed the link - its control connection would never idle while the transfer runs."""
        self._sysctl(self.topology.nodes[node], {"net.ipv4.tcp_wmem": f"4096 16384 {SHAPED_SNDBUF}"})
        intf = self.topology.nodes[node].interfaces[0]
        peer = next(i for i in self.topology.nodes[intf.peer].interfaces if i.peer == node)
        for where, name in ((node, intf.name), (intf.peer, peer.name)):
            self.run(where, ["tc", "qdisc", "replace", "dev", name, "root", "handle", "1:", "htb", "default", "1"])
            self.run(where, ["tc", "class", "replace", "dev", name, "parent", "1:", "classid", "1:1", "htb",
                             "rate", f"{int(rate_bits)}bit", "burst", "16k"])
            self.run(where, ["tc", "qdisc", "replace", "dev", name, "parent", "1:1", "handle", "10:", "pfifo",
                             "limit", str(SHAPED_QUEUE)])
        return [intf.name, peer.name]

    def address(self, node: str) -> IPv4Address:
        """The node's first address (lab.topology.model.Topology.address_of)."""
        return self.topology.address_of(node)

    # -- building --------------------------------------------------------------------------
    def _build(self) -> None:
        from mininet.link import Intf
        from mininet.net import Mininet

        class QuietIntf(Intf):
            """An interface Mininet does not configure: it would use unchecked ifconfig calls
            through the node's shell; this module sets links up and addresses itself."""

            def config(self, **_params):
                return {}

        # Mininet.init() would run fixLimits(), which raises host-wide limits (kernel.pty.max,
        # fs.file-max): those are not per-namespace, so not even the sandbox contains them.
        Mininet.inited = True
        t0 = time.monotonic()
        self.mn = Mininet(topo=None, controller=None, build=False, autoSetMacs=False,
                          waitConnected=False, intf=QuietIntf)
        try:
            for name, node in self.topology.nodes.items():
                self.hosts[name] = self.mn.addHost(name, ip=None)
                self._sysctl(node, self._node_sysctls(node, self.ipv6))     # before its links exist
            for link in self.topology.links:
                self.mn.addLink(link.a, link.b, intfName1=link.a_interface, intfName2=link.b_interface)
        except LabError:
            raise
        except Exception as exc:   # Mininet raises bare Exception (e.g. "Error creating interface pair")
            raise LabError(f"building {self.topology.name} with Mininet: {exc}") from exc
        self._netns = {name: os.readlink(f"/proc/{host.pid}/ns/net") for name, host in self.hosts.items()}
        self.timings["mininet"] = time.monotonic() - t0

    @staticmethod
    def _node_sysctls(node: Node, ipv6: bool = False) -> dict[str, str]:
        values = dict(ROUTER_SYSCTLS if node.kind == "router" else HOST_SYSCTLS)
        if ipv6:
            values.update(IPV6_ROUTER_SYSCTLS if node.kind == "router" else IPV6_SYSCTLS)
        if rps_sysctl_available():
            values[RPS_DEFAULT_MASK] = cpu_mask(os.cpu_count() or 1)
        return values

    def _configure(self, node: Node) -> None:
        """Addresses and routes, one checked `ip -batch` per node (and RPS on older kernels)."""
        if not rps_sysctl_available():
            self.run(node.name, rps_sysfs_argv(cpu_mask(os.cpu_count() or 1)))
        lines = ["link set lo up"]
        for intf in node.interfaces:
            lines.append(f"link set {intf.name} up")
            lines += [f"addr add {a} dev {intf.name}" + (" nodad" if a.version == 6 else "") for a in intf.addresses]
        for route in node.routes:
            lines.append(f"route add {route.destination} via {route.via}")
        self.run(node.name, ["ip", "-batch", "-"], input="\n".join(lines) + "\n")

    def _sysctl(self, node: Node, values: dict[str, str]) -> None:
        """Namespace sysctls of one node, in one checked call."""
        self.run(node.name, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def _program(self, node: Node) -> None:
        """The engine's own rules (the internet's), then each device on the node, in the registry's
        order: its kernel rules, sysctls and program (lab.topology.devices)."""
        own = rpfilter_rules(self.ipv6) if node.kind == "router" else None
        if node.name == self.topology.internet:
            own = own or RuleSet()
            own.extend(internet_rules(self.ipv6))
        setups = devices.setups(node, self.topology, self.events_path, alg_mode=self.alg,
                                programs=self.devices, drop_reasons=own.reasons if own else None)
        # iptables-restore replaces the tables it names: a user's ruleset goes in before any rule
        for _, setup in setups:
            if setup.restore is not None:
                self._restore(node, setup.restore)
        for argv in own.iptables if own else []:
            self.run(node.name, argv)
        for device, setup in setups:
            self._start_device(node, device.name, setup)

    def _restore(self, node: Node, restore: Restore) -> None:
        """A user's ruleset file (iptables-save, or nft): checked as written first, so an error
        names its line; then loaded with its drops observed (firewall.static.observe_saved_drops,
        firewall.nftables.observe_drops)."""
        path = restore.source
        done = self.run(node.name, [*restore.check, str(path)], check=False)
        if done.returncode != 0:
            raise LabError(f"{node.name}: {restore.suffix} ruleset {load_error(restore, path, done)}")
        loaded = self.workdir / f"{node.name}-{restore.suffix}-observed.rules"
        loaded.write_text(restore.text)
        done = self.run(node.name, [*restore.load, str(loaded)], check=False)
        if done.returncode != 0:
            raise LabError(f"{node.name}: {path} loads as written but not with its drops observed "
                           f"({loaded}): {load_error(restore, loaded, done)}")

    def _start_device(self, node: Node, name: str, setup) -> None:
        if setup.sysctls:
            self._sysctl(node, setup.sysctls)
        for argv in setup.iptables:
            self.run(node.name, argv)
        if setup.argv is None:
            return
        argv, config = with_config(setup.argv, self.workdir / f"{node.name}-{name}.json")
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(setup.config or {}, indent=2, default=str))
        self._start_program(node.name, name, argv, ready=lambda out, err: "READY" in out.splitlines(),
                            wait=False)

    def _start_captures(self, phase: str = "") -> None:
        """tcpdump on every interface: `<intf>.pcap` whole packets (the verdict cells), or for the
        throughput phase `<intf>.throughput.pcap`, capped (THROUGHPUT_SNAPLEN, THROUGHPUT_PACKETS)."""
        pcaps = self.workdir / "pcap"
        pcaps.mkdir(exist_ok=True)
        cap = ["-s", str(THROUGHPUT_SNAPLEN), "-c", str(THROUGHPUT_PACKETS)] if phase else []
        suffix = f".{phase}.pcap" if phase else ".pcap"
        for node in self.topology.nodes.values():
            for intf in node.interfaces:
                # --immediate-mode: without it packets sit in the capture ring for up to a second.
                argv = ["tcpdump", "-n", "-U", "--immediate-mode", *cap, "-i", intf.name,
                        "-w", str(pcaps / f"{intf.name}{suffix}")]
                self._start_program(node.name, f"tcpdump-{intf.name}{'-' + phase if phase else ''}", argv,
                                    ready=lambda out, err: "listening on" in err)

    def captures(self) -> list[Program]:
        return [p for p in self.programs if p.name.startswith("tcpdump-")]

    def throughput_captures(self) -> str | None:
        """The throughput phase begins: the verdict cells' captures end (their files complete), and
        under --pcap all capped ones of the phase start (`<intf>.throughput.pcap`). Returns what is
        captured now, as one line (None: nothing)."""
        if self.pcap is None:
            return None
        ending = self.captures()
        _terminate_all([p.proc for p in ending])
        self.programs = [p for p in self.programs if p not in ending]
        if self.pcap != "all":
            return "the throughput phase is not captured"
        self._start_captures("throughput")
        return (f"the throughput phase captured: {THROUGHPUT_SNAPLEN} bytes a packet, "
                f"at most {THROUGHPUT_PACKETS} packets per interface")

    def _start_program(self, node: str, name: str, argv: list[str], ready, wait: bool = True) -> Program:
        """Start a program in a node; it is ready when ready(stdout, stderr) says so.

        wait=False leaves the waiting to _wait_ready(), so device programs start in parallel.
        """
        out, err = self.workdir / f"{node}-{name}.out", self.workdir / f"{node}-{name}.err"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(out, "w") as fout, open(err, "w") as ferr:
            # Own session: a Ctrl-C at `ftlab shell`'s prompt must not kill the devices.
            proc = subprocess.Popen(self.argv_in(node, argv), stdout=fout, stderr=ferr, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        program = Program(node, name, proc, out, err, argv, ready)
        self.programs.append(program)
        if wait:
            self._wait_ready([program])
        return program

    def _wait_ready(self, programs: list[Program] | None = None) -> None:
        """Wait (at most READY_TIMEOUT) until every program is ready; any that dies or hangs fails."""
        pending = list(self.programs if programs is None else programs)
        deadline = time.monotonic() + READY_TIMEOUT
        while pending:
            for p in list(pending):
                if p.ready(p.stdout.read_text(), p.stderr.read_text()):
                    pending.remove(p)
                elif p.proc.poll() is not None:
                    raise LabError(f"{p.node}: {p.name} exited (code {p.proc.returncode}) before it was ready: "
                                   f"{p.stderr.read_text().strip()[-2000:]}")
            if pending and time.monotonic() > deadline:
                p = pending[0]
                raise LabError(f"{p.node}: {p.name} not ready after {READY_TIMEOUT} s: `{' '.join(p.argv)}`")
            if pending:
                time.sleep(0.02)


def with_config(argv: list[str], default: Path) -> tuple[list[str], Path]:
    """The device's argv and the file to write its config to: the one after --config if the
    device chose it, else `default` (appended as --config)."""
    if "--config" in argv[:-1]:
        return list(argv), Path(argv[argv.index("--config") + 1])
    return [*argv, "--config", str(default)], default


def load_error(restore: Restore, path: Path, done: subprocess.CompletedProcess) -> str:
    """The loader's complaint about `path` as "FILE:LINE: ...", whichever tool loaded it."""
    output = done.stderr or done.stdout
    if restore.suffix != "nft":
        return restore_error(path, output)
    found = nft_errors(output, path)
    return "; ".join(f"{path}:{line}: does not load: {message}" if line else f"{path} does not load: {message}"
                     for line, message in found[:5]) or f"{path} does not load (exit {done.returncode})"


def processes_in(netns: set[str]) -> list[int]:
    """Pids of the processes (visible here) whose network namespace is one of `netns`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "net") in netns:
                    found.append(int(entry.name))
    return found


def _terminate_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process, give them STOP_GRACE together, then SIGKILL the rest."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
