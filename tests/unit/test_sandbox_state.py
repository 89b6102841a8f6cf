"""Run-state bookkeeping of lab.network.sandbox, without starting a sandbox (no root, no namespaces)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.errors import LabError
from lab.network import sandbox


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(sandbox, "require_root", lambda *a: None)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    sandbox.tempfile.tempdir = None          # re-read TMPDIR
    yield tmp_path
    sandbox.tempfile.tempdir = None


def test_the_state_file_names_the_tmpdir_before_the_tmpdir_exists(state_dir, monkeypatch):
    """A kill -9 at any moment leaves nothing that no state file names (`ftlab clean` finds all)."""
    seen = {}
    real_mkdir = os.mkdir

    def mkdir(path, *args):
        if not os.path.basename(path).startswith(sandbox.TMP_PREFIX):
            return real_mkdir(path, *args)
        [state] = (state_dir / "state").glob("run-*.json")
        seen["named"] = json.loads(state.read_text())["tmpdir"] == str(path)
        seen["pid"] = json.loads(state.read_text())["pid"]
        return real_mkdir(path, *args)

    def popen(*args, **kwargs):
        raise OSError("no fork today")

    monkeypatch.setattr(sandbox.os, "mkdir", mkdir)
    monkeypatch.setattr(sandbox.subprocess, "Popen", popen)
    with pytest.raises(OSError, match="no fork today"):
        sandbox.run_sandboxed(["true"])
    assert seen == {"named": True, "pid": 0}
    assert not list((state_dir / "state").glob("*")) and not list((state_dir / "tmp").glob("*"))


def test_missing_unshare_is_a_lab_error_and_leaves_nothing(state_dir, monkeypatch):
    monkeypatch.setattr(sandbox, "UNSHARE", ["/nonexistent/unshare", *sandbox.UNSHARE[1:]])
    with pytest.raises(LabError, match="unshare"):
        sandbox.run_sandboxed(["true"])
    assert not list((state_dir / "state").glob("*")) and not list((state_dir / "tmp").glob("*"))


def test_clean_removes_an_unstarted_run_of_a_dead_owner_and_its_tmpdir(state_dir):
    tmp = state_dir / "tmp" / f"{sandbox.TMP_PREFIX}run-1-2"
    tmp.mkdir()
    dead = sandbox.RunState(state_dir / "state" / "run-1-2.json", 0, 0, 999999999, 1, ["x"], 0.0, str(tmp))
    dead.write()
    live = sandbox.RunState(state_dir / "state" / "run-3-4.json", 0, 0, os.getpid(),
                            sandbox.start_time(os.getpid()), ["y"], 0.0, "")
    live.write()
    done = sandbox.clean()
    assert len(done) == 1 and "finished sandbox pid 0: x" in done[0]
    assert not tmp.exists() and not dead.path.exists()
    assert live.path.exists()                 # its owner (this process) is alive: it is starting


@pytest.fixture
def sleeper():
    """A live process that is not a sandbox (as a decoy), killed afterwards."""
    proc = subprocess.Popen(["sleep", "30"])
    yield proc
    proc.kill()
    proc.wait()


def dead_owner_state(state_dir, name: str, pid: int, start: int, argv: list[str], tmpdir: str = "") -> sandbox.RunState:
    state = sandbox.RunState(state_dir / "state" / f"{name}.json", pid, start, 999999999, 1, argv, 0.0, tmpdir)
    state.write()
    return state


def test_clean_leaves_a_file_that_is_not_a_state_file_alone(state_dir):
    (state_dir / "state").mkdir()
    for name, text in (("run-notes.json", '{"hello": "world"}'), ("run-binary.json", "\x00\x01"),
                       ("run-list.json", "[1, 2, 3]"), ("run-typed.json", json.dumps(
                           {"pid": "1", "start": 0, "owner": 1, "owner_start": 1, "argv": [], "created": 0}))):
        (state_dir / "state" / name).write_text(text)
    done = sandbox.clean()
    assert len(done) == 4 and all("left alone: not a run-state file of ftlab" in d for d in done), done
    assert len(list((state_dir / "state").glob("run-*.json"))) == 4


def test_clean_never_signals_a_live_process_that_is_not_the_sandbox_it_names(state_dir, sleeper):
    """pid and start time match, but the process is no `unshare` of this argv: a forged or stale file."""
    decoy_dir = state_dir / "tmp" / f"{sandbox.TMP_PREFIX}precious"
    decoy_dir.mkdir()
    state = dead_owner_state(state_dir, "run-5-6", sleeper.pid, sandbox.start_time(sleeper.pid),
                             ["python3", "-m", "lab.cli", "shell", "lan"], str(decoy_dir))
    done = sandbox.clean()
    assert done == [f"{state.path}: left alone: pid {sleeper.pid} is not the sandbox it names "
                    "(python3 -m lab.cli shell lan)"]
    assert sleeper.poll() is None and state.path.exists() and decoy_dir.is_dir()


def test_clean_stops_a_process_that_is_the_sandbox_it_names(state_dir, sleeper, monkeypatch):
    """The same check says yes for the command line run_sandboxed() starts (here UNSHARE = sleep)."""
    monkeypatch.setattr(sandbox, "UNSHARE", ["sleep"])
    tmp = state_dir / "tmp" / f"{sandbox.TMP_PREFIX}run-7-8"
    tmp.mkdir()
    state = dead_owner_state(state_dir, "run-7-8", sleeper.pid, sandbox.start_time(sleeper.pid), ["30"], str(tmp))
    assert state.is_sandbox()
    done = sandbox.clean()
    assert done == [f"stopped sandbox pid {sleeper.pid}: 30"]
    assert sleeper.wait(5) == -9 and not state.path.exists() and not tmp.exists()


def test_clean_removes_only_the_tmpdir_named_after_the_state_file(state_dir):
    other = state_dir / "tmp" / f"{sandbox.TMP_PREFIX}run-somebody-else"
    other.mkdir()
    state = dead_owner_state(state_dir, "run-9-10", 0, 0, ["x"], str(other))
    assert sandbox.clean() == ["removed state of finished sandbox pid 0: x"]
    assert not state.path.exists() and other.is_dir()
