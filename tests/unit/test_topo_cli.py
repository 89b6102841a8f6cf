"""`ftlab topo list|show|check`, and every kind of bad file giving exit 2 with file:line."""

from __future__ import annotations

import pytest

from lab.cli import main
from lab.topology import loader as topo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A valid file; each case below breaks it in one place.
BASE = """\
name: t
description: server behind NAT, for breaking
ftp:
  client: client
  server: server
  server_address: 203.0.113.1
nodes:
  client: {kind: host, gateway: 198.51.100.254}
  internet: {kind: router}
  nat-s:
    kind: router
    routes:
      - {to: default, via: 203.0.113.254}
    nat:
      outside: internet
      forwards:
        - {proto: tcp, ports: 21, to: 10.1.1.10}
        - {proto: tcp, ports: 60000-60100, to: 10.1.1.10}
  server: {kind: host, gateway: 10.1.1.1}
links:
  - {client: 198.51.100.10/24, internet: 198.51.100.254/24}
  - {internet: 203.0.113.254/24, nat-s: 203.0.113.1/24}
  - {nat-s: 10.1.1.1/24, server: 10.1.1.10/24}
"""

# (id, line reported, text to replace, replacement, field reported, words in the message)
CASES = [
    ("unknown-node-in-link", 23, "{nat-s: 10.1.1.1/24, server:", "{nat-s: 10.1.1.1/24, srever:",
     "links[2].srever", "unknown node 'srever' (did you mean 'server'?)"),
    ("duplicate-address", 23, "server: 10.1.1.10/24}", "server: 10.1.1.1/24}",
     "links[2].server", "duplicate address 10.1.1.1 (also nat-s's, line 23)"),
    ("overlapping-subnet", 23, "{nat-s: 10.1.1.1/24, server: 10.1.1.10/24}",
     "{nat-s: 198.51.0.1/16, server: 198.51.0.10/16}", "links[2]", "overlaps 198.51.100.0/24"),
    ("reversed-port-range", 18, "ports: 60000-60100", "ports: 60100-60000",
     "nodes.nat-s.nat.forwards[1].ports", "reversed port range"),
    ("unknown-key", 12, "    kind: router\n    routes:", "    kind: router\n    colour: red\n    routes:",
     "nodes.nat-s.colour", "unknown key"),
    ("misspelt-key", 16, "      forwards:", "      forwrads:", "nodes.nat-s.nat.forwrads", "did you mean 'forwards'"),
    ("bad-address", 21, "198.51.100.10/24", "198.51.100.310/24", "links[0].client", "bad address"),
    ("address-without-prefix", 21, "client: 198.51.100.10/24", "client: 198.51.100.10",
     "links[0].client", "ADDRESS/PREFIXLEN"),
    ("network-address", 23, "server: 10.1.1.10/24}", "server: 10.1.1.0/24}", "links[2].server",
     "network address of 10.1.1.0/24"),
    ("missing-required-field", 8, "  client: {kind: host, gateway", "  client: {gateway",
     "nodes.client", "missing required key 'kind'"),
    ("missing-top-level-field", 1, "description: server behind NAT, for breaking\n", "",
     "(top level)", "missing required key 'description'"),
    ("route-via-unconnected", 13, "via: 203.0.113.254}", "via: 192.0.2.1}", "nodes.nat-s.routes[0].via",
     "not on a subnet connected to nat-s"),
    ("gateway-unconnected", 19, "gateway: 10.1.1.1}", "gateway: 10.2.2.1}", "nodes.server.gateway",
     "not on a subnet connected to server"),
    ("forward-not-inside", 17, "ports: 21, to: 10.1.1.10}", "ports: 21, to: 198.51.100.10}",
     "nodes.nat-s.nat.forwards[0].to", "not inside nat-s"),
    ("forward-to-nobody", 17, "ports: 21, to: 10.1.1.10}", "ports: 21, to: 10.1.1.99}",
     "nodes.nat-s.nat.forwards[0].to", "no node has this address"),
    ("bad-port", 17, "ports: 21,", "ports: 70000,", "nodes.nat-s.nat.forwards[0].ports", "bad port"),
    ("overlapping-forwards", 18, "ports: 60000-60100", "ports: 1-100", "nodes.nat-s.nat.forwards[1]",
     "overlap the forward"),
    ("bad-alg", 16, "      outside: internet", "      outside: internet\n      alg: magic", "nodes.nat-s.nat.alg",
     "not one of: scapy, kernel, kernel-nft, off"),
    ("bad-outside", 15, "      outside: internet", "      outside: eth7", "nodes.nat-s.nat.outside",
     "not an interface of nat-s"),
    ("bad-kind", 9, "  internet: {kind: router}", "  internet: {kind: switch}", "nodes.internet.kind",
     "not one of: host, router"),
    ("internet-default-route", 9, "  internet: {kind: router}", "  internet: {kind: router, gateway: 198.51.100.10}",
     "nodes.internet.gateway", "no default route"),
    ("internet-private-route", 9, "  internet: {kind: router}",
     "  internet: {kind: router, routes: [{to: 10.0.0.0/8, via: 203.0.113.1}]}",
     "nodes.internet.routes[0].to", "private (RFC 1918)"),
    ("server-address-not-forwarded", 6, "server_address: 203.0.113.1", "server_address: 203.0.113.254",
     "ftp.server_address", "does not forward tcp port 21"),
    ("ftp-server-is-router", 5, "  server: server\n", "  server: nat-s\n", "ftp.server",
     "the FTP server runs on a host"),
    ("link-with-three-ends", 21, "  - {client: 198.51.100.10/24, internet: 198.51.100.254/24}",
     "  - {client: 198.51.100.10/24, internet: 198.51.100.254/24, server: 198.51.100.9/24}",
     "links[0]", "exactly two nodes"),
    ("ends-on-different-subnets", 21, "internet: 198.51.100.254/24}", "internet: 198.51.99.254/24}",
     "links[0]", "different subnets"),
    ("duplicate-key", 20, "  server: {kind: host, gateway: 10.1.1.1}\n",
     "  server: {kind: host, gateway: 10.1.1.1}\n  server: {kind: host}\n", "", "duplicate key 'server'"),
    ("node-name-too-long", 9, "{kind: host, gateway: 198.51.100.254}",
     "{kind: host, gateway: 198.51.100.254}\n  a-very-long-name: {kind: host}", "nodes.a-very-long-name",
     "name too long"),
    ("statement-name", 7, "  server_address: 203.0.113.1",
     "  server_address: 203.0.113.1\n  server_statements: {passivedataports: x}",
     "ftp.server_statements.passivedataports", "upper case"),
    ("unknown-statement", 7, "  server_address: 203.0.113.1",
     "  server_address: 203.0.113.1\n  server_statements: {PASSIVEDATAPORT: (60000,60100)}",
     "ftp.server_statements.PASSIVEDATAPORT", "unknown statement PASSIVEDATAPORT"),
    ("bad-statement-value", 9, "  server_address: 203.0.113.1",
     "  server_address: 203.0.113.1\n  server_statements:\n    TLSRFCLEVEL: RFC4217\n    PASSIVEDATAPORTS: (60100,60000)",
     "ftp.server_statements.PASSIVEDATAPORTS", "low <= high"),
    ("control-connection-lost", 3, "  client: {kind: host, gateway: 198.51.100.254}", "  client: {kind: host}",
     "ftp", "at client: no route to 203.0.113.1"),
]


