"""A dead endpoint or device program is a lab error (exit 3), never a network verdict (issue 10, item 12).

Reproduced as the issue found it: `ftlab matrix &` in a script starts the runner with SIGINT
ignored; a Ctrl-C (SIGINT to the process group) then kills only the programs that catch it - the
in-sandbox `ftlab server` - and the runner carries on. The cells that would have met the dead
server are lab errors that name it, the slides' claim about them is not decided (never "FAILS"),
and the next server (another set of statements) runs its cells as usual. A device program
killed in the middle of a run does the same to every cell after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.report import results

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]

FTLAB = [sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB", "--throughput", "off"]


def cells_done(out: Path) -> int:
    return sum(len(f.read_text().splitlines()) for f in out.glob("work/*/cells.jsonl"))


def wait_for_cells(proc: subprocess.Popen, out: Path, n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (done := cells_done(out)) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the matrix did not get to {n} cells (exit {proc.poll()}): {proc.communicate()[0][-3000:]}")
        time.sleep(0.02)
    return done


def pid_of(out: Path, *words: str) -> int:
    """The process of this run (its command line names our out dir) whose command line has `words`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(str(out) in arg for arg in cmdline) and all(w in cmdline for w in words) \
                and not cmdline[0].endswith("mnexec"):
            return int(entry.name)
    raise AssertionError(f"no process of {out} with {words}")


def ordered_cells(out: Path) -> list[dict]:
    """The cells in the order the worker ran them (results.json keeps the order asked for)."""
    by_id = {s["id"]: s for s in results.load(out)["scenarios"]}
    return [by_id[line["id"]] for f in sorted(out.glob("work/*/cells.jsonl"))
            for line in map(json.loads, f.read_text().splitlines())]


def interrupted_matrix(out: Path, args: list[str], cells: int, act, ignore_sigint: bool = False) -> tuple[str, int]:
    """`ftlab matrix ARGS` in its own process group; act(runner) once `cells` cells are reported, then
    wait for its end. Returns (its output, the cells reported before the act)."""
    runner = subprocess.Popen([*FTLAB, *args, "--out", str(out)], text=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint
                              else None)
    try:
        before = wait_for_cells(runner, out, cells)
        act(runner)
        output, _ = runner.communicate(timeout=90)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 3, output
    return output, before


def test_sigint_to_the_group_of_a_runner_that_ignores_it(tmp_path):
    out = tmp_path / "lan"
    output, before = interrupted_matrix(out, ["--topologies", "lan"], 2,
                                        lambda runner: os.killpg(runner.pid, signal.SIGINT), ignore_sigint=True)
    cells = ordered_cells(out)
    assert len(cells) == 20
    assert not [s["id"] for s in cells if s["outcome"] == "fail"], "a dead server gave a network verdict"
    # plain, tls, tls-ccc and implicit share the first server: the ones after the signal are lab errors.
    first_server = [s for s in cells if s["security"] != "implicit-zos"]
    after = first_server[before + 1:]          # the cell running at the signal may have finished
    assert len(after) >= 10
    for s in after:
        assert s["outcome"] == "error" and not s["matches"], s
        assert "the FTP server (builtin) in server exited with code 0" in s["reason"], s["reason"]
        assert s["reason"].startswith(("lab: before the cell: ", "lab: during the cell: "))
    # implicit-zos has its own server, started after the signal: its cells run as usual.
    assert [s["outcome"] for s in cells if s["security"] == "implicit-zos"] == ["pass"] * 4
    doc = results.load(out)
    assert any("the FTP server (builtin) in server exited" in e for e in doc["lab_errors"]), doc["lab_errors"]
    assert "UNKNOWN Internal network without firewalls or NAT" in output and "FAILS" not in output, output
    assert "0 lab errors" not in output


def test_a_device_program_killed_mid_run(tmp_path):
    out = tmp_path / "dyn"
    output, before = interrupted_matrix(out, ["--topologies", "dynamic-filter", "--security", "plain", "tls-ccc"], 1,
                                        lambda runner: os.kill(pid_of(out, "-m", "firewall.dynamic"), signal.SIGKILL))
    assert re.search(r"LAB +dynamic-filter: the device program \S+ in fw exited with code -9", output), output
    cells = ordered_cells(out)
    assert len(cells) == 8
    assert not [s["id"] for s in cells if s["outcome"] == "fail"], "a dead inspector gave a network verdict"
    after = cells[before + 1:]
    assert len(after) >= 5
    for s in after:
        assert s["outcome"] == "error", s
        assert re.search(r"the device program \S+ in fw exited with code -9", s["reason"]), s["reason"]
