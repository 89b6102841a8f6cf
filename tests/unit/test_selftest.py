"""lab.matrix.selftest without a network: cell sampling, the accuracy table, shrinking."""

from __future__ import annotations

import pytest

from lab.errors import InputError
from lab.matrix import designgen as g
from lab.matrix import selftest as st


def test_cells_are_the_same_sample_each_run():
    for i in range(20):
        spec = g.generate(5, i)
        assert st.cells_for(spec, 4) == st.cells_for(g.generate(5, i), 4)
        cells = st.cells_for(spec, 4)
        assert 4 <= len(cells) <= 5
        assert all(s in st.SECURITY and d in st.DATA for s, d, _ in cells)
    assert len(st.cells_for(g.generate(5, 0), None)) >= 20


def test_parse_cells():
    assert st._parse_cells(None) == 4
    assert st._parse_cells("all") is None
    assert st._parse_cells("3") == 3
    with pytest.raises(InputError):
        st._parse_cells("x")


def _has(spec, kind):
    return any((d.get("filter") or {}).get("kind") == kind for d in spec["devices"])


def test_shrink_keeps_only_what_the_difference_needs():
    spec = next(s for s in (g.generate(1, i) for i in range(500))
                if _has(s, "nftables") and len(s["devices"]) >= 3 and s["server"])
    calls = []

    def differs(s):
        calls.append(s)
        return _has(s, "nftables")
    small, dropped = st.shrink(spec, differs)
    assert _has(small, "nftables") and len(small["devices"]) == 1
    f = small["devices"][0]["filter"]
    assert f["rules"] == [] and not small["server"] and not small["client"]
    assert "nat" not in small["devices"][0]
    assert dropped and calls
    # every step kept the difference: the smallest is a fixed point
    assert all(not differs(s) for _, s in st.reductions(small) if not _has(s, "nftables"))


def test_shrink_respects_loading_and_budget():
    spec = g.generate(1, 3)
    small, dropped = st.shrink(spec, lambda s: True, loads=lambda s: False)
    assert small == spec and dropped == []
    small, dropped = st.shrink(spec, lambda s: True, budget=0)
    assert dropped == []


def test_shrunk_designs_still_load(tmp_path):
    spec = next(s for s in (g.generate(2, i) for i in range(200)) if len(s["devices"]) >= 3)
    for _, smaller in st.reductions(spec):
        g.write(smaller, tmp_path)      # renders without error; most load
    loaded = sum(g.loads_spec(s, tmp_path / "x") for _, s in st.reductions(spec))
    assert loaded >= 1


def test_table_counts_agreement_per_kind():
    def j(agree, outcome=True, error=False, unknown=False):
        return {"agrees": agree, "outcome": outcome, "stage": agree, "device": agree, "error": error,
                "unknown": unknown}
    rows = [(["nat/scapy/client-side"], j(True)), (["nat/scapy/client-side", "filter/static"], j(False)),
            (["filter/static"], j(False, error=True)), (["filter/static"], j(False, outcome=False, unknown=True))]
    lines = st.table(rows)
    overall = next(line for line in lines if line.startswith("overall"))
    assert "2/2" in overall and "1/2" in overall and " 50.0%" in overall
    static = next(line for line in lines if line.startswith("filter/static"))
    assert static.split()[1] == "3"
    assert st._accuracy(rows)["agrees"] == 0.5
