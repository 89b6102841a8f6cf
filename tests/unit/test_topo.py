"""The topology loader and the shipped pictures: model contents, paths, validation semantics."""

from __future__ import annotations

import ipaddress

import pytest

from lab import TOPOLOGY_DIR
from lab.errors import InputError
from lab.topology import loader as topo
from lab.topology import routing

EIGHT = ["client-nat", "double-nat", "dynamic-filter", "dynamic-filter-nat", "lan", "server-nat",
         "static-filter", "static-filter-nat"]

# picture -> the devices a packet crosses from client to server, with what each device is
PATHS = {
    "lan": [],
    "client-nat": [("nat-c", ["nat"]), ("internet", [])],
    "server-nat": [("internet", []), ("nat-s", ["nat"])],
    "double-nat": [("nat-c", ["nat"]), ("internet", []), ("nat-s", ["nat"])],
    "static-filter": [("fw", ["static-filter"])],
    "static-filter-nat": [("internet", []), ("fw", ["nat", "static-filter"])],
    "dynamic-filter": [("fw", ["dynamic-filter"])],
    "dynamic-filter-nat": [("internet", []), ("fw", ["nat", "dynamic-filter"])],
}

ip = ipaddress.IPv4Address


def test_names_are_the_eight_pictures():
    assert topo.names() == EIGHT


@pytest.mark.parametrize("name", EIGHT)
def test_path_crosses_the_expected_devices(name):
    t = topo.load(name)
    assert t.name == name
    assert [(n, t.nodes[n].device_kinds()) for n in t.path()] == PATHS[name]
    assert t.ftp.client == "client" and t.ftp.server == "server"
    assert t.description and "\n" not in t.description


@pytest.mark.parametrize("name", EIGHT)
def test_interfaces_follow_mininet_naming_in_link_order(name):
    t = topo.load(name)
    for node in t.nodes.values():
        assert [i.name for i in node.interfaces] == [f"{node.name}-eth{n}" for n in range(len(node.interfaces))]
    for link in t.links:
        a = next(i for i in t.nodes[link.a].interfaces if i.name == link.a_interface)
        b = next(i for i in t.nodes[link.b].interfaces if i.name == link.b_interface)
        assert a.peer == link.b and b.peer == link.a
        assert a.address.network == b.address.network


@pytest.mark.parametrize("name", EIGHT)
def test_internet_routes_only_public_prefixes(name):
    t = topo.load(name)
    has_nat = any(n.nat for n in t.nodes.values())
    assert (t.internet == "internet") == has_nat   # every NAT picture has one
    if t.internet:
        internet = t.nodes[t.internet]
        assert all(not topo.is_private(r.destination) and r.destination.prefixlen > 0 for r in internet.routes)
        assert all(not topo.is_private(i.address.network) for i in internet.interfaces)


def test_passive_range_where_a_filter_or_forwarded_range_is():
    for name in EIGHT:
        t = topo.load(name)
        wants = any(n.firewall for n in t.nodes.values()) or any(
            f.ports.low != f.ports.high for n in t.nodes.values() if n.nat for f in n.nat.forwards)
        assert (t.ftp.server_statements.get("PASSIVEDATAPORTS") == "(60000,60100)") == wants, name


def test_server_nat_details():
    t = topo.load("server-nat")
    nat = t.nodes["nat-s"].nat
    assert nat.outside == "nat-s-eth0" and nat.masquerade and nat.alg == "scapy"
    assert [(f.proto, str(f.ports), f.to) for f in nat.forwards] == [
        ("tcp", "21", ip("10.1.1.10")), ("tcp", "990", ip("10.1.1.10"))]
    assert t.ftp.server_address == ip("203.0.113.1")
    assert t.owner_of(t.ftp.server_address).name == "nat-s"
    assert t.nodes["server"].routes[0].via == ip("10.1.1.1")


def test_static_filter_nat_has_no_alg_and_forwards_the_range():
    fw = topo.load("static-filter-nat").nodes["fw"]
    assert fw.nat.alg == "off"                     # a bare `off` in YAML 1.1 is false: read as text
    assert any(str(f.ports) == "60000-60100" for f in fw.nat.forwards)
    assert fw.firewall.mode == "static" and fw.firewall.default == "drop"


def test_static_filter_rules_are_the_slides_rules():
    fw = topo.load("static-filter").nodes["fw"].firewall
    slides = [("accept", "None", "21"), ("accept", "None", "990"), ("accept", "20", "None"),
              ("accept", "None", "60000-60100")]
    # the slides' four rules for IPv4, and the same four for the server's IPv6 address (dual stack)
    for version in (4, 6):
        rules = [r for r in fw.rules if (r.dst or r.src).version == version]
        assert [(r.action, str(r.sport), str(r.dport)) for r in rules] == slides
    assert all(r.line > 0 for r in fw.rules)


def test_dynamic_filter_opens_only_control_ports():
    fw = topo.load("dynamic-filter").nodes["fw"].firewall
    assert fw.mode == "dynamic" and fw.rules == [] and fw.control_ports == [21, 990]


