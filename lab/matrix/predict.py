"""What the lab's model predicts for a cell. Pure.

    predict(scenarios, cell)              # -> Prediction(outcome, stage, reason, device)
    predict(scenarios, cell, picture)     # a picture that carries its loaded topology (picture.model)

The prediction is the path walk (lab.matrix.pathwalk) over the cell's topology, with the cell's
ALG override applied per NAT router (lab.topology.override), and the cell's two ends as they
run: their FTP.DATA statements and profiles (lab.matrix.ends). The same walk predicts the slides'
pictures and an engineer's own file; the slides' own claims are checked separately
(lab.report.claims). A prediction names the outcome (pass, fail, or unknown when the model
cannot read what decides), the stage and the node that decides.
"""

from __future__ import annotations

from lab.matrix import ends, pathwalk, scenario
from lab.matrix.pathwalk import Prediction
from lab.topology import devices, override, timing
from lab.topology import loader as topo
from lab.topology.model import Topology

__all__ = ["Prediction", "predict", "model_of", "picture_of", "unreadable"]


def model_of(cell: scenario.Cell, picture: scenario.Picture | None = None) -> Topology:
    """The topology a cell runs on: the picture's loaded model, else the shipped (or named) file."""
    if picture is not None and picture.model is not None:
        return picture.model
    return topo.load(cell.topology)


def predict(scenarios: scenario.Scenarios, cell: scenario.Cell, picture: scenario.Picture | None = None,
            model: Topology | None = None) -> Prediction:
    """The lab's model's prediction for a cell of a scenario file."""
    model = model or model_of(cell, picture)
    spec = scenarios.spec(cell)
    model, _notes = override.apply(model, spec.alg)
    model = timing.apply(model, spec.timing)
    return pathwalk.walk(model, cell.security, cell.data, ends.ends_of(scenarios, cell, model),
                         silent=spec.timing.transfer_seconds or 0.0, version=spec.ip_version)


def unreadable(model: Topology) -> list[str]:
    """What the devices' models cannot read on this topology in rules that can decide a packet
    ("NODE: FILE:LINE uses X"): a LOG, counting or marking rule decides nothing, whatever it uses."""
    return [f"{node.name}: {what}" for node in model.nodes.values()
            if node.firewall is not None and node.firewall.mode == "static"
            for what in devices.model("static").deciding(node.firewall)] + \
        [f"{node.name}: {node.firewall.nftables.name if node.firewall.nftables else 'nft ruleset'} {what}"
         for node in model.nodes.values() if node.firewall is not None and node.firewall.mode == "nftables"
         for what in devices.unreadable(node.firewall)]


def picture_of(model: Topology) -> tuple[scenario.Picture, bool]:
    """A user's picture (its description as the title) carrying its model; False when a device on
    it holds rules the model cannot read (the slides' step 1)."""
    return scenario.Picture(name=model.name, title=model.description, model=model), not unreadable(model)
