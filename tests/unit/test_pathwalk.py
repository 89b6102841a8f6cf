"""The path walk's parts: addresses tracked hop by hop through NATs in series, ports it cannot pin
down, devices it cannot read, and the observed side it is compared with (the deciding device)."""

from __future__ import annotations

import pytest

from lab import TOPOLOGY_DIR
from lab.matrix import predict, scenario
from lab.matrix.pathwalk import EPHEMERAL, Prediction, settle, stretches
from lab.matrix.verdict import Observation, verdict
from lab.topology import loader

S = scenario.load("default")
HOME_CGN = TOPOLOGY_DIR / "examples" / "home-and-cgn.yaml"


def cell(model, security: str, data: str) -> Prediction:
    return predict.predict(S, scenario.Cell(model.name, security, data), model=model)


@pytest.mark.parametrize("home, cgn, device, says", [
    ("scapy", "off", None, "internet has no route to 100.64.0.2"),        # home rewrites, cgn leaves it
    ("off", "scapy", "internet", "cgn's scapy ALG leaves it alone: it names 192.168.1.10, not its sender 100.64.0.2"),
    ("scapy", "scapy", "pass", "cgn's scapy ALG rewrites it to 198.51.100.1"),
    ("scapy", "kernel", "pass", "cgn's kernel helper rewrites it to 198.51.100.1"),
    ("off", "off", "internet", "192.168.1.10 is a private address"),
])
def test_two_nats_in_series_each_with_its_own_alg(home, cgn, device, says):
    model = loader.load(HOME_CGN)
    model.nodes["home"].nat.alg, model.nodes["cgn"].nat.alg = home, cgn
    p = cell(model, "plain", "port")
    assert (p.device if p.outcome == "fail" else "pass") == device and says in p.reason, p
    assert cell(model, "tls", "pasv").outcome == "pass"


def test_a_variation_per_router_is_walked_as_the_lab_runs_it():
    model = loader.load(HOME_CGN)
    p = predict.predict(S, scenario.parse_cell_id("home-and-cgn/plain/port+alg-kernel"), model=model)
    assert p.device is None and "home's kernel helper rewrites it to 100.64.0.2" in p.reason  # cgn stays off
    p = predict.predict(S, scenario.parse_cell_id("home-and-cgn/plain/port+alg-kernel@cgn"), model=model)
    assert p.outcome == "pass"


def test_stretches_cut_a_range_at_every_edge():
    assert stretches(EPHEMERAL, {21, 22, 60000, 60101}) == [(32768, 27232), (60000, 101), (60101, 899)]
    assert stretches(EPHEMERAL, set()) == [(32768, 28232)]


def test_settle_takes_an_outcome_only_when_it_holds_for_almost_every_port():
    drop, ok = Prediction("fail", "data-connect", "dropped", "fw"), Prediction("pass", None, "passes")
    assert settle([(drop, 28131), (ok, 101)], "the kernel picks").outcome == "fail"
    half = settle([(drop, 50), (ok, 51)], "the server picks")
    assert half.outcome == "unknown" and half.reason.startswith("cannot predict: it depends on the port the server "
                                                                "picks: pass for 50.5%")


def test_a_passive_range_half_permitted_cannot_be_predicted(tmp_path):
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("dport: 60000-60100, comment: passive",
                                                                       "dport: 60000-60050, comment: passive")
    (tmp_path / "half.yaml").write_text(text)
    p = cell(loader.load(tmp_path / "half.yaml"), "tls", "epsv")
    assert p.outcome == "unknown" and "the server picks" in p.reason


def test_a_ruleset_line_outside_the_model_makes_the_cells_it_decides_unknown(tmp_path):
    rules = (TOPOLOGY_DIR / "examples" / "iptables-user-chain.rules").read_text().replace(
        "-A ftp-out -j LOG", "-A ftp-out -p tcp -m owner --uid-owner 0 -j ACCEPT\n-A ftp-out -j LOG")
    (tmp_path / "iptables-user-chain.rules").write_text(rules)
    (tmp_path / "net.yaml").write_text((TOPOLOGY_DIR / "examples" / "iptables-user-chain.yaml").read_text())
    model = loader.load(tmp_path / "net.yaml")
    p = cell(model, "implicit", "port")          # active data from 989 reaches the -m owner rule
    assert (p.outcome, p.stage, p.device) == ("unknown", None, "fw")
    assert p.reason == "cannot predict: iptables-user-chain.rules:18 uses -m owner (on fw)"
    assert cell(model, "tls", "port").outcome == "pass"          # port 20 is accepted before it
    assert predict.unreadable(model) == ["fw: iptables-user-chain.rules:18 uses -m owner"]


def test_the_observed_device_is_the_dropper_or_the_refusing_server():
    def observed(client: dict, events=()) -> tuple:
        v = verdict(Observation(client, events=list(events), server_node="zos"))
        return v.outcome, v.stage, v.device

    refused = {"outcome": "failed", "stage": "login", "code": 530, "reason": "Security is required"}
    assert observed(refused) == ("fail", "login", "zos")
    assert observed({**refused, "stage": "tls", "code": 534}) == ("fail", "tls", "zos")
    # a 425 reports the network, not a decision of the server; a handshake failure has no code
    assert observed({**refused, "stage": "data-connect", "code": 425}) == ("fail", "data-connect", None)
    assert observed({**refused, "stage": "tls", "code": None}) == ("fail", "tls", None)
    drop = {"type": "drop", "device": "fw", "dport": 60001, "flags": "S"}
    assert observed({**refused, "stage": "data-connect", "code": None}, [drop]) == ("fail", "data-connect", "fw")
