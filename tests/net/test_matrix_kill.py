"""`kill -9` of `ftlab matrix` in the middle of a run leaves nothing behind (issue 6, lab faults).

A matrix runs several sandboxes at once (lab.matrix.runner: one per network, each `unshare` + a
cellrun worker + Mininet nodes, devices, servers and clients). The whole process group of the
runner is killed with SIGKILL while both networks are up and cells are running; then, within a
bounded wait, none of its processes is left (looked up by pid + start time, by network
namespace, by the sandbox marker in their environment and by the out dir in their command
line), the root namespace's links, named netns, iptables and nft rules and sysctls are as they
were, `ftlab clean` only has dead runs' state files to remove (no sandbox left to stop), and the
next run works. SIGTERM to the runner alone stops its sandboxes before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_lifecycle import FTLAB, descendants, netns_of, root_state

from lab.network.net import processes_in
from lab.network.sandbox import ENV_MARKER, STATE_DIR, start_time

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

MIDDLE_CELLS = 3          # cells reported before the kill: both networks are up and running cells
MIDDLE_TIMEOUT = 40.0     # bring-up of two networks takes ~4 s here
GONE_TIMEOUT = 20.0


def full_root_state() -> dict:
    state = root_state()
    state["nft"] = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                                  check=True).stdout
    return state


def our_state_files(owner: int) -> list[Path]:
    """The run-state files of the sandboxes this runner started (other runs may be going on)."""
    found = []
    for f in STATE_DIR.glob("run-*.json"):
        try:
            if json.loads(f.read_text())["owner"] == owner:
                found.append(f)
        except (OSError, ValueError, KeyError):
            pass
    return found


def cells_done(out: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in out.glob("work/*/cells.jsonl"))


def marked_or_naming(markers: tuple[str, ...], out: Path) -> dict[int, str]:
    """Processes whose environment carries one of our sandboxes' markers, or whose command line
    names our out dir: a process of our run even if the tree sampling never saw it."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if start_time(int(entry.name)) is None:
            continue    # a zombie: dead already
        if str(out) in cmdline or any(e.decode(errors="replace") in markers for e in environ):
            found[int(entry.name)] = cmdline
    return found


class Run:
    """An `ftlab matrix` on two pictures in its own process group, followed until its middle."""

    def __init__(self, out: Path):
        self.out = out
        self.proc = subprocess.Popen(FTLAB + ["matrix", "--topologies", "client-nat", "server-nat", "--out",
                                              str(out), "--quiet"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.born: dict[int, int | None] = {}     # every process of the run seen: pid -> start time
        self.inodes: set[str] = set()             # its network namespaces
        self.states: dict[Path, dict] = {}        # its sandboxes' run-state files

    def follow_to_the_middle(self) -> None:
        """Sample the process tree until both sandboxes are up and cells are done."""
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + MIDDLE_TIMEOUT
        while True:
            pids = descendants(self.proc.pid)
            self.born.update({p: start_time(p) for p in pids if p not in self.born})
            self.inodes |= netns_of(pids) - {ours}
            for f in our_state_files(self.proc.pid):
                self.states.setdefault(f, json.loads(f.read_text()))
            if len(self.states) >= 2 and cells_done(self.out) >= MIDDLE_CELLS:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the matrix did not reach its middle (exit {self.proc.poll()}, {len(self.states)} "
                            f"sandboxes, {cells_done(self.out)} cells): "
                            f"{self.proc.stderr.read1(4000).decode(errors='replace')}")
            time.sleep(0.1)
        assert len(self.inodes) >= 6, f"expected two sandboxes and their nodes' namespaces, saw {self.inodes}"
        assert all(Path(s["tmpdir"]).is_dir() for s in self.states.values()), "a running sandbox has its TMPDIR"

    def left(self) -> dict[str, object]:
        markers = tuple(f"{ENV_MARKER}={f.stem}" for f in self.states)
        return {k: v for k, v in {
            "processes of the run (pid + start time)": [p for p, t in self.born.items()
                                                        if t and start_time(p) == t],
            "processes in the run's network namespaces": processes_in(self.inodes),
            "processes marked with or naming the run": marked_or_naming(markers, self.out),
        }.items() if v}

    def wait_gone(self, since: float) -> float:
        while self.left() and time.monotonic() - since < GONE_TIMEOUT:
            time.sleep(0.1)
        gone_s = time.monotonic() - since
        assert not self.left(), f"{gone_s:.1f} s after the signal: {self.left()}"
        print(f"{len(self.born)} processes in {len(self.inodes)} namespaces of {len(self.states)} sandboxes "
              f"gone {gone_s:.2f} s after the signal (at {cells_done(self.out)} cells)")
        return gone_s

    def tmpdirs_left(self) -> list[str]:
        return [s["tmpdir"] for s in self.states.values() if Path(s["tmpdir"]).exists()]


def next_run_works(tmp_path: Path) -> None:
    run = subprocess.run(FTLAB + ["run", "lan/plain/pasv", "--out", str(tmp_path / "after")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "SHA-256 verified" in run.stdout, run.stdout[-2000:]


def test_kill_9_of_a_running_matrix_leaves_nothing(tmp_path):
    before = full_root_state()
    run = Run(tmp_path / "matrix")
    try:
        run.follow_to_the_middle()
    finally:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
    run.wait_gone(time.monotonic())

    # The runner could not remove its sandboxes' state files and TMPDIRs: clean does, and has
    # no sandbox to stop (the kernel already reaped every one).
    sandbox_pids = {s["pid"] for s in run.states.values()}
    cleaned = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not [line for line in cleaned.stdout.splitlines() if line.startswith("stopped sandbox")
                and int(line.split()[3].rstrip(":")) in sandbox_pids], cleaned.stdout
    assert not our_state_files(run.proc.pid), "ftlab clean must remove the killed run's state files"
    assert not run.tmpdirs_left(), "ftlab clean must remove the killed run's TMPDIRs"
    again = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert again.returncode == 0
    assert not [line for line in again.stdout.splitlines() if any(f"pid {p}:" in line for p in sandbox_pids)], \
        again.stdout

    assert full_root_state() == before
    next_run_works(tmp_path)


def test_sigterm_to_the_matrix_runner_alone_stops_its_sandboxes(tmp_path):
    """`kill PID` of the runner only (its sandboxes get no signal): it stops them before it exits,
    so nothing runs on and nothing is left for `ftlab clean`."""
    before = full_root_state()
    run = Run(tmp_path / "matrix")
    try:
        run.follow_to_the_middle()
        run.proc.terminate()
        assert run.proc.wait(20) == 128 + signal.SIGTERM, run.proc.stderr.read1(4000).decode(errors="replace")
    finally:
        with contextlib.suppress(ProcessLookupError):   # the whole group may be gone already
            os.killpg(run.proc.pid, signal.SIGKILL)   # if it did not stop, do not leave it running
        run.proc.wait()
    exited = time.monotonic()
    assert not our_state_files(run.proc.pid), "the runner must remove its sandboxes' state files"
    assert not run.tmpdirs_left(), "the runner must remove its sandboxes' TMPDIRs"
    assert run.wait_gone(exited) < 2.0, "the sandboxes must be gone when the runner exits"
    assert full_root_state() == before
    next_run_works(tmp_path)
