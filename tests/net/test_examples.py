"""The shipped example designs (topologies/examples/), each run for real: every cell as the path walk
predicts it - outcome, stage and the node that decides (tests/unit/test_examples_predict.py pins
those predictions). The z/OS design is also checked against its engineer's expectations file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import TOPOLOGY_DIR
from lab.report import results

EXAMPLES = TOPOLOGY_DIR / "examples"
#: the examples of the path walk (the nftables and 1:1 NAT examples have their own tests)
WALKED = ("home-and-cgn", "iptables-user-chain", "two-filters", "kernel-helper-dynamic", "zos-server")

pytestmark = [pytest.mark.network]


def run_example(name: str, out, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--throughput", "off",
                           "--size", "256KiB", "--jobs", "1", "--topologies", str(EXAMPLES / f"{name}.yaml"),
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=120)
    assert (out / "results.json").exists(), done.stdout + done.stderr[-3000:]
    return done, results.load(out)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", WALKED)
def test_example_runs_as_the_walk_predicts(tmp_path, name):
    extra = ("--expect", str(EXAMPLES / f"{name}.expect.yaml")) if (EXAMPLES / f"{name}.expect.yaml").exists() else ()
    done, doc = run_example(name, tmp_path / name, *extra)
    cells = doc["scenarios"]
    assert len(cells) == 20 and not doc.get("lab_errors"), done.stdout + done.stderr
    wrong = [f"{s['id']}: predicted {s['expected']} {s['expected_stage']} {s['expected_device']}, observed "
             f"{s['outcome']} {s['stage']} {s.get('device')}: {s['reason']}" for s in cells if not s["matches"]]
    assert not wrong, "\n".join(wrong)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(s["expected"] in ("pass", "fail") for s in cells)
    if extra:
        assert all(s["expect_met"] is True for s in cells), [s["id"] for s in cells if not s["expect_met"]]
        assert "20 of 20 cells do what" in done.stdout
    # the recommendation in results.json is lab.matrix.recommend's, from this run's outcomes
    rec = doc["topologies"][cells[0]["topology"]]["recommended"]
    assert rec["method"] is None or any(s["outcome"] == "pass" and f"{s['security']}/{s['data']}" == rec["method"]
                                        for s in cells)
