"""Suite-wide settings. Network and interop fixtures live in tests/net/ and tests/interop/.

With FTLAB_REQUIRE_ALL=1 (as .ci/run sets it) nothing may skip: a skipped test proves nothing, and a
suite that skips its network and interop tests (no root, a missing tool) would otherwise be green.
Each skip is then reported as a failure of that test, naming why it would have skipped; a skip while
collecting (a whole module) fails the session.

The property tests (hypothesis) are a gate here, so they are reproducible: the same examples on
every run, and no per-example deadline (a loaded CI machine is slow, not wrong). A fuzzing session
explores instead: `FTLAB_FUZZ=random pytest tests/unit` draws new examples, ten times as many.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("gate", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True, max_examples=1000)
settings.load_profile("fuzz" if os.environ.get("FTLAB_FUZZ") == "random" else "gate")

REQUIRE_ALL = "FTLAB_REQUIRE_ALL"


def _required() -> bool:
    return os.environ.get(REQUIRE_ALL, "") not in ("", "0")


def _reason(longrepr: object) -> str:
    # A skip's longrepr is (file, line, "Skipped: why").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _required() and report.skipped and not hasattr(report, "wasxfail"):
        markers = sorted(m for m in ("network", "interop") if m in item.keywords)
        kind = "/".join(markers) or "unit"
        kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} test"
        report.outcome = "failed"
        report.longrepr = (f"{kind} was skipped, and {REQUIRE_ALL}=1 forbids skipping: "
                           f"{_reason(report.longrepr)}")
    return report


_skipped_modules: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _required() and report.skipped:
        _skipped_modules.append(report.nodeid)
        report.outcome = "failed"
        report.longrepr = f"skipped while collecting, and {REQUIRE_ALL}=1 forbids skipping: {_reason(report.longrepr)}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A failed collect report made here does not count as a failed test by itself.
    if _skipped_modules and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
