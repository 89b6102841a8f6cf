"""The matrix's throughput phase, its pure parts (lab.matrix.speed): classes, representatives,
median and spread, interleaving, the ratio beside iperf3, the time budgets and what is said when
they cut, what a passing cell shows, how two runs agree."""

from __future__ import annotations

import pytest

from lab.errors import LabError
from lab.matrix import scenario, speed
from lab.network.baseline import MeasurementTimeout

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


def test_with_a_closing_iperf3_run_each_class_run_is_over_the_iperf3_runs_beside_it():
    # iperf3 before and after each class run: their geometric mean (a failed one is left out)
    got = speed.bracketed([400.0, 900.0, 500.0], [400.0, 1600.0, 0.0, 1000.0])
    assert got == pytest.approx((0.5, 0.5, 0.5625))     # 400/800, 900/1600, 500/1000
    assert speed.bracketed([0.0], [100.0, 100.0]) is None


def test_with_a_closing_run_the_ratio_is_median_over_median_and_the_range_is_bracketed():
    # a single iperf3 run (one connection) is noisy: 2000 here is one lucky run, not the path
    got = speed.ratios([600.0, 900.0, 700.0], [1000.0, 2000.0, 1000.0, 1000.0])
    assert got["ratio"] == 0.7                                   # 700 / 1000
    assert (got["ratio_min"], got["ratio_max"]) == (0.424, 0.7)  # 600/1414, 700/1000
    assert speed.ratios([0.0, 0.0], [1.0, 1.0, 1.0])["ratio"] is None


def test_quick_takes_many_short_rounds_within_its_budgets():
    quick, full = speed.MODES["quick"], speed.MODES["full"]
    assert quick.runs >= 7 and quick.ftp_seconds <= 0.3 and quick.iperf3_bytes
    # one network with four classes, every run on time: well inside its budget
    assert quick.runs * (4 * (quick.ftp_seconds + 0.1) + 0.4) < quick.network_budget
    assert quick.iperf3_limit(shaped=False) == "-n 192M" and quick.iperf3_limit(shaped=True) == "-t 1"
    assert full.iperf3_limit(shaped=False) == "-t 2"
    assert speed.run_budget("quick") < speed.run_budget("full") and speed.run_budget("off") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_that_times_out_is_not_run_again_and_is_said():
    clock = Clock()
    calls: list[str] = []

    def slow() -> float:
        calls.append("slow")
        clock.now += 9
        raise MeasurementTimeout("the client agent gave no throughput result within 8.25 s")

    def fast() -> float:
        calls.append("fast")
        clock.now += 0.3
        return 100.0

    got = speed.measure(3, {"iperf3": fast, "slow": slow}, closing="iperf3", clock=clock)
    assert calls == ["fast", "slow", "fast", "fast", "fast"]          # 3 rounds, then iperf3 closes
    assert got["runs"] == {"iperf3": [100.0] * 4, "slow": [0.0]}
    assert got["notes"] == {"slow": "cut short after 1 of 3 runs: run 1 timed out (the client agent gave "
                                    "no throughput result within 8.25 s)"}


def test_a_class_stops_when_its_runs_took_their_budget():
    clock = Clock()

    def slowish() -> float:
        clock.now += 5
        return 10.0

    got = speed.measure(4, {"a": slowish}, class_budget=12, clock=clock)
    assert got["runs"]["a"] == [10.0, 10.0, 10.0]
    assert got["notes"]["a"] == "cut short after 3 of 4 runs: its runs took their budget of 12 s"


def test_nothing_starts_after_the_deadline_and_every_unfinished_runner_is_said():
    clock = Clock()

    def run() -> float:
        clock.now += 1
        return 50.0

    got = speed.measure(3, {"iperf3": run, "a": run, "b": run}, closing="iperf3", deadline=4.5, clock=clock,
                        why_deadline="the run's throughput budget (300 s) was spent")
    assert got["runs"] == {"iperf3": [50.0, 50.0], "a": [50.0, 50.0], "b": [50.0]}
    assert got["notes"] == {"iperf3": "cut short after 2 of 4 runs: the run's throughput budget (300 s) was spent",
                            "a": "cut short after 2 of 3 runs: the run's throughput budget (300 s) was spent",
                            "b": "cut short after 1 of 3 runs: the run's throughput budget (300 s) was spent"}
    skipped = speed.measure(2, {"a": run}, deadline=0, clock=Clock())
    assert skipped["runs"]["a"] == [] and skipped["notes"]["a"].startswith("skipped: ")


def test_the_runs_deadline_travels_with_the_turn():
    assert speed.turn_deadline(speed.turn_text(1234.5)) == 1234.5
    assert speed.turn_deadline("") is None and speed.turn_deadline("garbage") is None   # an older runner
    assert speed.run_deadline("quick", now=100.0) == 100.0 + speed.MODES["quick"].run_budget