def broken(case) -> str:
    old, new = case[2], case[3]
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def test_base_is_valid():
    assert topo.loads(BASE, "base.yaml").path() == ["internet", "nat-s"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_problem_gives_exit_2_and_file_line_field(case, tmp_path, capsys):
    name, line, _, _, field, words = case
    path = tmp_path / f"{name}.yaml"
    path.write_text(broken(case))
    assert main(["topo", "check", str(path)]) == 2
    err = capsys.readouterr().err
    expected = f"{path}:{line}: {field}:" if field else f"{path}:{line}:"
    assert any(ln.startswith(expected) and words in ln for ln in err.splitlines()), err


def test_yaml_syntax_error(tmp_path, capsys):
    path = tmp_path / "syntax.yaml"
    path.write_text(BASE.replace("  internet: {kind: router}", "  internet: {kind: router"))
    assert main(["topo", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:10: YAML syntax error" in err        # where the parser notices the missing }


def test_all_problems_are_reported_together(tmp_path, capsys):
    chosen = [c for c in CASES if c[0] in {"reversed-port-range", "unknown-key", "bad-address", "bad-kind",
                                           "missing-required-field", "route-via-unconnected", "statement-name"}]
    text = BASE
    for case in chosen:
        text = text.replace(case[2], case[3])
    path = tmp_path / "many.yaml"
    path.write_text(text)
    assert main(["topo", "check", str(path)]) == 2
    err = capsys.readouterr().err
    for case in chosen:
        assert case[5] in err, case[0]
    assert err.rstrip().endswith("problems")


def test_show_on_a_bad_file_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("ports: 60000-60100", "ports: 60100-60000"))
    assert main(["topo", "show", str(path)]) == 2
    assert f"{path}:18: nodes.nat-s.nat.forwards[1].ports: reversed port range" in capsys.readouterr().err


def test_check_good_files(capsys):
    files = [str(topo.resolve(n)) for n in topo.names()]
    assert main(["topo", "check", *files]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == 8
    assert "path client → nat-c (nat) → internet → server" in out


def test_list_prints_the_eight_names(capsys):
    assert main(["topo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == topo.names()
    assert all(len(ln.split(maxsplit=1)) == 2 for ln in lines)     # each with a description


@pytest.mark.parametrize("name", topo.names())
def test_show_writes_a_png(name, tmp_path, capsys):
    png = tmp_path / f"{name}.png"
    assert main(["topo", "show", name, "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: ")
    assert "path: client" in out and "the client dials: " in out


def test_show_lists_devices_and_path(capsys):
    assert main(["topo", "show", "double-nat"]) == 0
    out = capsys.readouterr().out
    assert "path: client → nat-c (nat) → internet → nat-s (nat) → server" in out
    assert "nat-s-eth1     10.1.1.1/24" in out
    assert "forward tcp 21 -> 10.1.1.10:21" in out
    assert "the client dials: 203.0.113.1 port 21" in out
    assert "devices on the path: nat-c (nat), nat-s (nat)" in out


def test_show_static_filter_rules(capsys):
    assert main(["topo", "show", "static-filter"]) == 0
    out = capsys.readouterr().out
    assert "4. accept tcp dst 203.0.113.10/32 dport 60000-60100   # passive data range" in out
    assert "default: drop" in out
    assert "server statements: PASSIVEDATAPORTS (60000,60100)" in out


def test_show_unknown_name(capsys):
    assert main(["topo", "show", "nonesuch"]) == 2
    assert "no topology named 'nonesuch'" in capsys.readouterr().err
