"""matrix.png (observed vs predicted per cell) and throughput.png (each passing cell against the
iperf3 baseline of its picture), drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

COLORS = {"pass": "#3a9d5d", "fail": "#c8553d", "error": "#7f7f7f"}


def rows_and_columns(doc: dict) -> tuple[list[str], list[str]]:
    """Rows: picture (+variant); columns: security/data, in the order the run met them."""
    rows, cols = [], []
    for s in doc["scenarios"]:
        row = s["topology"] + (f" +{s['variant']}" if s["variant"] else "")
        col = f"{s['security']}/{s['data']}"
        if row not in rows:
            rows.append(row)
        if col not in cols:
            cols.append(col)
    from lab.scenario import DATA_MODES, SECURITY_MODES

    def order(col: str) -> tuple[int, int]:
        sec, data = col.split("/")
        return (SECURITY_MODES.index(sec) if sec in SECURITY_MODES else 99,
                DATA_MODES.index(data) if data in DATA_MODES else 99)
    return rows, sorted(cols, key=order)


def matrix_png(doc: dict, path: Path) -> Path:
    rows, cols = rows_and_columns(doc)
    fig, ax = plt.subplots(figsize=(max(6, 0.42 * len(cols) + 3), max(2.5, 0.42 * len(rows) + 1.6)))
    for s in doc["scenarios"]:
        r = rows.index(s["topology"] + (f" +{s['variant']}" if s["variant"] else ""))
        c = cols.index(f"{s['security']}/{s['data']}")
        ax.add_patch(plt.Rectangle((c, r), 0.95, 0.95, color=COLORS[s["outcome"]]))
        mark = "" if s["matches"] else ("!" if s["outcome"] != "error" else "?")
        if mark:
            ax.text(c + 0.47, r + 0.5, mark, ha="center", va="center", color="white", fontsize=10,
                    fontweight="bold")
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([i + 0.47 for i in range(len(cols))], cols, rotation=90, fontsize=7)
    ax.set_yticks([i + 0.47 for i in range(len(rows))], rows, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"ftlab matrix {doc['run_id']}: observed outcome ('!' = differs from the slides' prediction)",
                 fontsize=9)
    ax.legend(handles=[Patch(color=v, label=k) for k, v in COLORS.items()], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput_png(doc: dict, path: Path) -> Path:
    cells = [s for s in doc["scenarios"] if s["outcome"] == "pass" and s.get("throughput_mbps")]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(cells) + 3), 4))
    if cells:
        labels = [s["id"] for s in cells]
        ax.bar(range(len(cells)), [s["throughput_mbps"] for s in cells], color="#4c72b0", label="transfer")
        base = [s.get("baseline_mbps") or 0 for s in cells]
        ax.plot(range(len(cells)), base, "_", color="black", markersize=8, label="iperf3 baseline (same path)")
        ax.set_xticks(range(len(cells)), labels, rotation=90, fontsize=5)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no passing cell with a measured throughput", ha="center", va="center")
        ax.set_xticks([])
    ax.set_ylabel("MB/s (log)")
    ax.set_title("Data-connection throughput on the native data path vs iperf3", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(doc: dict, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [matrix_png(doc, out / "matrix.png"), throughput_png(doc, out / "throughput.png")]
