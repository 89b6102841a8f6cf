"""Network tests build real namespaces: they need root, mnexec and unshare, else they skip."""

from __future__ import annotations

import os
import shutil

import pytest


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network tests need root"
    for tool in ("mnexec", "unshare", "ip", "iptables"):
        if shutil.which(tool) is None:
            return f"network tests need {tool}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if "network" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
