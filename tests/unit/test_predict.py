"""The predictions derived from scenarios/default.yaml reproduce the slides' analysis."""

from __future__ import annotations

import pytest

from lab.errors import InputError
from lab.matrix import predict, scenario
from lab.matrix.scenario import Cell, ClientTraits
from lab.topology import loader as topo

S = scenario.load("default")
TLS_LIKE = ("tls", "implicit", "implicit-zos")


def outcome(cell_id: str) -> str:
    return predict.predict(S, scenario.parse_cell_id(cell_id)).outcome


def row(topology: str, security: str) -> str:
    return "".join("P" if outcome(f"{topology}/{security}/{d}") == "pass" else "." for d in S.data)


def test_default_matrix_is_160_unique_cells():
    cells = S.default_cells()
    assert len(cells) == 160
    assert len({c.id for c in cells}) == 160


def test_lan_everything_passes():
    for sec in S.security:
        assert row("lan", sec) == "PPPP"


@pytest.mark.parametrize("topology", ["dynamic-filter", "dynamic-filter-nat"])
def test_dynamic_filtering_with_tls_only_ccc_works(topology):
    assert row(topology, "plain") == "PPPP"
    assert row(topology, "tls-ccc") == "PPPP"
    for sec in TLS_LIKE:
        assert row(topology, sec) == "....", sec


def test_nat_pictures_follow_the_slides():
    # client behind NAT: "PASV may work, PORT will not"
    for sec in TLS_LIKE:
        assert row("client-nat", sec) == "PP.."
        # server behind NAT: "PASV will not work, PORT may work" (EPSV's port is not forwarded)
        assert row("server-nat", sec) == "..PP"
        # both: "neither will work"
        assert row("double-nat", sec) == "...."
    for t in ("client-nat", "server-nat", "double-nat"):
        assert row(t, "plain") == "PPPP"       # the ALG rewrites cleartext
        assert row(t, "tls-ccc") == "PPPP"     # and again after CCC


def test_static_filters_and_step_3():
    for sec in ("plain", "tls", "tls-ccc"):
        assert row("static-filter", sec) == "PPPP"
        # NAT + static filter + PASSIVEDATAPORTS: EPSV works; PASV's private 227 address never
        # gets rewritten (no inspection), active mode leaves from the permitted port 20.
        assert row("static-filter-nat", sec) == ".PPP"
    for sec in ("implicit", "implicit-zos"):
        # Implicit sessions (control port 990) send active data from port 989: not permitted.
        assert row("static-filter", sec) == "PP.."
        assert row("static-filter-nat", sec) == ".P.."
    assert "989" in predict.predict(S, Cell("static-filter", "implicit", "port")).reason
    assert outcome("static-filter-nat/tls/pasv+ignore-pasv-address") == "pass"
    assert outcome("static-filter/tls/epsv+no-passive-range") == "fail"
    assert outcome("static-filter/tls/port+no-passive-range") == "pass"


def test_kernel_helper_blind_spot_after_ccc():
    # The built-in client sends TYPE I first after CCC: the kernel helper re-synchronises on it.
    assert outcome("client-nat/tls-ccc/port+alg-kernel") == "pass"
    assert outcome("client-nat/tls-ccc/port+alg-kernel+ccc-noop") == "pass"
    # A client whose first clear line after CCC is PORT (or whose first reply read is the 227)
    # meets the helper's blind spot; the scapy ALG resumes at once.
    eager = ClientTraits("eager", first_after_ccc="data")
    nat = S.pictures["client-nat"]
    assert predict.predict_facts(nat, "tls-ccc", "port", alg="kernel", client=eager).outcome == "fail"
    assert predict.predict_facts(nat, "tls-ccc", "port", alg="kernel", client=eager,
                                 client_options=("ccc-noop",)).outcome == "pass"
    assert predict.predict_facts(nat, "tls-ccc", "port", alg="scapy", client=eager).outcome == "pass"
    assert predict.predict_facts(S.pictures["server-nat"], "tls-ccc", "pasv", alg="kernel",
                                 client=eager).outcome == "fail"
    assert outcome("server-nat/plain/pasv+alg-off") == "fail"
    assert outcome("server-nat/plain/port+alg-off") == "pass"


def test_every_failure_names_stage_device_and_reason():
    for cell in S.default_cells() + S.variant_cells(["all"]):
        p = predict.predict(S, cell)
        assert p.reason
        if p.outcome == "fail" and not cell.options:
            assert p.stage == "data-connect"
            assert p.device in topo.load(cell.topology).nodes, cell.id


@pytest.mark.parametrize("name", topo.names())
def test_picture_facts_agree_with_topology_files(name):
    derived, known = predict.picture_of(topo.load(name))
    declared = S.pictures[name]
    assert known
    for f in ("client_nat", "server_nat", "alg", "forwarded", "filter", "passive_range", "internet"):
        assert getattr(derived, f) == getattr(declared, f), f


def test_recommend_applies_the_four_steps():
    steps = {n: predict.recommend(S.pictures[n]) for n in S.topologies}
    assert steps["lan"].step == 0
    assert steps["client-nat"].step == 2 and steps["client-nat"].method == "tls/epsv"
    assert steps["static-filter-nat"].step == 3 and steps["static-filter-nat"].predicted.outcome == "pass"
    assert steps["dynamic-filter"].step == 4 and steps["dynamic-filter"].method.startswith("tls-ccc/")
    assert steps["dynamic-filter-nat"].step == 4
    # Step 2 assumes the EPSV port reaches the server; behind a NAT that forwards only 21/990 it does not.
    assert steps["server-nat"].predicted.outcome == "fail"
    assert "FAIL" in steps["server-nat"].why
    assert "tls/port" in steps["server-nat"].alternatives
    unknown = predict.recommend(S.pictures["static-filter"], known=False)
    assert unknown.step == 1 and unknown.security == "tls-ccc"


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
    assert f"{bad}:8: pictures.lan.alg" in text
    assert "reasoning" in text
