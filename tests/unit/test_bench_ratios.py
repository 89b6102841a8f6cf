"""The benchmark's ratios (lab.endpoints.throughput): per direction, each the median of the runs'
own side-by-side ratios, with min-max, against the issue's targets."""

from __future__ import annotations

from lab.endpoints import throughput as bench


def test_a_ratio_pairs_the_runs_and_leaves_failed_ones_out():
    assert bench.paired([900.0, 0.0, 600.0, 800.0], [1000.0, 1000.0, 1200.0, 800.0]) == (0.9, 0.5, 1.0)
    assert bench.paired([0.0], [1000.0]) is None


def test_every_ratio_per_direction_with_its_spread_and_target():
    runs = {("iperf3", "plain"): [1000.0, 2000.0], ("curl+vsftpd", "plain"): [800.0, 800.0],
            ("curl+vsftpd", "tls"): [200.0, 400.0], ("ftlab", "plain"): [950.0, 1600.0],
            ("ftlab", "tls"): [600.0, 1000.0]}
    cells = {(tool, sec, d): bench.Measurement(tool, sec, d, list(v)) for (tool, sec), v in runs.items()
             for d in ("retr", "stor")}
    ratios, meets, ranges = bench._ratios(cells)
    assert ratios["retr.plain_vs_iperf3"] == 0.875 and ranges["retr.plain_vs_iperf3"] == [0.8, 0.95]
    assert ratios["stor.tls_vs_curl_vsftpd"] == 2.75 and ranges["stor.tls_vs_curl_vsftpd"] == [2.5, 3.0]
    assert meets["retr.plain_vs_iperf3"] is False and meets["retr.tls_vs_iperf3"] is True   # 0.875; 0.55 is the target
    assert meets["retr.plain_vs_curl_vsftpd"] is True and meets["stor.tls_vs_curl_vsftpd"] is True
    assert {k.split(".")[0] for k in ratios} == {"retr", "stor"} and len(ratios) == 2 * len(bench.RATIOS)
    result = bench.BenchResult(1 << 20, 2, "here", list(cells.values()), ratios, meets, ranges)
    text = bench.format_result(result)
    assert "0.88 (0.80-0.95)" in text and "MISSED" in text
    assert result.to_dict()["ratio_ranges"]["retr.tls_vs_iperf3"] == [0.5, 0.6]


def test_a_noisy_machine_is_said_and_kept_in_bench_json():
    runs = {("iperf3", "plain", "retr"): [1000.0, 1800.0, 1400.0], ("iperf3", "plain", "stor"): [1500.0, 1600.0, 1550.0]}
    cells = [bench.Measurement(t, s, d, v) for (t, s, d), v in runs.items()]
    result = bench.BenchResult(1 << 20, 3, "here", cells, {}, {}, {})
    assert bench.iperf3_spread(result) == {"retr": 1.8, "stor": 1.07}
    assert result.to_dict()["iperf3_spread"] == {"retr": 1.8, "stor": 1.07}
    text = bench.format_result(result)
    assert "iperf3 alone varied 1.8x RETR" in text and "STOR" not in text.split("note:")[1]
    quiet = bench.BenchResult(1 << 20, 3, "here", cells[1:], {}, {}, {})
    assert "note:" not in bench.format_result(quiet)
