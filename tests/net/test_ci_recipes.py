"""The shipped CI recipes (recipes/ci/) run as written: their own shard and merge commands, for N = 3,
give one report whose every cell has the outcome of one unsharded run of the same matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes" / "ci"
#: A small matrix: three networks, so each of the three shards brings one up.
SMALL = "--topologies lan client-nat server-nat --security plain tls --data pasv port --size 64KiB --throughput off"


def _commands(doc: dict) -> list[str]:
    """Every shell line of a recipe: GitHub `run:` steps and GitLab `script:` lines."""
    lines = []
    for job in doc.get("jobs", doc).values():
        if not isinstance(job, dict):
            continue
        lines += [s["run"] for s in job.get("steps", []) if "run" in s]
        lines += job.get("script", [])
    return lines


def _recipe_commands() -> tuple[str, str]:
    found = []
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        lines = _commands(yaml.safe_load((RECIPES / name).read_text()))
        shard = [c for c in lines if "ftlab matrix" in c]
        merge = [c for c in lines if "ftlab report merge" in c]
        assert len(shard) == 1 and len(merge) == 1, (name, lines)
        found.append((shard[0], merge[0]))
    assert found[0] == found[1], "the two recipes must run the same commands"
    return found[0]


def test_github_matrix_and_gitlab_parallel_agree_on_shard_count():
    gh = yaml.safe_load((RECIPES / "github-actions.yml").read_text())
    gl = yaml.safe_load((RECIPES / "gitlab-ci.yml").read_text())
    shards = gh["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(gh["env"]["SHARDS"]) + 1))
    assert gl["ftlab-shard"]["parallel"] == len(shards)


def _outcomes(report: Path) -> dict[str, tuple]:
    doc = json.loads((report / "results.json").read_text())
    return {c["id"]: (c["outcome"], c["stage"], c["matches"]) for c in doc["scenarios"]}


@pytest.mark.timeout(400)
def test_three_shards_merged_equal_one_unsharded_run(tmp_path):
    shard_cmd, merge_cmd = _recipe_commands()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FTLAB_MATRIX_ARGS": SMALL, "SHARDS": "3"}
    for k in (1, 2, 3):
        done = subprocess.run(["bash", "-c", shard_cmd], cwd=tmp_path, env={**env, "SHARD": str(k)},
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    shards = [_outcomes(tmp_path / "reports" / f"shard-{k}") for k in (1, 2, 3)]
    assert all(shards), "every shard ran some cells"
    assert sum(len(s) for s in shards) == len({i for s in shards for i in s}), "shards are disjoint"

    done = subprocess.run(["bash", "-c", merge_cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = _outcomes(tmp_path / "reports" / "merged")

    whole = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", *SMALL.split(),
                            "--out", str(tmp_path / "whole")], capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert merged == _outcomes(tmp_path / "whole")
    assert len(merged) == 3 * 2 * 2
