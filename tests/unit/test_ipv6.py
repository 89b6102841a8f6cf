"""IPv6 and dual stack without a network: topology files, the routing walk, the devices' IPv6
rules and the prediction of an IPv6 picture (tests/net: the same with real packets)."""

from __future__ import annotations

import ipaddress

import pytest

from lab import TOPOLOGY_DIR
from lab.errors import InputError
from lab.matrix import scenario
from lab.matrix.predict import predict
from lab.topology import devices, routing
from lab.topology import loader as topo

A = ipaddress.ip_address
V6 = TOPOLOGY_DIR / "examples" / "ipv6-firewall.yaml"

DUAL = """\
name: dual
description: a dual-stack LAN
ftp: {client: client, server: server}
nodes:
  client: {kind: host, gateway: [192.0.2.1, 2001:db8:1::1]}
  r: {kind: router}
  server: {kind: host, gateway: [198.51.100.1, "2001:db8:2::1"]}
links:
  - {client: [192.0.2.10/24, 2001:db8:1::10/64], r: [192.0.2.1/24, 2001:db8:1::1/64]}
  - {r: [198.51.100.1/24, 2001:db8:2::1/64], server: [198.51.100.10/24, 2001:db8:2::10/64]}
"""


def test_dual_stack_link_ends_routes_and_the_ipv6_dial():
    t = topo.loads(DUAL, "dual.yaml")
    c = t.nodes["client"].interfaces[0]
    assert (str(c.address), str(c.address6)) == ("192.0.2.10/24", "2001:db8:1::10/64")
    assert [str(r.destination) for r in t.nodes["client"].routes] == ["0.0.0.0/0", "::/0"]
    assert t.ftp.server_address == A("198.51.100.10") and t.ftp.server_address6 == A("2001:db8:2::10")
    assert t.families == (4, 6) and t.server_address_of(6) == A("2001:db8:2::10")
    six = routing.trace(t, "client", A("2001:db8:2::10"), 21)
    assert six.hops == ["client", "r", "server"] and six.source == A("2001:db8:1::10")
    assert routing.control_connection(t) == []


@pytest.mark.parametrize("change, problem", [
    ("r: [192.0.2.1/24, 2001:db8:1::1/64]}", None),
    ("r: 192.0.2.1/24}", "the two ends must carry the same IP versions"),
    ("r: [192.0.2.1/24, 2001:db8:9::1/64]}", "the two ends are on different subnets"),
    ("r: [192.0.2.1/24, 2001:db8:1::1/64, 2001:db8:1::2/64]}", "a link end has one address, or two"),
    ("r: [192.0.2.1/24, fe80::1/64]}", "is not a unicast interface address"),
])
def test_link_end_problems(change, problem):
    text = DUAL.replace("r: [192.0.2.1/24, 2001:db8:1::1/64]}", change, 1)
    if problem is None:
        topo.loads(text, "dual.yaml")
        return
    with pytest.raises(InputError, match=problem.replace("(", r"\(")):
        topo.loads(text, "dual.yaml")


def test_server_address6_must_lead_to_the_server_and_be_ipv6():
    with pytest.raises(InputError, match="ftp.server_address6: 198.51.100.10 is an IPv4 address; expected IPv6"):
        topo.loads(DUAL.replace("server: server}", "server: server, server_address6: 198.51.100.10}"), "d.yaml")
    with pytest.raises(InputError, match="ftp.server_address6: 2001:db8:2::99: no node has this address"):
        topo.loads(DUAL.replace("server: server}", "server: server, server_address6: 2001:db8:2::99}"), "d.yaml")


def test_the_internet_routes_no_unique_local_prefix():
    text = V6.read_text().replace("- {to: 2001:db8:2::/64, via: 2001:db8:ff::1}", "- {to: fd00::/8, via: 2001:db8:ff::1}")
    with pytest.raises(InputError, match=r"fd00::/8 is private \(IPv6 unique-local\)"):
        topo.loads(text, str(V6), V6)


def test_the_dynamic_filter_programs_both_families_with_neighbour_discovery():
    t = topo.load(V6)
    [(_, setup)] = [(d, s) for d, s in devices.setups(t.nodes["fw"], t, TOPOLOGY_DIR / "e.jsonl") if d.name == "dynamic"]
    lines = [" ".join(a) for a in setup.iptables]
    assert any(x.startswith("ip6tables -t mangle -A DYNFW") and "NFQUEUE --queue-num 21" in x for x in lines)
    assert "ip6tables -t mangle -A DYNFW -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT" in lines
    # the link's own ICMPv6 (listener reports from link-local addresses) is no connection to drop
    assert "ip6tables -t mangle -A DYNFW -p ipv6-icmp -s fe80::/10 -j ACCEPT" in lines
    assert lines.index("ip6tables -t mangle -A DYNFW -p ipv6-icmp -d ff02::/16 -j ACCEPT") < \
        lines.index("ip6tables -t mangle -A DYNFW -j NFQUEUE --queue-num 21")


def test_an_ipv6_picture_predicts_epsv_and_eprt_and_refuses_pasv_and_port():
    scen = scenario.load()
    t = topo.load(V6)
    picture = scenario.Picture(name=t.name, model=t)

    def cell(security, data):
        return predict(scen, scenario.Cell(str(V6), security, data), picture)

    p = cell("plain", "pasv")
    assert (p.outcome, p.stage, p.device) == ("fail", "data-setup", "server") and "522" in p.reason
    p = cell("plain", "port")            # the client sends no PORT it cannot fill
    assert (p.outcome, p.stage, p.device) == ("fail", "data-setup", None) and "EPRT" in p.reason
    assert cell("plain", "epsv").outcome == cell("plain", "eprt").outcome == "pass"
    assert cell("tls-ccc", "eprt").outcome == "pass"
    assert cell("tls", "epsv").key == ("fail", "data-connect", "fw")


