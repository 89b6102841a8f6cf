"""Each run gets a report folder of its own, also when two start in the same second (before, both
wrote reports/<time>/ and one deleted the other's files)."""

from __future__ import annotations

from lab.matrix import cli


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    # reports/ of the lab's checkout (before) or of the current directory (issue 20): here either way
    monkeypatch.setattr(cli, "REPORT_DIR", tmp_path / "reports", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.results, "new_run_id", lambda ts=None: "20260101-000000")
    folders = [cli._out_dir(None) for _ in range(3)] + [cli._out_dir(None, "run-")]
    assert [f.name for f in folders] == ["20260101-000000", "20260101-000000-2", "20260101-000000-3",
                                         "run-20260101-000000"]
    assert all(f.is_dir() for f in folders)
    assert cli._out_dir(tmp_path / "mine") == tmp_path / "mine"      # --out is the user's choice
