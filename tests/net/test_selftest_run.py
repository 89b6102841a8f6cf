"""`ftlab selftest` in CI: a bounded set of generated designs (seed 7, 20 designs, 4 cells each plus
an IPv6 cell on dual-stack designs), predicted and run for real. A regression test: the run completes
with no lab error, and the accuracy is at least what was measured when this was written (pinned
below); the accuracy table is printed and left in the run's folder (selftest.txt)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

SEED, DESIGNS, CELLS = 7, 20, 4
# measured on the 2-core machine (2026-12-08; 164 s beside another selftest run, 101 s alone): 89 cells, outcome 85/88,
# stage 84/88, device 85/88, all three 84/88 (one cell a lab error under load, not counted). Pinned as
# those counts over 89 cells, so that the same run with that cell a difference instead still passes.
# The 4 differences are one design (gen-7-4: an nft ruleset without `ct state established accept`
# in front of the server, whose SYN-ACKs its policy drops; the model predicts the control connection
# through): shrunk, a one-rule nftables filter between client and server.
PINNED = {"outcome": 85 / 89, "stage": 84 / 89, "device": 85 / 89, "agrees": 84 / 89}
MIN_CELLS = 89


@pytest.mark.network
@pytest.mark.timeout(480)
def test_selftest_bounded_set(tmp_path):
    out = tmp_path / "selftest"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lab.cli", "selftest", "--designs", str(DESIGNS), "--seed",
                           str(SEED), "--cells", str(CELLS), "--out", str(out), "--quiet",
                           "--shrink-max", "1", "--shrink-budget", "60"],
                          capture_output=True, text=True, timeout=470)
    took = time.monotonic() - started
    print(done.stdout)
    print(f"selftest CI subset: {took:.0f} s")
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "selftest.json").read_text())
    # One known intermittent lab fault under load (a client that ends without a result when its
    # SYN-ACK is dropped: gen-7-4/implicit/port once, "fail at connect by r2" when run alone) is
    # said, not failed on; two are a lab that is broken.
    assert len(summary["errors"]) <= 1, summary["errors"]
    if summary["errors"]:
        print("lab error (tolerated once):", summary["errors"])
    assert summary["designs"] == DESIGNS and summary["cells"] >= MIN_CELLS
    for key, pinned in PINNED.items():
        assert summary["accuracy"][key] >= round(pinned, 4) - 1e-4, (key, summary["accuracy"], "\n".join(summary["table"]))
    assert (out / "selftest.txt").read_text().startswith("device kind/mode")
    for d in summary["differences"]:
        if "minimal" in d:                  # a shrunk difference is a design that loads, naming its cell
            from lab.topology import loader
            loader.load(d["minimal"])
            assert d["minimal_cell"].startswith("minimal-")
