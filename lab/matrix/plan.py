"""The run plan: what the matrix runner hands every sandboxed worker, as one JSON file.

    plan = RunPlan(out, size, timeout, pcap, scenario_file, pki, heartbeat, groups)
    plan.write(out / "work" / "plan.json")          # the runner
    plan = RunPlan.read(path); plan.groups[i]       # `python -m lab.matrix.worker PLAN INDEX`

A group is one network brought up once: one picture with one ALG mode, and the ids of the cells
that run on it, in order. Paths are absolute: a worker runs in its own mount namespace and may
have another working directory. This module is the only place that writes or reads the JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.topology.timing import Timing


@dataclass(frozen=True)
class GroupPlan:
    topology: str                  # a shipped picture's name, or the path of a user's topology file
    alg: str | None                # the ALG mode of the picture's NAT devices (None: as the file says)
    cells: tuple[str, ...]         # cell ids, in the order they run
    timing: Timing = Timing()      # idle timeouts and a shaped server link (lab.topology.timing)

    @property
    def name(self) -> str:
        """The picture's name: a user's file is named by its stem."""
        return Path(self.topology).stem

    @property
    def user_file(self) -> bool:
        """A user's topology file: judged by its own facts, even when it reuses a shipped name."""
        return Path(self.topology).suffix in (".yaml", ".yml")

    @property
    def label(self) -> str:
        return self.name + (f" (alg {self.alg})" if self.alg else "") + \
            (f" ({self.timing.label()})" if self.timing else "")


@dataclass(frozen=True)
class RunPlan:
    out: Path                      # the report folder
    size: int                      # bytes per transfer
    timeout: float                 # hard limit per cell, seconds
    pcap: bool | str               # False, "cells" (True) or "all" (lab.network.net.pcap_scope)
    scenario_file: Path
    pki: Path                      # the run's CA and server certificate (lab.matrix.runner.make_pki)
    heartbeat: Path | None         # touched by the runner; a stale one stops the workers
    groups: tuple[GroupPlan, ...]
    throughput: str = "off"        # the throughput phase: off | quick | full (lab.matrix.speed)

    def group_dir(self, index: int) -> Path:
        """Where group `index` keeps its files (cells.jsonl, topology.json, logs)."""
        g = self.groups[index]
        return self.out / "work" / (f"{index:02d}-{g.name}" + (f"-alg-{g.alg}" if g.alg else "")
                                    + ("-timed" if g.timing else ""))

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> str:
        doc = asdict(self)
        for key in ("out", "scenario_file", "pki", "heartbeat"):
            doc[key] = None if doc[key] is None else str(doc[key])
        return json.dumps(doc, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        doc = json.loads(text)
        return cls(out=Path(doc["out"]), size=int(doc["size"]), timeout=float(doc["timeout"]),
                   pcap=doc["pcap"] if isinstance(doc["pcap"], str) else bool(doc["pcap"]),
                   scenario_file=Path(doc["scenario_file"]), pki=Path(doc["pki"]),
                   heartbeat=Path(doc["heartbeat"]) if doc.get("heartbeat") else None,
                   groups=tuple(GroupPlan(g["topology"], g["alg"], tuple(g["cells"]), Timing(**(g.get("timing") or {})))
                                for g in doc["groups"]),
                   throughput=str(doc.get("throughput") or "off"))

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, path: Path) -> RunPlan:
        return cls.from_json(path.read_text())
