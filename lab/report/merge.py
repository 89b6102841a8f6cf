"""Splitting a matrix across CI workers (`--shard K/N`) and merging their results into one report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lab.errors import InputError, Problem
from lab.report import results


def parse_shard(text: str) -> tuple[int, int]:
    """`2/4` -> (2, 4); InputError unless 1 <= K <= N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError([Problem("--shard", 0, "", f"expected K/N (e.g. 1/4), got {text!r}")]) from None
    if not 1 <= k <= n:
        raise InputError([Problem("--shard", 0, "", f"K must be between 1 and N, got {text!r}")])
    return k, n


def shard(cells: list, k: int, n: int, group=lambda c: c.topology) -> list:
    """The cells of shard k of n. Cells of one group (one network brought up) stay together;
    groups go, largest first, to the least loaded shard, so shards are even and disjoint."""
    groups: dict = defaultdict(list)
    for c in cells:
        groups[group(c)].append(c)
    load = [0] * n
    owner = {}
    for key in sorted(groups, key=lambda g: (-len(groups[g]), str(g))):
        i = min(range(n), key=lambda j: (load[j], j))
        owner[key] = i
        load[i] += len(groups[key])
    return [c for c in cells if owner[group(c)] == k - 1]


def merge(docs: list[dict], sources: list[str] | None = None) -> dict:
    """One run document from several (shards of one matrix, or runs of different matrices).

    A cell present in more than one document with different outcomes is an input error.
    """
    if not docs:
        raise InputError("nothing to merge")
    seen: dict[str, dict] = {}
    problems = []
    for i, doc in enumerate(docs):
        for s in doc["scenarios"]:
            prev = seen.get(s["id"])
            if prev is not None and prev["outcome"] != s["outcome"]:
                where = (sources or [str(j) for j in range(len(docs))])[i]
                problems.append(Problem(where, 0, s["id"], f"outcome {s['outcome']} conflicts with "
                                                           f"{prev['outcome']} in an earlier input"))
            seen.setdefault(s["id"], s)
    if problems:
        raise InputError(problems)
    merged = results.new_run(run_id="merged-" + "+".join(d["run_id"] for d in docs)[:120])
    merged["started"] = min(d["started"] for d in docs)
    finished = [d["finished"] for d in docs if d.get("finished")]
    merged["finished"] = max(finished) if finished else None
    merged["host"] = ", ".join(sorted({d["host"] for d in docs}))
    merged["merged_from"] = sources or [d["run_id"] for d in docs]
    merged["scenarios"] = list(seen.values())
    for d in docs:
        for name, info in (d.get("topologies") or {}).items():
            merged["topologies"].setdefault(name, info)
        merged.setdefault("lab_errors", []).extend(d.get("lab_errors") or [])
    for key in ("scenario_file", "size", "command"):
        values = {d.get(key) for d in docs if d.get(key) is not None}
        if len(values) == 1:
            merged[key] = values.pop()
    return merged


def merge_dirs(paths: list[str | Path]) -> dict:
    return merge([results.load(p) for p in paths], [str(p) for p in paths])