def _setups(name: str, node: str, alg: str | None = None) -> dict:
    t = topo.load(name)
    return {d.name: s for d, s in devices.setups(t.nodes[node], t, TOPOLOGY_DIR / "e.jsonl", alg_mode=alg)}


def test_nat66_beside_nat44_with_the_forwards_ipv6_twins():
    lines = [" ".join(a) for a in _setups("server-nat", "nat-s")["nat"].iptables]
    assert "ip6tables -t nat -A POSTROUTING -o nat-s-eth0 -j MASQUERADE" in lines
    assert ("ip6tables -t nat -A PREROUTING -i nat-s-eth0 -d 2001:db8:5::1 -p tcp --dport 21 -j DNAT "
            "--to-destination fd00:5::10") in lines
    assert any(x.startswith("ip6tables -A FORWARD -i nat-s-eth0 -p tcp -m conntrack --ctstate NEW") for x in lines)
    helper = [" ".join(a) for a in _setups("server-nat", "nat-s", "kernel")["kernel-helper"].iptables]
    assert "ip6tables -t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp" in helper
    alg = _setups("server-nat", "nat-s")["alg"]
    assert alg.config["outside_address6"] == "2001:db8:5::1"
    assert ["nft", "add table ip6 ftlab_alg"] in alg.iptables


def test_static_rules_go_to_the_family_of_their_addresses():
    lines = [" ".join(a) for a in _setups("static-filter", "fw")["static"].iptables]
    v4 = [x for x in lines if "-A ftlab-filter" in x and "203.0.113.10" in x]
    v6 = [x for x in lines if "-A ftlab-filter" in x and "2001:db8:5::10" in x]
    assert len(v4) == len(v6) == 4
    assert all(x.startswith("iptables ") for x in v4) and all(x.startswith("ip6tables ") for x in v6)
    assert "ip6tables -t filter -A ftlab-filter -j ftlab-fw-default" in lines     # the default, both families


def test_the_alg_rewrites_eprt_over_ipv6_to_its_outside_ipv6_address():
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6

    from lab.devkit.events import EventWriter
    from lab.devkit.tcpseg import ACK, PSH, SYN, parse
    from nat.alg import AlgEngine, Mappings

    class Kernel:
        def __init__(self):
            self.installed = []

        def install(self, m, outside, lifetime=30.0):
            self.installed.append(m.key(outside))

        def remove(self, m, outside):
            pass

        def waiting(self, outside):
            return set()

    inside, server, out6 = "fd00:1::10", "2001:db8:5::10", "2001:db8:c::1"
    events, kernel = EventWriter(None, "nat-c"), Kernel()
    alg = AlgEngine("nat-c", "198.51.100.1", [21], events, Mappings("198.51.100.1", events, kernel=Kernel()),
                    v6=(out6, Mappings(out6, events, kernel=kernel)))

    def seg(flags, seq, payload=b""):
        return parse(bytes(IPv6(src=inside, dst=server) / TCP(sport=40000, dport=21, flags=flags, seq=seq, ack=1)
                           / payload))

    alg.process(seg(SYN, 0), from_outside=False)
    verdict = alg.process(seg(ACK | PSH, 1, b"EPRT |2|fd00:1::10|50000|\r\n"), from_outside=False)
    out = parse(verdict.packet)
    assert out.version == 6 and out.payload == b"EPRT |2|2001:db8:c::1|50000|\r\n"
    assert kernel.installed == [f"{server} . {out6} . 50000"]


# -- the endpoints over IPv6 (loopback ::1) ----------------------------------------------------------

def _v6_loopback() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _v6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_session_uses_epsv_and_eprt_and_refuses_pasv_and_port(tmp_path):
    from ftps_fixtures import RawControl

    from lab.ftps.client import FTPClient, FTPError
    from lab.ftps.config import ServerConfig
    from lab.ftps.server import FTPServer

    (tmp_path / "f.bin").write_bytes(b"x" * 1000)
    srv = FTPServer(ServerConfig(LOGINDELAY=0), tmp_path, {"alice": "pw"}, listen=("::1", 0)).start()
    try:
        port = srv.address[1]
        raw = RawControl(("::1", port))
        raw.login()
        assert raw.cmd("PASV").code == 522 and "Use EPSV" in raw.cmd("PASV").lines[-1]
        assert raw.cmd("PORT 127,0,0,1,4,1").code == 522
        assert raw.cmd("EPRT |1|127.0.0.1|1025|").code == 522          # IPv4 in EPRT on an IPv6 session
        assert raw.cmd("EPSV").code == 229
        raw.close()
        for data in ("epsv", "eprt"):
            with FTPClient(security="plain", data=data) as c:
                c.connect("::1", port)
                c.login("alice", "pw")
                assert c.get("f.bin", tmp_path / f"{data}.bin").bytes == 1000
        with FTPClient(security="plain", data="port") as c, pytest.raises(FTPError) as err:
            c.connect("::1", port)
            c.login("alice", "pw")
            c.get("f.bin", tmp_path / "port.bin")
        assert err.value.stage == "data-setup" and "EPRT" in err.value.reason
    finally:
        srv.close()
