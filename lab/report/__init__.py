"""Report writers: every one works from a results document (lab.report.results), never from a live run."""

from __future__ import annotations

from pathlib import Path


def write_all(doc: dict, out_dir: str | Path, baseline: dict | None = None) -> list[Path]:
    """results.json, junit.xml, matrix.png, throughput.png and index.html into out_dir."""
    from lab.report import charts, html, junit, results, wire

    out = Path(out_dir)
    wire.attach(doc, out)          # each cell's own connections in the folder's captures
    written = [results.write(doc, out), junit.write(doc, out / "junit.xml")]
    written += charts.write(doc, out)
    written.append(html.write(doc, out / "index.html", baseline=baseline))
    return written
