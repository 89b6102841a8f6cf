"""Run documents built from real predictions and real verdicts over constructed observations.

Each cell's observation is what the runner would see if the network behaved as `behaviour`
says: a success JSON from the client, or a drop event from the device the prediction names.
The writers are then tested on what lab.matrix.verdict made of those observations.
"""

from __future__ import annotations

import hashlib

from lab.matrix import predict, scenario
from lab.matrix.verdict import Observation, verdict
from lab.report import results

S = scenario.load("default")
SIZE = 4096
SHA = hashlib.sha256(b"\0" * SIZE).hexdigest()


def observe(cell, prediction, *, flip: bool = False, broken: bool = False) -> Observation:
    """What the runner observes when the network does what the prediction says (or the opposite)."""
    succeeds = (prediction.outcome == "pass") != flip
    if broken:
        return Observation(None, exit_code=1, stderr="Traceback (most recent call last):\nOSError: boom",
                           expected_bytes=SIZE, expected_sha256=SHA)
    if succeeds:
        client = {"ok": True, "bytes": SIZE, "sha256": SHA, "seconds": 0.004, "mbps": 1.0,
                  "transcript": ["220 ready", "USER lab", "331 pass"]}
        return Observation(client, exit_code=0, expected_bytes=SIZE, expected_sha256=SHA)
    dev = prediction.device or "fw"
    ev = {"ts": 1.0, "device": dev, "type": "drop", "reason": "test drop", "proto": "tcp",
          "src": "198.51.100.10", "sport": 40000, "dst": "203.0.113.10", "dport": 60001, "flags": "S"}
    return Observation(None, exit_code=-9, killed_on_drop=True, events=[ev], expected_bytes=SIZE,
                       expected_sha256=SHA)


def make_doc(cells=None, *, flip: set[str] = frozenset(), broken: set[str] = frozenset(),
             run_id: str = "20260101-000000") -> dict:
    doc = results.new_run(run_id=run_id, size=SIZE)
    for cell in cells if cells is not None else S.default_cells():
        p = predict.predict(S, cell)
        obs = observe(cell, p, flip=cell.id in flip, broken=cell.id in broken)
        v = verdict(obs)
        c = obs.client or {}
        doc["scenarios"].append(results.scenario_entry(
            cell=cell, spec=S.spec(cell), prediction=p, verdict=v, bytes=c.get("bytes"),
            sha256_ok=(c.get("sha256") == SHA) if c else None,
            throughput_mbps=c.get("mbps"), baseline_mbps=900.0 if c else None, duration_s=0.5,
            events=obs.events, transcript=c.get("transcript", []),
            firewall_saw=[{"device": "fw", "kind": "cleartext", "text": "227 Entering Passive Mode (203,0,113,10,234,96)"}]
            if cell.security == "plain" else [{"device": "fw", "kind": "ciphertext", "text": "TLS records 17 03 03 ..."}],
            pcaps=[]))
    doc["finished"] = results.now_iso()
    doc["topologies"] = {t: {"baseline_mbps": 900.0, "up_s": 1.0} for t in S.topologies}
    return doc


def with_pictures(doc: dict) -> dict:
    """The document with what the runner records of each picture: title, slide, reasoning,
    recommendation and the diagram (lab.matrix.runner.picture_facts, on the shipped pictures)."""
    from lab.matrix.plan import GroupPlan
    from lab.matrix.runner import picture_facts
    from lab.topology import loader

    for name, info in doc["topologies"].items():
        info.update(picture_facts(GroupPlan(name, None, ()), loader.load(name), S))
    return doc