def test_a_shaped_link_gets_a_file_one_transfer_of_which_fits_a_run():
    assert speed.transfer_file_size(None, "quick") == speed.FILE_SIZE
    rate = 2 * 1024 * 1024 * 8 // 6                 # control-timeout: 2 MiB in about 6 s
    size = speed.transfer_file_size(rate, "quick")
    assert size * 8 / rate <= speed.MODES["quick"].ftp_seconds      # one transfer is within a run's time
    assert speed.transfer_file_size(8000, "quick") == 64 * 1024     # never less than 64 KiB
    assert speed.transfer_file_size(10**12, "quick") == speed.FILE_SIZE


def test_cuts_skips_a_shaped_link_and_a_missing_baseline_are_said_in_the_document_and_the_output():
    reps = {"passive/clear": cell("lan/plain/pasv")}
    measured = {"runs": {"iperf3": [], "passive/clear": [0.0]}, "errors": {"passive/clear": "x"},
                "notes": {"passive/clear": "cut short after 1 of 7 runs: run 1 timed out (x)"}}
    doc = speed.summary("quick", measured, reps, 0.0, file_size=128 * 1024, shaped=2_800_000,
                        baseline={"port": 5201, "how": "port 5201", "note": "no iperf3 baseline: refused"})
    assert "128 KiB file" in doc["method"] and "-t 1" in doc["method"]
    assert doc["notes"]["shaped"].startswith("the server's link is shaped to 2.8 Mbit/s")
    lines = speed.note_lines("my-net", doc)
    assert "throughput my-net: passive/clear: cut short after 1 of 7 runs: run 1 timed out (x)" in lines
    assert "throughput my-net: iperf3: no iperf3 baseline: refused" in lines
    gone = speed.skipped("quick", "the run's throughput budget (300 s) was spent", reps, 0.0)
    assert gone["classes"] == {} and gone["notes"]["passive/clear"].startswith("skipped: the run's")
    assert speed.note_lines("x", None) == []


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
    assert got["mbps_worst_deviation"] == 0.5 and got["ratio_worst_deviation"] == 0.5
    assert got["quiet"]["cells"] == 0            # no network recorded how busy the machine was


def test_agreement_on_quiet_networks_leaves_out_the_ones_measured_while_the_machine_was_busy():
    def run(busy: float, *mbps: float) -> dict:
        cells = [{"id": f"{net}/plain/pasv{i}", "topology": net, "throughput": {"mbps": m, "ratio": m / 1000}}
                 for net in ("quiet-net", "busy-net") for i, m in enumerate(mbps)]
        return {"scenarios": cells, "topologies": {
            "quiet-net": {"throughput": {"machine_busy": {"before": 0.02, "after": 0.1}}},
            "busy-net": {"throughput": {"machine_busy": {"before": busy, "after": None}}}}}
    got = speed.agreement(run(0.05, 100, 200), run(0.9, 110, 200))
    assert got["cells"] == 4 and got["quiet"]["cells"] == 2
    assert speed.quiet(run(0.05), "busy-net")
    assert not speed.quiet(run(0.9), "busy-net") and not speed.quiet({}, "lan")


def test_a_group_waits_long_enough_for_its_network_budget_and_one_run_past_it():
    assert speed.budget("off") == 0
    assert speed.budget("quick") < speed.budget("full")
    quick = speed.MODES["quick"]
    assert speed.budget("quick") >= quick.network_budget + quick.run_timeout + quick.ftp_seconds


def test_what_else_the_machine_does_is_read_from_proc_stat_and_said_when_it_is_much():
    first = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 ..."
    second = "cpu  250 0 150 900 0 0 0 0 0 0\ncpu0 ..."       # 200 busy of 300 jiffies
    assert speed.cpu_times(first) == (200, 1000)
    assert speed.busy_share(speed.cpu_times(first), speed.cpu_times(second)) == 0.67
    texts = iter([first, second])
    assert speed.machine_busy(0.1, read=lambda: next(texts), sleep=lambda s: None) == 0.67
    assert speed.machine_busy(0.1, read=lambda: "", sleep=lambda s: None) is None
    assert speed.busy_note(0.05, None) is None and speed.busy_note(None, None) is None
    assert "kept 67% of the machine's CPUs busy" in speed.busy_note(0.1, 0.67)
    reps = {"passive/clear": cell("lan/plain/pasv")}
    doc = speed.summary("quick", {"runs": {"iperf3": [1.0, 1.0], "passive/clear": [1.0]}, "errors": {},
                                  "busy": {"before": 0.6, "after": 0.1}}, reps, 0.0)
    assert doc["machine_busy"] == {"before": 0.6, "after": 0.1} and "busy" in doc["notes"]
