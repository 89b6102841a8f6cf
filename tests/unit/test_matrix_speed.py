"""The matrix's throughput phase, its pure parts (lab.matrix.speed): classes, representatives,
median and spread, interleaving, what a passing cell shows, how two runs agree."""

from __future__ import annotations

import pytest

from lab.errors import LabError
from lab.matrix import scenario, speed

SCEN = scenario.load("default")


def cell(cid: str) -> tuple[scenario.Cell, scenario.CellSpec]:
    c = scenario.parse_cell_id(cid)
    return c, SCEN.spec(c)


@pytest.mark.parametrize(("cid", "cls"), [
    ("lan/plain/pasv", "passive/clear"), ("lan/plain/epsv", "passive/clear"),
    ("lan/tls/port", "active/protected"), ("lan/tls-ccc/epsv", "passive/protected"),
    ("lan/implicit-zos/eprt", "active/protected")])
def test_data_class_is_who_connects_and_whether_the_data_is_tls(cid, cls):
    assert speed.data_class(*cell(cid)) == cls


def test_clear_data_under_a_tls_session_is_clear():
    c, spec = cell("lan/tls/pasv")
    spec = scenario.CellSpec(c, "builtin", "builtin", None, {"SECURE_DATACONN": "CLEAR"}, {}, ())
    assert speed.data_class(c, spec) == "passive/clear"


def test_each_class_is_measured_with_its_first_passing_builtin_cell():
    entries = [{"id": "lan/plain/pasv", "outcome": "fail"}, {"id": "lan/plain/epsv", "outcome": "pass"},
               {"id": "lan/plain/port", "outcome": "pass"}, {"id": "lan/tls/epsv", "outcome": "pass"},
               {"id": "lan/tls/pasv", "outcome": "pass"}]
    reps = speed.representatives(entries, SCEN)
    assert {k: v[0].id for k, v in reps.items()} == {"passive/clear": "lan/plain/epsv",
                                                      "passive/protected": "lan/tls/epsv",
                                                      "active/clear": "lan/plain/port"}
    assert list(reps) == ["passive/clear", "passive/protected", "active/clear"]     # CLASSES order


def test_rounds_interleave_every_runner_and_a_failed_run_counts_zero():
    calls: list[str] = []

    def runner(name: str, fail: bool = False):
        def run() -> float:
            calls.append(name)
            if fail:
                raise LabError(f"{name} broke")
            return 100.0
        return run

    got = speed.measure(2, {"iperf3": runner("iperf3"), "a": runner("a"), "b": runner("b", fail=True)})
    assert calls == ["iperf3", "a", "b"] * 2
    assert got["runs"] == {"iperf3": [100.0, 100.0], "a": [100.0, 100.0], "b": [0.0, 0.0]}
    assert got["errors"] == {"b": "b broke"}


def test_median_and_spread_leave_failed_runs_out():
    assert speed.stats([300.0, 0.0, 100.0, 200.0]) == {"mbps": 200.0, "min": 100.0, "max": 300.0,
                                                       "runs": [300.0, 0.0, 100.0, 200.0]}
    assert speed.stats([0.0])["mbps"] is None


def test_the_ratio_is_taken_round_by_round():
    # each round's ratio (side by side), not the ratio of the medians
    got = speed.ratios([500.0, 900.0, 600.0], [1000.0, 1000.0, 600.0])
    assert got == {"ratio": 0.9, "ratio_min": 0.5, "ratio_max": 1.0}
    assert speed.ratios([0.0], [1000.0])["ratio"] is None


def test_a_passing_cell_shows_its_class_figure_spread_and_method():
    reps = {"passive/clear": cell("lan/plain/pasv"), "active/protected": cell("lan/tls/port")}
    measured = {"runs": {"iperf3": [1000.0, 800.0, 1200.0], "passive/clear": [900.0, 700.0, 1000.0],
                         "active/protected": [500.0, 0.0, 600.0]}, "errors": {"active/protected": "x"}}
    doc = speed.summary("quick", measured, reps, 0.0)
    info = {"throughput": doc}
    entries = [{"id": "lan/plain/epsv", "outcome": "pass"}, {"id": "lan/tls/eprt", "outcome": "pass"},
               {"id": "lan/tls/pasv", "outcome": "fail"}]
    speed.attach_all(entries, info, SCEN)
    assert info["baseline_mbps"] == 1000.0
    epsv, eprt, failed = entries
    assert epsv["throughput_mbps"] == 900.0 and epsv["baseline_mbps"] == 1000.0 and epsv["ratio"] == 0.875
    assert epsv["throughput"]["class"] == "passive/clear" and epsv["throughput"]["measured_with"] == "lan/plain/pasv"
    assert (epsv["throughput"]["min"], epsv["throughput"]["max"]) == (700.0, 1000.0)
    assert "iperf3 -R" in epsv["throughput"]["method"] and "interleaved" in epsv["throughput"]["method"]
    assert eprt["throughput"]["mbps"] == 550.0            # the failed round is left out
    assert "throughput" not in failed


def test_two_runs_agree_by_the_median_over_cells():
    def run(*mbps: float) -> dict:
        return {"scenarios": [{"id": f"c{i}", "throughput": {"mbps": m, "ratio": m / 1000}}
                              for i, m in enumerate(mbps)]}
    got = speed.agreement(run(100, 200, 300), run(110, 200, 200))
    assert got["cells"] == 3 and got["mbps_median_deviation"] == pytest.approx(0.091, abs=0.001)


def test_a_group_waits_long_enough_for_every_class_to_time_out():
    assert speed.budget("off") == 0
    assert speed.budget("quick") < speed.budget("full")
