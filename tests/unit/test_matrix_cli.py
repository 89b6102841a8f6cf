"""Which cells `ftlab matrix` arguments select (no network needed)."""

from __future__ import annotations

import argparse

import pytest

from lab import cli
from lab.errors import InputError
from lab.matrix import scenario
from lab.matrix.cli import _select

S = scenario.load("default")


def args(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(["matrix", *argv])


def ids(argv: list[str]) -> list[str]:
    cells, _ = _select(args(argv), S)
    return [c.id for c in cells]


def test_no_arguments_is_the_default_matrix():
    assert len(ids([])) == 160


def test_filters_and_variants():
    assert ids(["--topologies", "server-nat", "--security", "tls", "--data", "pasv"]) == ["server-nat/tls/pasv"]
    got = ids(["--topologies", "server-nat", "--security", "tls", "--data", "pasv", "--variants",
               "ignore-pasv-address"])
    assert got == ["server-nat/tls/pasv", "server-nat/tls/pasv+ignore-pasv-address"]
    only = ids(["--only-variants", "--variants", "alg-kernel", "--topologies", "client-nat"])
    assert len(only) == 12 and all(i.endswith("+alg-kernel") for i in only)
    combo = ids(["--only-variants", "--variants", "alg-off+ignore-pasv-address", "--topologies", "server-nat",
                 "--security", "tls"])
    assert combo[0] == "server-nat/tls/pasv+alg-off+ignore-pasv-address" and len(combo) == 4


def test_other_endpoints_only_where_supported():
    curl = ids(["--topologies", "lan", "--client", "curl"])
    assert len(curl) == 16 and all(i.endswith("+curl") for i in curl)
    assert not any("/implicit-zos/" in i for i in curl)
    vs = ids(["--topologies", "lan", "--server", "vsftpd"])
    assert not any("/tls-ccc/" in i for i in vs) and len(vs) == 12


def test_user_topology_file(tmp_path):
    src = (scenario.SCENARIO_DIR.parent / "topologies" / "static-filter.yaml").read_text()
    f = tmp_path / "edge.yaml"
    f.write_text(src.replace("name: static-filter", "name: edge"))
    cells, paths = _select(args(["--topologies", str(f), "--security", "plain"]), S)
    assert [c.id for c in cells] == [f"edge/plain/{d}" for d in ("pasv", "epsv", "port", "eprt")]
    assert paths == {"edge": str(f.resolve())}


def test_bad_arguments():
    with pytest.raises(InputError, match="--topologies: no topology named 'moon-base'; shipped: client-nat"):
        ids(["--topologies", "moon-base"])
    with pytest.raises(InputError, match="unknown variation"):
        ids(["--variants", "warp-drive"])
    with pytest.raises(SystemExit):
        ids(["--security", "ssl"])


def test_recommend_without_running(capsys):
    assert cli.main(["recommend", "static-filter-nat", "--no-run"]) == 0
    out = capsys.readouterr().out
    assert "recommended: tls/epsv" in out and "step 3" in out and "predicted for tls/epsv: pass" in out
    assert cli.main(["recommend", "server-nat", "--no-run"]) == 0
    out = capsys.readouterr().out
    # step 2's EPSV is not forwarded there: the recommendation is a method that passes, and says why
    assert "step 2" in out and "the step's tls/epsv fails" in out and "recommended: tls/eprt" in out
