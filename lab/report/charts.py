"""matrix.png (observed vs predicted per cell) and throughput.png (each passing cell against the
iperf3 baseline of its picture, on the same grid), drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from lab.report.grid import column_of, row_of, rows_and_columns  # noqa: E402
from lab.report.results import is_not_run, prediction_source  # noqa: E402

#: "not-run" (an interrupted run did not run the cell): a light grey, apart from a lab error's dark one.
COLORS = {"pass": "#3a9d5d", "fail": "#c8553d", "error": "#7f7f7f", "not-run": "#c8c8c8"}


def _grid(doc: dict, title: str, legend: list[Patch] | None = None):
    """A figure with one square per (row, column) of the run; returns (fig, ax, place) where
    place(scenario) gives the square's top-left corner."""
    rows, cols = rows_and_columns(doc)
    labels = [f"{sec}/{data}" for sec, data in cols]
    fig, ax = plt.subplots(figsize=(max(6, 0.42 * len(cols) + 3), max(2.5, 0.42 * len(rows) + 1.6)))
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([i + 0.47 for i in range(len(cols))], labels, rotation=90, fontsize=7)
    ax.set_yticks([i + 0.47 for i in range(len(rows))], rows, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    def place(s: dict) -> tuple[int, int]:
        return cols.index(column_of(s)), rows.index(row_of(s))
    return fig, ax, place


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def matrix_png(doc: dict, path: Path) -> Path:
    fig, ax, place = _grid(
        doc, f"ftlab matrix {doc['run_id']}: observed outcome ('!' = differs from {prediction_source(doc)})",
        [Patch(color=v, label=k) for k, v in COLORS.items()])
    for s in doc["scenarios"]:
        c, r = place(s)
        not_run = is_not_run(s)
        ax.add_patch(plt.Rectangle((c, r), 0.95, 0.95, color=COLORS["not-run" if not_run else s["outcome"]]))
        mark = "" if s["matches"] or not_run else ("!" if s["outcome"] != "error" else "?")
        if mark:
            ax.text(c + 0.47, r + 0.5, mark, ha="center", va="center", color="white", fontsize=10,
                    fontweight="bold")
    return _save(fig, path)


def throughput_png(doc: dict, path: Path) -> Path:
    """Each passing cell coloured by its throughput as a fraction of the iperf3 baseline of the
    same path (measured in the same run), labelled with its MB/s; cells that did not pass are grey."""
    fig, ax, place = _grid(
        doc, "Data-connection MB/s on the native data path; colour = fraction of the iperf3 baseline")
    cmap = plt.get_cmap("viridis")
    for s in doc["scenarios"]:
        c, r = place(s)
        mbps, ratio = s.get("throughput_mbps"), s.get("ratio")
        if s["outcome"] != "pass" or not mbps:
            ax.add_patch(plt.Rectangle((c, r), 0.95, 0.95, color="#dddddd"))
            continue
        shade = cmap(min(max(ratio or 0.0, 0.0), 1.0))
        ax.add_patch(plt.Rectangle((c, r), 0.95, 0.95, color=shade))
        ax.text(c + 0.47, r + 0.5, f"{mbps:.0f}", ha="center", va="center", fontsize=5,
                color="white" if (ratio or 0) < 0.6 else "black")
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=cmap), ax=ax,
                 label="throughput / iperf3", fraction=0.03)
    return _save(fig, path)


def write(doc: dict, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [matrix_png(doc, out / "matrix.png"), throughput_png(doc, out / "throughput.png")]
