"""The matrix's layout, shared by the chart and the page: one row per picture (+ variant), one
column per security/data mode pair, in the order the modes are defined (lab.ftps.modes)."""

from __future__ import annotations

from lab.ftps.modes import DATA_MODES, SECURITY_MODES


def row_of(s: dict) -> str:
    return s["topology"] + (f" +{s['variant']}" if s["variant"] else "")


def column_of(s: dict) -> tuple[str, str]:
    return s["security"], s["data"]


def _order(col: tuple[str, str]) -> tuple[int, int]:
    sec, data = col
    return (SECURITY_MODES.index(sec) if sec in SECURITY_MODES else 99,
            DATA_MODES.index(data) if data in DATA_MODES else 99)


def rows_and_columns(doc: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Rows in the order the run met them; columns in the modes' order (unknown ones last)."""
    rows = list(dict.fromkeys(row_of(s) for s in doc["scenarios"]))
    cols = sorted(dict.fromkeys(column_of(s) for s in doc["scenarios"]), key=_order)
    return rows, cols
