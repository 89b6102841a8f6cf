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


def shard_set(docs: list[dict], sources: list[str]) -> dict:
    """What a set of documents lacks as shards of one split: {"missing": ["3/3"], "duplicated":
    ["1/3"], "interrupted": [source], "problems": [Problem]}. A document that says no `shard` (a
    whole run) is not checked as a shard; shards of different splits (1/3 beside 2/2) cannot be one
    matrix. A document of an interrupted run (`interrupted`, shard or not) is incomplete."""
    given: dict[int, list[str]] = defaultdict(list)
    splits: dict[int, list[str]] = defaultdict(list)
    for doc, where in zip(docs, sources, strict=True):
        text = doc.get("shard")
        if not text:
            continue
        k, n = parse_shard(str(text))
        splits[n].append(f"{k}/{n} ({where})")
        given[(k, n)].append(where)
    problems = []
    if len(splits) > 1:
        problems.append(Problem("merge", 0, "", "shards of different splits cannot be one matrix: "
                                + "; ".join(x for n in sorted(splits) for x in splits[n])))
    missing = [f"{k}/{n}" for n in sorted(splits) for k in range(1, n + 1) if (k, n) not in given]
    duplicated = [f"{k}/{n}" for (k, n), where in sorted(given.items()) if len(where) > 1]
    for (k, n), where in sorted(given.items()):
        if len(where) > 1:
            problems.append(Problem("merge", 0, "", f"shard {k}/{n} is given twice: {', '.join(where)}"))
    for m in missing:
        problems.append(Problem("merge", 0, "", f"shard {m} is missing (its results.json was not given: a lost "
                                                "CI artifact?); --allow-partial merges what is there, marked partial"))
    interrupted = []
    for doc, where in zip(docs, sources, strict=True):
        stop = doc.get("interrupted")
        if stop:
            interrupted.append(where)
            what = f"shard {doc['shard']}" if doc.get("shard") else "run"
            not_run = stop.get("cells_not_run") if isinstance(stop, dict) else None
            problems.append(Problem("merge", 0, "", f"{what} {where} was interrupted (Ctrl-C"
                                    + (f" after {stop.get('after_s')} s" if isinstance(stop, dict) else "")
                                    + (f"; {not_run} cell{'' if not_run == 1 else 's'} not run" if not_run is not None else "")
                                    + "): it is incomplete (its results.json holds what ran); "
                                    "--allow-partial merges what is there, marked partial"))
    return {"missing": missing, "duplicated": duplicated, "interrupted": interrupted, "problems": problems}


def merge(docs: list[dict], sources: list[str] | None = None, allow_partial: bool = False) -> dict:
    """One run document from several (shards of one matrix, or runs of different matrices).

    A cell present in more than one document with different outcomes is an input error. Shards
    (documents that say `shard: K/N`) must be 1..N of one split, each once: a lost or doubled
    artifact is an input error naming the shard, and so is an interrupted input (naming it), unless
    allow_partial, which merges what is there and marks the document `partial` (the missing and
    doubled shards, the interrupted inputs). A cell one input did not run (not-run) and another
    ran is the other's, not a conflict."""
    if not docs:
        raise InputError("nothing to merge")
    sources = sources or [str(j) for j in range(len(docs))]
    shards = shard_set(docs, sources)
    if shards["problems"] and not allow_partial:
        raise InputError(shards["problems"])
    seen: dict[str, dict] = {}
    problems = []
    for i, doc in enumerate(docs):
        for s in doc["scenarios"]:
            prev = seen.get(s["id"])
            if prev is not None and results.is_not_run(prev) and not results.is_not_run(s):
                seen[s["id"]] = s                   # run again elsewhere: that run decides it
                continue
            if prev is not None and results.is_not_run(s):
                continue
            if prev is not None and prev["outcome"] != s["outcome"]:
                problems.append(Problem(sources[i], 0, s["id"], f"outcome {s['outcome']} conflicts with "
                                                                f"{prev['outcome']} in an earlier input"))
            seen.setdefault(s["id"], s)
    if problems:
        raise InputError(problems)
    merged = results.new_run(run_id="merged-" + "+".join(d["run_id"] for d in docs)[:120])
    merged["started"] = min(d["started"] for d in docs)
    finished = [d["finished"] for d in docs if d.get("finished")]
    merged["finished"] = max(finished) if finished else None
    merged["host"] = ", ".join(sorted({d["host"] for d in docs}))
    merged["merged_from"] = sources
    merged["scenarios"] = list(seen.values())
    if shards["problems"]:
        merged["partial"] = {"missing": shards["missing"], "duplicated": shards["duplicated"],
                             "reason": "merged with --allow-partial: " + "; ".join(
                                 p.message.split(" (its results.json")[0].split(": it is incomplete")[0]
                                 for p in shards["problems"])}
        if shards["interrupted"]:
            merged["partial"]["interrupted"] = shards["interrupted"]
    for d in docs:
        for name, info in (d.get("topologies") or {}).items():
            merged["topologies"].setdefault(name, info)
        merged.setdefault("lab_errors", []).extend(d.get("lab_errors") or [])
        if d.get("partial"):                         # a partial merge merged again stays partial
            merged.setdefault("partial", {"missing": [], "duplicated": [], "reason": ""})
            merged["partial"]["reason"] = "; ".join(x for x in (merged["partial"]["reason"],
                                                                 f"{d['run_id']} is partial: {d['partial'].get('reason')}") if x)
    for key in ("scenario_file", "size", "command"):
        values = {d.get(key) for d in docs if d.get(key) is not None}
        if len(values) == 1:
            merged[key] = values.pop()
    # Shards run with --expect: the merged verdict (exit code, junit.xml) is the expectations', as each
    # shard's was; without the key it fell back to the predictions and an unmet expectation merged green.
    stated = sorted({d["expect_file"] for d in docs if d.get("expect_file")})
    if stated:
        merged["expect_file"] = ", ".join(stated)
    return merged


def merge_dirs(paths: list[str | Path], allow_partial: bool = False) -> dict:
    """merge() of report folders; the documents' paths (relative to their own folders) are
    re-based so that results.write makes them relative to the merged folder."""
    docs = [results.absolute_paths(results.load(p), results.results_path(p).parent) for p in paths]
    return merge(docs, [str(p) for p in paths], allow_partial=allow_partial)
