"""The pure parts of lab.network.net (no namespaces)."""

from __future__ import annotations

import pytest

from lab.network.net import cpu_mask


@pytest.mark.parametrize(("cpus", "mask"), [(1, "1"), (2, "3"), (4, "f"), (32, "ffffffff"),
                                             (33, "1,ffffffff"), (64, "ffffffff,ffffffff")])
def test_cpu_mask_is_the_kernels_cpumask_text(cpus, mask):
    assert cpu_mask(cpus) == mask
