"""The benchmark harness runs end to end (small size, one run): every tool moves its bytes and the
ratios are computed. The real measurement is `python -m lab.endpoints.throughput` (256 MiB, not a test)."""

from __future__ import annotations

import peers
import pytest

from lab.endpoints import throughput as bench

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]


def test_bench_smoke():
    for tool in ("iperf3", "curl", "vsftpd"):
        if why := peers.missing(tool):
            pytest.skip(why)
    if why := peers.need_root():
        pytest.skip(why)
    result = bench.run_bench(size=8 * bench.MiB, runs=1)
    assert all(not m.errors for m in result.measurements), [m.errors for m in result.measurements]
    assert all(m.median > 0 for m in result.measurements)
    for d in ("retr", "stor"):
        for name in ("plain_vs_iperf3", "tls_vs_iperf3", "tls_vs_curl_vsftpd"):
            assert result.ratios[f"{d}.{name}"] > 0
    text = bench.format_result(result)
    assert "tls_vs_curl_vsftpd" in text and "PROT P" in text
