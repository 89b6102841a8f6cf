"""`kill -9` of `ftlab matrix` in the middle of a run leaves nothing behind (issue 6, lab faults).

A matrix runs several sandboxes at once (lab.matrix: one per network, each `unshare` + a
cellrun worker + Mininet nodes, devices, servers and clients). The whole process group of the
runner is killed with SIGKILL while both networks are up and cells are running; then, within a
bounded wait, none of its processes is left (looked up by pid + start time, by network
namespace, by the sandbox marker in their environment and by the out dir in their command
line), the root namespace's links, named netns, iptables and nft rules and sysctls are as they
were, `ftlab clean` only has dead runs' state files to remove (no sandbox left to stop), and the
next run works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_lifecycle import FTLAB, descendants, netns_of, root_state

from lab.net import processes_in
from lab.sandbox import ENV_MARKER, STATE_DIR, start_time

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


def test_kill_9_of_a_running_matrix_leaves_nothing(tmp_path):
    before = full_root_state()
    ours = os.readlink("/proc/self/ns/net")
    out = tmp_path / "matrix"
    proc = subprocess.Popen(FTLAB + ["matrix", "--topologies", "client-nat", "server-nat", "--out", str(out),
                                     "--quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    # Follow the run's process tree until it is in the middle: both sandboxes up, cells done.
    born: dict[int, int | None] = {}
    inodes: set[str] = set()
    states: dict[Path, dict] = {}
    deadline = time.monotonic() + MIDDLE_TIMEOUT
    try:
        while True:
            pids = descendants(proc.pid)
            born.update({p: start_time(p) for p in pids if p not in born})
            inodes |= netns_of(pids) - {ours}
            for f in our_state_files(proc.pid):
                states.setdefault(f, json.loads(f.read_text()))
            if len(states) >= 2 and cells_done(out) >= MIDDLE_CELLS:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the matrix did not reach its middle (exit {proc.poll()}, {len(states)} sandboxes, "
                            f"{cells_done(out)} cells): {proc.stderr.read1(4000).decode(errors='replace')}")
            time.sleep(0.1)
        assert len(inodes) >= 6, f"expected two sandboxes and their nodes' namespaces, saw {inodes}"
        assert all(Path(s["tmpdir"]).is_dir() for s in states.values()), "a running sandbox has its TMPDIR"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = time.monotonic()

    markers = tuple(f"{ENV_MARKER}={f.stem}" for f in states)
    sandbox_pids = {s["pid"] for s in states.values()}

    def left() -> dict[str, object]:
        return {k: v for k, v in {
            "processes of the run (pid + start time)": [p for p, t in born.items() if t and start_time(p) == t],
            "processes in the run's network namespaces": processes_in(inodes),
            "processes marked with or naming the run": marked_or_naming(markers, out),
        }.items() if v}

    while left() and time.monotonic() - killed_at < GONE_TIMEOUT:
        time.sleep(0.1)
    gone_s = time.monotonic() - killed_at
    assert not left(), f"{gone_s:.1f} s after kill -9: {left()}"
    print(f"{len(born)} processes in {len(inodes)} namespaces of {len(states)} sandboxes gone {gone_s:.2f} s "
          f"after kill -9 (at {cells_done(out)} cells)")

    # The runner could not remove its sandboxes' state files and TMPDIRs: clean does, and has
    # no sandbox to stop (the kernel already reaped every one).
    cleaned = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not [line for line in cleaned.stdout.splitlines() if line.startswith("stopped sandbox")
                and int(line.split()[3].rstrip(":")) in sandbox_pids], cleaned.stdout
    assert not our_state_files(proc.pid), "ftlab clean must remove the killed run's state files"
    assert not [s["tmpdir"] for s in states.values() if Path(s["tmpdir"]).exists()], \
        "ftlab clean must remove the killed run's TMPDIRs"
    again = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
    assert again.returncode == 0
    assert not [line for line in again.stdout.splitlines() if any(f"pid {p}:" in line for p in sandbox_pids)], \
        again.stdout

    assert full_root_state() == before

    run = subprocess.run(FTLAB + ["run", "lan/plain/pasv", "--out", str(tmp_path / "after")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "SHA-256 verified" in run.stdout, run.stdout[-2000:]
