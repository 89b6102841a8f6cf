"""A run leaves nothing behind, however it ends; runs are isolated; errors are one clear line.

The root namespace is compared before and after (links, named netns, iptables rules, the
sysctls Mininet would raise), and every process and network namespace of the killed run is
looked up again afterwards by pid + start time and by netns inode.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.network.net import processes_in
from lab.network.sandbox import STATE_DIR, call_in_sandbox, start_time

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]

FTLAB = [sys.executable, "-m", "lab.cli"]
# What a lab run sets in its namespaces, and what Mininet's fixLimits() would raise host-wide.
SYSCTLS = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/disable_ipv6",
           "net/netfilter/nf_conntrack_tcp_be_liberal", "fs/file-max", "kernel/pty/max",
           "net/core/rmem_max", "net/core/wmem_max", "net/ipv4/tcp_rmem", "net/ipv4/tcp_wmem",
           "net/core/netdev_max_backlog", "net/ipv4/neigh/default/gc_thresh1",
           "net/ipv4/neigh/default/gc_thresh2", "net/ipv4/neigh/default/gc_thresh3", "net/ipv4/route/max_size"]


def root_state() -> dict:
    def out(argv):
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    rules = [line for line in out(["iptables-save"]).splitlines() if not line.startswith("#")]
    links = sorted(line.split(":")[1].strip() for line in out(["ip", "-o", "link"]).splitlines())
    return {"links": links, "netns": out(["ip", "netns", "list"]), "iptables": rules,
            "sysctls": {k: Path("/proc/sys", k).read_text() for k in SYSCTLS}}


def descendants(pid: int) -> set[int]:
    """pid and every process below it (through /proc/PID/task/*/children)."""
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def netns_of(pids: set[int]) -> set[str]:
    inodes = set()
    for p in pids:
        try:
            inodes.add(os.readlink(f"/proc/{p}/ns/net"))
        except OSError:
            pass
    return inodes


def start(argv: list[str], wait_for: str, timeout: float = 20) -> tuple[subprocess.Popen, str]:
    """Start an ftlab command in its own process group; return once stderr shows wait_for."""
    proc = subprocess.Popen(FTLAB + argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    while wait_for.encode() not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"ftlab {' '.join(argv)} did not reach {wait_for!r}: {seen.decode()}")
        try:
            seen += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.05)
    return proc, seen.decode()


def state_files_of(pids: set[int]) -> list[Path]:
    return [f for f in STATE_DIR.glob("run-*.json") if json.loads(f.read_text())["pid"] in pids]


def kill_group_and_check(argv: list[str], wait_for: str) -> None:
    before = root_state()
    proc, _ = start(argv, wait_for)
    pids = descendants(proc.pid)
    born = {p: start_time(p) for p in pids}
    inodes = netns_of(pids) - {os.readlink("/proc/self/ns/net")}
    assert len(inodes) >= 3, f"expected the sandbox and its nodes' namespaces, saw {inodes}"
    [state] = state_files_of(pids)
    tmpdir = Path(json.loads(state.read_text())["tmpdir"])
    assert tmpdir.is_dir(), "a running sandbox has its own TMPDIR"

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while (processes_in(inodes) or any(start_time(p) == t for p, t in born.items())) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_in(inodes), "a process of the killed run is still in its namespaces"
    assert not [p for p, t in born.items() if start_time(p) == t], "a process of the killed run survived"

    cleaned = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not state_files_of(pids), "ftlab clean must remove the dead run's state file"
    assert not tmpdir.exists(), "ftlab clean must remove the dead run's TMPDIR"
    assert root_state() == before
    assert next_run_works()


def next_run_works() -> bool:
    [res] = call_in_sandbox(Path(__file__).with_name("test_topologies.py"), "in_sandbox_probe", "lan",
                            [{"from": "client", "to_node": "server", "listen": "server", "ports": [21]}])
    return res["21"]["ok"]


def test_kill_9_of_shell_leaves_nothing():
    kill_group_and_check(["shell", "client-nat", "--no-devices"], "Type 'exit'")


def test_kill_9_of_baseline_leaves_nothing():
    kill_group_and_check(["baseline", "static-filter-nat", "--seconds", "10"], "measuring")


def test_clean_stops_a_sandbox_whose_ftlab_was_killed():
    """Only the ftlab parent dies: the sandbox lives on, named by its state file, until clean."""
    before = root_state()
    proc, _ = start(["shell", "server-nat", "--no-devices"], "Type 'exit'")
    pids = descendants(proc.pid)
    inodes = netns_of(pids) - {os.readlink("/proc/self/ns/net")}
    [state] = state_files_of(pids)
    os.kill(proc.pid, signal.SIGKILL)   # the parent only
    proc.wait()
    time.sleep(0.2)
    assert processes_in(inodes), "the orphaned sandbox keeps running until cleaned"
    cleaned = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert cleaned.returncode == 0 and "stopped sandbox" in cleaned.stdout, cleaned.stdout + cleaned.stderr
    deadline = time.monotonic() + 5
    while processes_in(inodes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_in(inodes)
    assert not state.exists()
    assert root_state() == before


def test_exit_from_shell_tears_down_and_concurrent_runs_are_isolated():
    before = root_state()
    proc, _ = start(["shell", "client-nat", "--no-devices"], "Type 'exit'")
    # Same picture, same node and interface names, at the same time: its own sandbox.
    assert next_run_works()
    shell_b, _ = start(["shell", "client-nat", "--no-devices"], "Type 'exit'")
    for p in (proc, shell_b):
        p.stdin.write(b"exit\n")
        p.stdin.flush()
    for p in (proc, shell_b):
        assert p.wait(20) == 0, p.stderr.read().decode()
    assert root_state() == before


def test_ctrl_c_tears_down_cleanly():
    before = root_state()
    proc, _ = start(["baseline", "client-nat", "--seconds", "10"], "measuring")
    pids = descendants(proc.pid)
    inodes = netns_of(pids) - {os.readlink("/proc/self/ns/net")}
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(20)
    err = proc.stderr.read().decode()
    assert rc == 130, err
    assert "interrupted" in err or "tearing down" in err, err
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in processes_in(inodes)}
    assert not left, f"left after Ctrl-C: {left}; ftlab said: {err}"
    assert not state_files_of(pids)
    assert root_state() == before


def test_not_root_is_one_clear_line():
    # Not root, as a user namespace makes it (euid 65534, no capabilities on the host) - but the
    # files stay readable as they are to root, so this also holds for a clone in /root (mode 0700),
    # where a real other user could not even import the lab.
    done = subprocess.run(["unshare", "--user", *FTLAB, "shell", "lan"], capture_output=True, text=True,
                          timeout=30, cwd="/")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "needs root" in done.stderr, done.stderr


def in_sandbox_probe_without(tool: str) -> str:
    """probe() with `tool` missing from PATH: the message must name it."""
    import shutil
    import tempfile

    from lab.errors import MissingFeature
    from lab.network.probe import TOOLS, probe

    bin_dir = Path(tempfile.mkdtemp())
    for name in TOOLS:
        if name != tool:
            (bin_dir / name).symlink_to(shutil.which(name))
    os.environ["PATH"] = str(bin_dir)
    try:
        probe(force=True)
    except MissingFeature as exc:
        return str(exc)
    finally:
        shutil.rmtree(bin_dir)
    return "no error"


def test_missing_tool_is_named():
    message = call_in_sandbox(__file__, "in_sandbox_probe_without", "iperf3")
    assert message.startswith("missing tool: iperf3")


def test_clean_never_signals_a_recycled_pid(tmp_path, monkeypatch):
    """A state file whose pid now belongs to another process (start time differs) is only removed."""
    import lab.network.sandbox as sandbox

    monkeypatch.setattr(sandbox, "STATE_DIR", tmp_path)
    other = subprocess.Popen(["sleep", "30"])
    try:
        leftover = tmp_path / "run-dead"
        leftover.mkdir()
        state = sandbox.RunState(tmp_path / "run-1.json", other.pid, start_time(other.pid) + 1,
                                 999999, 1, ["ftlab", "shell", "lan"], time.time(),
                                 str(tmp_path / "not-a-sandbox-dir"))
        state.write()
        assert sandbox.clean() == [f"removed state of finished sandbox pid {other.pid}: ftlab shell lan"]
        assert other.poll() is None, "clean must not signal a pid that is not the sandbox any more"
        assert not state.path.exists() and leftover.exists()
    finally:
        other.kill()
        other.wait()


def in_sandbox_probe_with_missing_feature() -> str:
    from lab.devkit.features import KernelFeature
    from lab.errors import MissingFeature
    from lab.network import probe as probe_module

    # A target this kernel does not have stands in for a missing module.
    frobnicate = KernelFeature("frobnicate target", "CONFIG_FROBNICATE",
                               (("iptables", "-N", "ftlab-probe"),
                                ("iptables", "-A", "ftlab-probe", "-j", "FROBNICATE")))
    devices_features = probe_module.features
    probe_module.features = lambda: [*devices_features(), frobnicate]
    try:
        probe_module.probe(force=True)
    except MissingFeature as exc:
        return str(exc)
    return "no error"


def test_missing_kernel_feature_is_named():
    message = call_in_sandbox(__file__, "in_sandbox_probe_with_missing_feature")
    assert message.startswith("missing kernel feature: frobnicate target (CONFIG_FROBNICATE)"), message


def test_bad_topology_name_is_an_input_error():
    done = subprocess.run(FTLAB + ["shell", "no-such-picture"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no-such-picture" in done.stderr, done.stderr


def test_sigterm_to_ftlab_stops_its_sandbox():
    before = root_state()
    proc, _ = start(["shell", "lan", "--no-devices"], "Type 'exit'")
    pids = descendants(proc.pid)
    inodes = netns_of(pids) - {os.readlink("/proc/self/ns/net")}
    proc.terminate()    # the ftlab process only, as `kill PID` would
    assert proc.wait(10) == 128 + signal.SIGTERM
    assert not processes_in(inodes)
    assert not state_files_of(pids)
    assert root_state() == before
