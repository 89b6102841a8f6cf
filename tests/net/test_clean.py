"""`ftlab clean` stops what a run-state file names, and nothing else: not a process that merely looks
like a lab process (named `unshare`, or `mininet:client` as Mininet's node shells are), not a
process a forged state file names, not a file in the state folder that it did not write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_lifecycle import FTLAB, descendants, netns_of, root_state, start, state_files_of

from lab.network.net import processes_in
from lab.network.sandbox import STATE_DIR, TMP_PREFIX, start_time

pytestmark = [pytest.mark.network, pytest.mark.timeout(90)]


def decoy_processes(tmp_path: Path) -> list[subprocess.Popen]:
    """Processes whose names a name-pattern cleaner (like `mn -c`) would take for the lab's."""
    fake_unshare = tmp_path / "unshare"      # comm "unshare", and the sandbox's very arguments
    fake_unshare.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake_unshare.chmod(0o755)
    return [
        subprocess.Popen([str(fake_unshare), "--net", "--pid", "--mount", "--fork", "--mount-proc",
                          "--kill-child", sys.executable, "-m", "lab.cli", "shell", "lan"], start_new_session=True),
        subprocess.Popen(["bash", "-c", "exec -a mininet:client sleep 60"], start_new_session=True),
    ]


def test_clean_stops_the_orphaned_sandbox_and_no_decoy(tmp_path):
    before = root_state()
    decoys = decoy_processes(tmp_path)
    precious = tmp_path / f"{TMP_PREFIX}precious"
    precious.mkdir()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    not_ours = STATE_DIR / f"run-decoy-{tag}.json"
    forged = STATE_DIR / f"run-forged-{tag}.json"
    proc = None
    try:
        time.sleep(0.2)
        born = {d.pid: start_time(d.pid) for d in decoys}
        assert all(born.values()), "the decoys are running"
        not_ours.write_text(json.dumps({"tool": "something else", "pid": decoys[0].pid}))
        # A well-formed state file naming the fake `unshare` with its true start time, its owner
        # dead, and a TMPDIR that is not the one a run would have made for this file.
        forged.write_text(json.dumps({"pid": decoys[0].pid, "start": born[decoys[0].pid], "owner": 999999999,
                                      "owner_start": 1, "argv": [sys.executable, "-m", "lab.cli", "shell", "lan"],
                                      "created": time.time(), "tmpdir": str(precious)}))

        # A real orphan: a sandbox whose ftlab was killed.
        proc, _ = start(["shell", "lan", "--no-devices"], "Type 'exit'")
        pids = descendants(proc.pid)
        inodes = netns_of(pids) - {os.readlink("/proc/self/ns/net")}
        [state] = state_files_of(pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        cleaned = subprocess.run(FTLAB + ["clean"], capture_output=True, text=True, timeout=30)
        assert cleaned.returncode == 0, cleaned.stderr
        said = cleaned.stdout
        assert any(line.startswith("stopped sandbox pid ") and line.endswith("shell lan --no-devices")
                   for line in said.splitlines()), said
        assert f"{not_ours}: left alone: not a run-state file of ftlab" in said, said
        assert f"{forged}: left alone: pid {decoys[0].pid} is not the sandbox it names" in said, said

        deadline = time.monotonic() + 5
        while processes_in(inodes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not processes_in(inodes) and not state.exists(), "the orphaned sandbox is gone"
        for d in decoys:
            assert d.poll() is None and start_time(d.pid) == born[d.pid], f"clean touched decoy pid {d.pid}"
        assert not_ours.exists() and forged.exists() and precious.is_dir(), "clean touched a file it did not write"
        assert root_state() == before
    finally:
        for d in decoys:
            d.kill()
            d.wait()
        if proc is not None and proc.poll() is None:
            proc.kill()
        not_ours.unlink(missing_ok=True)
        forged.unlink(missing_ok=True)