def test_load_by_path_and_unknown_name(tmp_path):
    assert topo.load(TOPOLOGY_DIR / "lan.yaml").name == "lan"
    with pytest.raises(InputError, match="no topology named 'nope'.*client-nat"):
        topo.load("nope")
    with pytest.raises(InputError, match="no such topology file"):
        topo.load(tmp_path / "missing.yaml")


# -- routing walk ----------------------------------------------------------------------------

def test_private_addresses_do_not_cross_the_internet():
    t = topo.load("double-nat")
    pasv = routing.trace(t, "client", t.address_of("server"), 60000)     # an unrewritten 227
    assert pasv.problem == "at internet: no route to 10.1.1.10"
    port = routing.trace(t, "server", t.address_of("client"), 5000)      # an unrewritten PORT
    assert port.problem == "at internet: no route to 192.168.1.10"


def test_control_connection_is_translated_both_ways():
    t = topo.load("double-nat")
    there = routing.trace(t, "client", t.ftp.server_address, 21)
    assert there.hops == ["client", "nat-c", "internet", "nat-s", "server"]
    assert there.source == ip("198.51.100.1")                            # masqueraded by nat-c
    back = routing.trace(t, "server", there.source, reply_to=there.snat)
    assert back.problem is None and back.hops[-1] == "client"
    assert routing.control_connection(t) == []


def test_forwarded_range_reaches_the_server():
    t = topo.load("static-filter-nat")
    data = routing.trace(t, "client", t.ftp.server_address, 60050)
    assert data.problem is None and data.hops[-1] == "server"
    unforwarded = routing.trace(t, "client", t.ftp.server_address, 5000)
    assert unforwarded.hops[-1] == "fw"                                  # ends at the NAT itself


# -- validation semantics (the CLI tests cover each error kind's file:line) -------------------

GOOD = """\
name: t
description: test
ftp: {client: client, server: server}
nodes:
  client: {kind: host}
  server: {kind: host}
links:
  - {client: 192.168.10.10/24, server: 192.168.10.20/24}
"""


def problems(text: str) -> list:
    with pytest.raises(InputError) as info:
        topo.loads(text, "t.yaml")
    return info.value.problems


def test_minimal_file_loads_and_dials_the_server():
    t = topo.loads(GOOD, "t.yaml")
    assert t.ftp.server_address == ip("192.168.10.20") and t.path() == []


def test_every_problem_is_reported_not_only_the_first():
    text = GOOD.replace("name: t", "name: t\ncolour: red").replace("kind: host}\n  server",
                                                                   "kind: hots}\n  server")
    text = text.replace("192.168.10.20/24", "192.168.10.300/24")
    found = problems(text)
    assert [(p.line, p.field.split(".")[-1]) for p in found] == [(2, "colour"), (6, "kind"), (9, "server")]
    assert all(p.file == "t.yaml" for p in found)


def test_duplicate_keys_are_errors():
    found = problems(GOOD.replace("  server: {kind: host}\n", "  server: {kind: host}\n  server: {kind: host}\n"))
    assert any(p.line == 7 and "duplicate key 'server' (first at line 6)" in p.message for p in found)


def test_overlapping_subnets_on_two_links():
    text = """\
name: t
description: test
ftp: {client: client, server: server}
nodes:
  client: {kind: host, gateway: 10.0.0.1}
  r: {kind: router}
  server: {kind: host, gateway: 10.0.1.1}
links:
  - {client: 10.0.0.10/16, r: 10.0.0.1/16}
  - {r: 10.0.1.1/24, server: 10.0.1.10/24}
"""
    found = problems(text)
    assert [(p.line, p.field) for p in found if "overlaps" in p.message] == [(10, "links[1]")]


def test_iptables_save_file_relative_to_the_yaml(tmp_path):
    rules = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 21 -j ACCEPT\nCOMMIT\n"
    (tmp_path / "fw.rules").write_text(rules)
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text()
    start = text.index("      default: drop")
    end = text.index("  server: {kind: host")
    custom = text[:start] + "      iptables_save: fw.rules\n" + text[end:]
    (tmp_path / "mine.yaml").write_text(custom)
    fw = topo.load(tmp_path / "mine.yaml").nodes["fw"].firewall
    assert fw.iptables_save == (tmp_path / "fw.rules").resolve() and fw.rules == []
    (tmp_path / "fw.rules").unlink()
    with pytest.raises(InputError, match=r"mine.yaml:\d+: nodes.fw.firewall.iptables_save: \S+: no such iptables-save file"):
        topo.load(tmp_path / "mine.yaml")


def test_interface_by_neighbour_or_name_and_permit_synonym():
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace(
        "dport: 21, comment", "dport: 21, in_interface: client, out_interface: fw-eth1, comment").replace(
        "{action: accept, proto: tcp, dst: 203.0.113.10/32, dport: 990", "{action: permit, proto: tcp, "
        "dst: 203.0.113.10, dport: 990")
    fw = topo.loads(text, "x.yaml").nodes["fw"].firewall
    assert (fw.rules[0].in_interface, fw.rules[0].out_interface) == ("fw-eth0", "fw-eth1")
    assert fw.rules[1].action == "accept" and str(fw.rules[1].dst) == "203.0.113.10/32"


