"""Issue 13's example pictures, end to end: every cell as the lab's model predicts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import TOPOLOGY_DIR
from lab.report import results

EXAMPLES = TOPOLOGY_DIR / "examples"


@pytest.mark.network
@pytest.mark.timeout(240)
def test_nftables_and_one_to_one_examples_run_as_predicted(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB",
                           "--throughput", "off", "--topologies", str(EXAMPLES / "nftables-filter.yaml"),
                           str(EXAMPLES / "one-to-one-nat.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {s["id"]: s for s in results.load(out)["scenarios"]}
    assert len(by_id) == 40 and all(s["matches"] for s in by_id.values())
    # the nft ruleset's drop is named by its line
    cell = by_id["nftables-filter/implicit/port"]
    assert cell["outcome"] == "fail" and "dropped by nftables-filter.nft:21: " in cell["reason"], cell["reason"]
    # 1:1 NAT: every port of the server's own public address reaches it, so EPSV passes inside TLS
    assert by_id["one-to-one-nat/tls/epsv"]["outcome"] == "pass"
    assert by_id["one-to-one-nat/tls/pasv"]["outcome"] == "fail"
