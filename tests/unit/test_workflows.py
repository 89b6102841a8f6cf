"""Issue 12, item 6: one cell of any topology file, variations on users' files, and a variation that
changes only what it says - per NAT router (`alg-kernel` leaves an `alg: off` router off and says
so; `alg-kernel@cgn` turns exactly that router on)."""

from __future__ import annotations

import argparse

import pytest

from lab.cli import main
from lab.errors import InputError
from lab.matrix import scenario
from lab.matrix.cli import _select
from lab.topology import loader as topo
from lab.topology import override

S = scenario.load("default")

#: A client behind a home NAT (its ALG on) behind a carrier-grade NAT (alg: off); server public.
TWO_NATS = topo.TOPOLOGY_DIR / "examples" / "home-and-cgn.yaml"


def args(argv: list[str]) -> argparse.Namespace:
    from lab.cli import build_parser

    return build_parser().parse_args(["matrix", *argv])


@pytest.fixture
def two_nats():
    return TWO_NATS


def test_a_cell_id_may_name_a_file():
    c = scenario.parse_cell_id("my+site/net.yaml/tls/pasv+alg-off+curl")
    assert (c.topology, c.security, c.data, c.options) == ("my+site/net.yaml", "tls", "pasv", ("alg-off", "curl"))
    assert scenario.parse_cell_id("lan/tls/epsv") == scenario.Cell("lan", "tls", "epsv")
    with pytest.raises(InputError, match="expected <topology>/<security>/<data>"):
        scenario.parse_cell_id("tls/pasv")


def test_run_refuses_a_bad_file_cell_before_any_network(two_nats, capsys):
    assert main(["run", f"{two_nats}/tls/ssl"]) == 2
    assert "'ssl' is not one of" in capsys.readouterr().err
    assert main(["run", f"{two_nats.parent / 'nope.yaml'}/tls/pasv"]) == 2
    assert "no such topology file" in capsys.readouterr().err
    assert main(["run", f"{two_nats}/tls/pasv+alg-kernel@nosuch"]) == 2
    err = capsys.readouterr().err
    assert "kernel@nosuch: home-and-cgn has no NAT router 'nosuch' (its NAT routers: home, cgn)" in err


def test_variants_on_a_users_file_run_on_its_whole_matrix(two_nats, capsys):
    cells, paths = _select(args(["--topologies", str(two_nats), "--variants", "ignore-pasv-address",
                                 "--only-variants", "--security", "tls"]), S)
    assert [c.id for c in cells] == [f"home-and-cgn/tls/{d}+ignore-pasv-address" for d in ("pasv", "epsv", "port", "eprt")]
    assert paths == {"home-and-cgn": str(two_nats.resolve())}


def test_alg_kernel_leaves_an_alg_off_router_off_and_says_so(two_nats, capsys):
    cells, _ = _select(args(["--topologies", str(two_nats), "--variants", "alg-kernel", "--only-variants",
                             "--security", "plain", "--data", "port"]), S)
    assert [c.id for c in cells] == ["home-and-cgn/plain/port+alg-kernel"]
    err = capsys.readouterr().err
    assert "+alg-kernel on home-and-cgn: home: ALG scapy -> kernel; cgn: ALG stays off (alg: off in home-and-cgn; an " \
           "override naming it, +alg-kernel@cgn, turns it on)" in err
    changed, _ = override.apply(topo.load(two_nats), S.spec(cells[0]).alg)
    assert (changed.nodes["home"].nat.alg, changed.nodes["cgn"].nat.alg) == ("kernel", "off")


def test_alg_kernel_at_a_router_changes_exactly_that_router(two_nats, capsys):
    cells, _ = _select(args(["--topologies", str(two_nats), "--variants", "alg-kernel@cgn", "--only-variants",
                             "--security", "plain", "--data", "port"]), S)
    assert [c.id for c in cells] == ["home-and-cgn/plain/port+alg-kernel@cgn"]
    assert S.spec(cells[0]).alg == "kernel@cgn"
    assert "home: ALG scapy, unchanged; cgn: ALG off -> kernel" in capsys.readouterr().err
    changed, _ = override.apply(topo.load(two_nats), "kernel@cgn")
    assert (changed.nodes["home"].nat.alg, changed.nodes["cgn"].nat.alg) == ("scapy", "kernel")


def test_a_variation_that_changes_nothing_is_left_out_and_said(tmp_path, capsys):
    (tmp_path / "flat.yaml").write_text((topo.TOPOLOGY_DIR / "lan.yaml").read_text().replace("name: lan", "name: flat"))
    cells, _ = _select(args(["--topologies", str(tmp_path / "flat.yaml"), "--variants", "alg-off", "curl",
                             "--only-variants", "--security", "tls", "--data", "pasv"]), S)
    assert [c.id for c in cells] == ["flat/tls/pasv+curl"]
    assert "+alg-off on flat: flat has no NAT router - changes nothing here, its cells are left out" in \
        capsys.readouterr().err


def test_only_alg_variations_name_a_router():
    with pytest.raises(InputError, match=r"curl@home: only an ALG variation can name a router"):
        S.spec(scenario.Cell("x", "tls", "pasv", ("curl@home",)))


@pytest.mark.parametrize("spec, words", [("magic", "'magic' is not an ALG override"),
                                         ("kernel@", "'kernel@' is not an ALG override")])
def test_bad_overrides(spec, words):
    with pytest.raises(InputError, match=words):
        override.parse(spec)


def test_overrides_apply_in_order_and_leave_the_model_alone(two_nats):
    model = topo.load(two_nats)
    changed, notes = override.apply(model, "off,kernel@cgn")
    assert (changed.nodes["home"].nat.alg, changed.nodes["cgn"].nat.alg) == ("off", "kernel")
    assert (model.nodes["home"].nat.alg, model.nodes["cgn"].nat.alg) == ("scapy", "off")
    assert override.uniform("kernel") == "kernel" and override.uniform("kernel@cgn") is None


def test_two_networks_with_one_name_in_one_run_are_refused(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text((topo.TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("name: static-filter", "name: lan"))
    with pytest.raises(InputError, match=r"'lan' names two networks in this run \(lan and .*mine.yaml\)"):
        _select(args(["--topologies", "lan", str(mine)]), S)
