"""Predictions come from walking each picture's topology file: the slides' 160 cells, stage and device."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.errors import InputError
from lab.matrix import predict, scenario
from lab.matrix.ends import ends_of
from lab.matrix.pathwalk import walk
from lab.matrix.scenario import Cell, ClientTraits
from lab.report.claims import CLAIMS
from lab.topology import loader as topo

S = scenario.load("default")

#: Per picture and security mode, the four data methods (pasv epsv port eprt): "pass", or the node
#: whose drop of the data connection decides the cell. This is the slides' analysis (scenarios/README.md),
#: now with the device that decides it.
SLIDES = {
    "lan": {s: "pass pass pass pass" for s in S.security},
    "client-nat": {"plain": "pass pass pass pass", "tls": "pass pass internet internet",
                   "tls-ccc": "pass pass pass pass", "implicit": "pass pass internet internet",
                   "implicit-zos": "pass pass internet internet"},
    "server-nat": {"plain": "pass pass pass pass", "tls": "internet nat-s pass pass",
                   "tls-ccc": "pass pass pass pass", "implicit": "internet nat-s pass pass",
                   "implicit-zos": "internet nat-s pass pass"},
    "double-nat": {"plain": "pass pass pass pass", "tls": "internet nat-s internet internet",
                   "tls-ccc": "pass pass pass pass", "implicit": "internet nat-s internet internet",
                   "implicit-zos": "internet nat-s internet internet"},
    "static-filter": {"plain": "pass pass pass pass", "tls": "pass pass pass pass",
                      "tls-ccc": "pass pass pass pass", "implicit": "pass pass fw fw",
                      "implicit-zos": "pass pass fw fw"},
    "static-filter-nat": {"plain": "internet pass pass pass", "tls": "internet pass pass pass",
                          "tls-ccc": "internet pass pass pass", "implicit": "internet pass fw fw",
                          "implicit-zos": "internet pass fw fw"},
    "dynamic-filter": {"plain": "pass pass pass pass", "tls": "fw fw fw fw", "tls-ccc": "pass pass pass pass",
                       "implicit": "fw fw fw fw", "implicit-zos": "fw fw fw fw"},
    "dynamic-filter-nat": {"plain": "pass pass pass pass", "tls": "internet fw fw fw",
                           "tls-ccc": "pass pass pass pass", "implicit": "internet fw fw fw",
                           "implicit-zos": "internet fw fw fw"},
}


def outcome(cell_id: str) -> predict.Prediction:
    return predict.predict(S, scenario.parse_cell_id(cell_id))


def test_default_matrix_is_160_unique_cells():
    cells = S.default_cells()
    assert len(cells) == 160
    assert len({c.id for c in cells}) == 160


@pytest.mark.parametrize("topology", list(SLIDES))
def test_each_picture_walks_to_the_slides_outcome_with_its_device(topology):
    for security, row in SLIDES[topology].items():
        for data, want in zip(S.data, row.split(), strict=True):
            p = outcome(f"{topology}/{security}/{data}")
            got = "pass" if p.outcome == "pass" else p.device
            assert got == want, f"{topology}/{security}/{data}: {p}"
            if p.outcome == "fail":
                assert p.stage == "data-connect" and p.reason, p
            else:
                assert p.stage is None and p.device is None


def test_the_slides_claims_hold_on_the_walk():
    """lab/report/claims.py states what the slides say; the walk agrees with every claim."""
    for claim in CLAIMS:
        for cid, want in claim.expect.items():
            assert outcome(cid).outcome == want, (claim.text, cid)


def test_reasons_say_what_each_device_did():
    p = outcome("server-nat/tls/pasv")
    assert "nat-s's scapy ALG cannot read it (the announcement is inside TLS)" in p.reason
    assert "internet drops it: 10.1.1.10 is a private address" in p.reason
    p = outcome("static-filter/implicit/port")
    assert "from port 989" in p.reason and "default (drop)" in p.reason
    assert "rewrites it to 203.0.113.1" in outcome("dynamic-filter-nat/plain/pasv").reason
    assert "opens a pinhole" in outcome("dynamic-filter/tls-ccc/eprt").reason
    assert outcome("lan/tls/pasv").reason.startswith("the 227 reply announces 192.168.10.20:")


def test_kernel_helper_blind_spot_after_ccc():
    # The built-in client sends TYPE I first after CCC: the kernel helper re-synchronises on it.
    assert outcome("client-nat/tls-ccc/port+alg-kernel").outcome == "pass"
    assert outcome("client-nat/tls-ccc/port+alg-kernel+ccc-noop").outcome == "pass"
    # A client whose first clear line after CCC is PORT (or whose first reply read is the 227)
    # meets the helper's blind spot; the scapy ALG resumes at once.
    cell = Cell("client-nat", "tls-ccc", "port")
    eager = replace(S, clients={**S.clients, "builtin": ClientTraits("builtin", first_after_ccc="data")})
    model = topo.load("client-nat")
    model.nodes["nat-c"].nat.alg = "kernel"
    p = walk(model, "tls-ccc", "port", ends_of(eager, cell, model))
    assert (p.outcome, p.device) == ("fail", "internet") and "misses the first cleartext line" in p.reason
    model.ftp.client_statements["CCCNOOP"] = "TRUE"
    assert walk(model, "tls-ccc", "port", ends_of(eager, cell, model)).outcome == "pass"
    model = topo.load("server-nat")
    model.nodes["nat-s"].nat.alg = "kernel"
    p = walk(model, "tls-ccc", "pasv", ends_of(eager, Cell("server-nat", "tls-ccc", "pasv"), model))
    assert (p.outcome, p.device) == ("fail", "internet")
    assert outcome("server-nat/plain/pasv+alg-off").device == "internet"
    assert outcome("server-nat/plain/port+alg-off").outcome == "pass"


def test_variations_change_what_they_say():
    assert outcome("static-filter-nat/tls/pasv+ignore-pasv-address").outcome == "pass"
    p = outcome("static-filter/tls/epsv+no-passive-range")
    assert (p.outcome, p.device) == ("fail", "fw") and "99.6% of the ports" in p.reason
    assert outcome("static-filter/tls/port+no-passive-range").outcome == "pass"
    assert outcome("server-nat/tls/pasv+ignore-pasv-address").device == "nat-s"     # EPSV's port: not forwarded
    # vsftpd refuses a PORT naming another host than the client (port_promiscuous NO); ProFTPD
    # (AllowForeignAddress off) connects to the control address instead: nat-c has no mapping
    p = outcome("client-nat/tls/port+vsftpd")
    assert (p.outcome, p.stage, p.device) == ("fail", "data-setup", "server")
    p = outcome("client-nat/tls/port+proftpd")
    assert (p.outcome, p.stage, p.device) == ("fail", "data-connect", "nat-c")
    assert "connects to the control connection's 198.51.100.1 instead of 192.168.1.10" in p.reason
    # curl's defect decides only where the network lets the cell through (as observed)
    assert (outcome("client-nat/tls/port+curl").device, outcome("lan/tls/port+curl").device) == ("internet", None)
    assert "curl#10666" in outcome("lan/tls/port+curl").reason


def test_every_cell_names_stage_and_device_or_none():
    nodes = set().union(*(topo.load(t).nodes for t in S.topologies))
    for cell in S.default_cells() + S.variant_cells(["all"]):
        p = predict.predict(S, cell)
        assert p.reason and p.outcome in ("pass", "fail")
        if p.outcome == "fail":
            assert p.stage in ("connect", "tls", "login", "data-setup", "data-connect", "transfer"), cell.id
            assert p.device is None or p.device in nodes, cell.id


def test_cell_ids_round_trip_and_reject_garbage():
    c = scenario.parse_cell_id("server-nat/tls/pasv+ignore-pasv-address")
    assert c == Cell("server-nat", "tls", "pasv", ("ignore-pasv-address",))
    assert c.id == "server-nat/tls/pasv+ignore-pasv-address"
    for bad in ("server-nat/tls", "lan/ssl/pasv", "lan/tls/pasv+", "lan/tls/active"):
        with pytest.raises(InputError):
            scenario.parse_cell_id(bad)


def test_variations_only_where_endpoints_support_them():
    cells = S.variant_cells(["all"])
    assert cells and all(S.supported(c) for c in cells)
    assert not any(c.security == "tls-ccc" and "vsftpd" in c.options for c in cells)
    assert S.with_endpoints(S.default_cells(topologies=["lan"]), "curl", None)[0].options == ("curl",)
    assert all(c.security != "implicit-zos" for c in S.with_endpoints(S.default_cells(), "curl", None))
    with pytest.raises(InputError):
        S.variant_cells(["no-such-variation"])


def test_bad_scenario_file_reports_file_line_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: ftlab.scenarios/1\nmatrix:\n  topologies: [lan]\n  security: [ssl]\n"
                   "  data: [pasv]\npictures:\n  lan:\n    alg: magic\n")
    with pytest.raises(InputError) as err:
        scenario.load(bad)
    text = str(err.value)
    assert f"{bad}:4: matrix.security" in text
    assert f"{bad}:8: pictures.lan.alg" in text          # pictures hold no facts any more
    assert "reasoning" in text
