"""`ftlab report merge` of CI shards: a lost or doubled artifact is refused, never a green verdict.

Each shard's results.json says which shard K/N it was (`shard`); merge checks that shards 1..N are
there, each once, unless allow_partial, which marks the merged report partial (results.json,
index.html, junit.xml).
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from report_fixtures import S, make_doc

from lab.errors import InputError
from lab.report import html, junit, merge, results

CELLS = S.default_cells(topologies=["lan", "client-nat", "server-nat"])


def shards(tmp_path, n: int = 3) -> list:
    dirs = []
    for k in range(1, n + 1):
        doc = make_doc(merge.shard(CELLS, k, n), run_id=f"shard{k}")
        doc["shard"] = f"{k}/{n}"
        d = tmp_path / f"s{k}"
        results.write(doc, d)
        dirs.append(d)
    return dirs


def test_every_shard_once_merges(tmp_path):
    merged = merge.merge_dirs(shards(tmp_path))
    assert len(merged["scenarios"]) == len(CELLS)
    assert not merged.get("partial")
    assert results.validate(merged) == []


def test_a_missing_shard_is_refused_by_name(tmp_path):
    s1, s2, _ = shards(tmp_path)
    with pytest.raises(InputError, match=r"shard 3/3 is missing"):
        merge.merge_dirs([s1, s2])


def test_a_shard_given_twice_is_refused_by_name(tmp_path):
    s1, _, _ = shards(tmp_path)
    with pytest.raises(InputError, match=r"shard 1/3 is given twice") as exc:
        merge.merge_dirs([s1, s1])
    assert "missing" in str(exc.value)          # and 2/3, 3/3 are missing too


def test_shards_of_different_splits_are_refused(tmp_path):
    s1, _, _ = shards(tmp_path)
    other = make_doc(merge.shard(CELLS, 2, 2), run_id="other")
    other["shard"] = "2/2"
    results.write(other, tmp_path / "o2")
    with pytest.raises(InputError, match=r"1/3.*2/2|2/2.*1/3"):
        merge.merge_dirs([s1, tmp_path / "o2"])


def test_allow_partial_marks_the_report_partial(tmp_path):
    s1, s2, _ = shards(tmp_path)
    merged = merge.merge_dirs([s1, s2, s2], allow_partial=True)
    assert merged["partial"]["missing"] == ["3/3"]
    assert merged["partial"]["duplicated"] == ["2/3"]
    assert results.validate(merged) == []
    page = html.render(merged)
    assert "partial" in page.lower() and "3/3" in page
    suites = junit.build(merged)
    text = ET.tostring(suites, encoding="unicode")
    assert "3/3" in text and "skipped" in text
    assert suites.find(".//property[@name='partial']") is not None


def test_runs_that_are_not_shards_merge_as_before(tmp_path):
    a = make_doc(S.default_cells(topologies=["lan"]), run_id="a")
    b = make_doc(S.default_cells(topologies=["client-nat"]), run_id="b")
    results.write(a, tmp_path / "a")
    results.write(b, tmp_path / "b")
    merged = merge.merge_dirs([tmp_path / "a", tmp_path / "b"])
    assert len(merged["scenarios"]) == 40 and not merged.get("partial")


def test_merge_command_exits_2_naming_the_lost_shard(tmp_path):
    s1, s2, _ = shards(tmp_path)
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", "merge", str(s1), str(s2),
                           "--out", str(tmp_path / "all")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout
    assert "shard 3/3 is missing" in done.stderr
    twice = subprocess.run([sys.executable, "-m", "lab.cli", "report", "merge", str(s1), str(s1),
                            "--out", str(tmp_path / "all2")], capture_output=True, text=True, timeout=120)
    assert twice.returncode == 2 and "shard 1/3 is given twice" in twice.stderr


def test_merge_command_allow_partial_exits_by_the_cells_and_says_partial(tmp_path):
    s1, s2, _ = shards(tmp_path)
    out = tmp_path / "all"
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", "merge", str(s1), str(s2),
                           "--allow-partial", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr          # every merged cell as predicted
    assert "partial: " in done.stdout and "3/3" in done.stdout
    doc = results.load(out)
    assert doc["partial"]["missing"] == ["3/3"]
    assert "partial" in (out / "index.html").read_text().lower()
