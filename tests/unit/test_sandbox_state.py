"""Run-state bookkeeping of lab.network.sandbox, without starting a sandbox (no root, no namespaces)."""

from __future__ import annotations

import json
import os

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