def test_unreachable_server_is_reported_with_the_hop():
    text = (TOPOLOGY_DIR / "client-nat.yaml").read_text().replace(
        "  server: {kind: host, gateway: [203.0.113.254, 2001:db8:5::254]}", "  server: {kind: host}")
    found = problems(text)
    assert len(found) == 1 and found[0].field == "ftp"
    assert "reply server → 198.51.100.1: at server: no route to 198.51.100.1" in found[0].message


def test_readme_example_is_valid(tmp_path):
    """The documented format's full example must load: the README cannot drift from the code."""
    readme = (TOPOLOGY_DIR / "README.md").read_text()
    start = readme.index("```yaml\n") + len("```yaml\n")
    example = tmp_path / "example.yaml"
    example.write_text(readme[start:readme.index("```", start)])
    t = topo.load(example)
    assert t.path() == ["internet", "fw"]
    assert [i.name for i in t.nodes["fw"].interfaces] == ["fw-eth0", "fw-eth1", "fw-eth2"]
    assert t.nodes["fw"].nat.forwards[3].to_ports.low == 21


@pytest.mark.parametrize("name", EIGHT)
def test_graph_path_is_the_forwarding_path(name):
    """The path drawn from the graph is the one the routing tables take, both ways."""
    t = topo.load(name)
    there = routing.trace(t, "client", t.ftp.server_address, t.ftp.control_port)
    assert there.problem is None and there.hops == ["client", *t.path(), "server"]
    back = routing.trace(t, "server", there.source, reply_to=there.snat)
    assert back.problem is None and back.hops == ["server", *reversed(t.path()), "client"]


@pytest.mark.parametrize("text, line, words", [
    ("", 1, "the file is empty"),
    ("- a\n- b\n", 1, "expected a mapping"),
    ("name: t\nnodes: {a: [\n", 3, "YAML syntax error"),
])
def test_unreadable_files(text, line, words):
    found = problems(text)
    assert found[0].line == line and words in found[0].message


def test_iptables_range_notation_is_read_as_text():
    """YAML 1.1 would read 1024:65535 as a base-60 number; the loader reads the text."""
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace(
        "dport: 60000-60100", "dport: 60000:60100").replace("sport: 20,", "sport: 20, dport: 1024:65535,")
    rules = topo.loads(text, "x.yaml").nodes["fw"].firewall.rules
    assert (str(rules[2].dport), str(rules[3].dport)) == ("1024-65535", "60000-60100")


@pytest.mark.parametrize("old, new, line, field", [
    ("kind: host}\n  server", "kind: }\n  server", 5, "nodes.client.kind"),
    ("name: t\n", "name:\n", 1, "name"),
])
def test_a_key_without_a_value_is_a_problem_not_a_default(old, new, line, field):
    found = problems(GOOD.replace(old, new))
    assert [(p.line, p.field, p.message) for p in found] == [(line, field, "has no value")]


@pytest.mark.parametrize("port", ["٢١", "2\u00b9"])
def test_port_numbers_are_ascii_digits(port):
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("dport: 60000-60100", f"dport: '{port}'")
    assert any("bad port" in p.message for p in problems(text))


def test_repeated_statements_as_a_list_become_one_ftpdata_line_each():
    from lab.ftps.config import parse_ftpdata_text
    from lab.matrix.worker import ftpdata_text

    text = GOOD.replace("ftp: {client: client, server: server}",
                        "ftp:\n  client: client\n  server: server\n  server_statements:\n"
                        "    CERTUSERMAP: [alice alice, bob-cn bob]\n    EXTENSIONS: [AUTH_TLS, SIZE]")
    t = topo.loads(text, "t.yaml")
    assert t.ftp.server_statements["CERTUSERMAP"] == ["alice alice", "bob-cn bob"]
    cfg = parse_ftpdata_text(ftpdata_text(t.ftp.server_statements))
    assert cfg.CERTUSERMAP == {"alice": "alice", "bob-cn": "bob"} and cfg.EXTENSIONS == {"AUTH_TLS", "SIZE"}
    bad = problems(text.replace("[AUTH_TLS, SIZE]", "[AUTH_TLS, {x: 1}]"))
    assert [(p.line, p.field) for p in bad] == [(8, "ftp.server_statements.EXTENSIONS")]


def test_a_link_end_with_an_empty_address_list_is_named():
    # Found by the parser fuzz in a CI run: `client: []` built no link and no problem.
    text = ("name: lan\nftp: {client: client, server: server}\nnodes:\n  client: {kind: host}\n"
            "  server: {kind: host}\nlinks:\n- client: []\n  server: ['fd00:10::20/64']\n")
    with pytest.raises(InputError) as refused:
        topo.loads(text, "f.yaml")
    assert "f.yaml:7: links[0].client: a link end needs its address" in str(refused.value)
