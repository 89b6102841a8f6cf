"""1:1 static NAT and port forwards on public addresses of the NAT's own, without a network: the
loader's checks, the kernel rules, the routing walk and the NAT's model."""

from __future__ import annotations

import ipaddress

import pytest

from lab import TOPOLOGY_DIR
from lab.errors import InputError
from lab.topology import devices, routing
from lab.topology import loader as topo

EXAMPLE = TOPOLOGY_DIR / "examples" / "one-to-one-nat.yaml"
A = ipaddress.ip_address


def load_text(text: str):
    return topo.loads(text, str(EXAMPLE), EXAMPLE)


def problems(text: str) -> str:
    with pytest.raises(InputError) as exc:
        load_text(text)
    return str(exc.value)


def test_example_loads_and_the_client_dials_the_servers_own_public_address():
    t = topo.load(EXAMPLE)
    nat = t.nodes["nat-s"].nat
    assert nat.public_addresses() == [A("203.0.113.20"), A("203.0.113.30")]
    assert nat.inside_of(A("203.0.113.20")) == A("10.1.1.10") and nat.public_of(A("10.1.1.10")) == A("203.0.113.20")
    assert t.owner_of(A("203.0.113.20")).name == "nat-s"
    there = routing.trace(t, "client", A("203.0.113.20"), 21)
    assert there.hops == ["client", "internet", "nat-s", "server"] and there.steps[-1].dst == A("10.1.1.10")
    assert routing.trace(t, "client", A("203.0.113.20"), 60123).hops[-1] == "server"    # every port
    assert routing.trace(t, "client", A("203.0.113.30"), 21).hops[-1] == "ftp2"
    assert routing.trace(t, "client", A("203.0.113.30"), 22).hops[-1] == "nat-s"        # forwarded: 21 only
    out = routing.trace(t, "server", A("198.51.100.10"), 40000)
    assert out.source == A("203.0.113.20")                  # the server leaves as its own public address
    assert routing.trace(t, "ftp2", A("198.51.100.10"), 40000).source == A("203.0.113.1")   # masqueraded
    assert routing.control_connection(t) == []


def test_kernel_rules_hold_the_addresses_and_translate_both_ways():
    t = topo.load(EXAMPLE)
    [(_, setup)] = [(d, s) for d, s in devices.setups(t.nodes["nat-s"], t, EXAMPLE.parent / "e.jsonl",
                                                       programs=False) if d.name == "nat"]
    argvs = [" ".join(a) for a in setup.iptables]
    assert argvs[:2] == ["ip addr add 203.0.113.20/24 dev nat-s-eth0", "ip addr add 203.0.113.30/24 dev nat-s-eth0"]
    dnat = "iptables -t nat -A PREROUTING -i nat-s-eth0 -d 203.0.113.20 -j DNAT --to-destination 10.1.1.10"
    snat = "iptables -t nat -A POSTROUTING -o nat-s-eth0 -s 10.1.1.10 -j SNAT --to-source 203.0.113.20"
    masq = "iptables -t nat -A POSTROUTING -o nat-s-eth0 -j MASQUERADE"
    assert argvs.index(dnat) < argvs.index(snat) < argvs.index(masq)          # SNAT before MASQUERADE
    assert ("iptables -t nat -A PREROUTING -i nat-s-eth0 -d 203.0.113.30 -p tcp --dport 21 -j DNAT "
            "--to-destination 10.1.2.11") in argvs


def test_the_nat_model_forwards_public_addresses_and_names_the_source():
    t = topo.load(EXAMPLE)
    nat, model, outside = t.nodes["nat-s"].nat, devices.model("nat"), A("203.0.113.1")
    assert model.forward(nat, outside, "nat-s-eth0", "tcp", A("203.0.113.20"), 61000) == (A("10.1.1.10"), 61000)
    assert model.forward(nat, outside, "nat-s-eth0", "tcp", A("203.0.113.30"), 21) == (A("10.1.2.11"), 21)
    assert model.forward(nat, outside, "nat-s-eth0", "tcp", A("203.0.113.30"), 990) is None
    assert model.forward(nat, outside, "nat-s-eth0", "tcp", outside, 21) is None     # no forward on .1
    assert model.source(nat, "nat-s-eth0", A("10.1.1.10"), outside) == A("203.0.113.20")
    assert model.source(nat, "nat-s-eth0", A("10.1.2.11"), outside) == outside
    assert model.source(nat, "nat-s-eth1", A("10.1.1.10"), outside) is None


@pytest.mark.parametrize("change, problem", [
    ("{public: 203.0.113.20, to: 10.1.1.10}", None),
    ("{public: 198.51.100.20, to: 10.1.1.10}", "198.51.100.20 is not on nat-s-eth0's subnet 203.0.113.0/24"),
    ("{public: 203.0.113.254, to: 10.1.1.10}", "203.0.113.254 is internet's interface address"),
    ("{public: 203.0.113.30, to: 10.1.1.10}", None),   # clashes with the forward below: reported there
    ("{public: 203.0.113.20, to: 198.51.100.10}", "198.51.100.10 (client) is not inside nat-s: a 1:1 NAT"),
    ("{public: 203.0.113.20}", "missing required key 'to'"),
])
def test_one_to_one_problems(change, problem):
    text = EXAMPLE.read_text().replace("{public: 203.0.113.20, to: 10.1.1.10}", change)
    if change == "{public: 203.0.113.30, to: 10.1.1.10}":
        assert "203.0.113.30 is already nat-s's 1:1 address" in problems(text)
    elif problem is None:
        load_text(text)
    else:
        assert problem in problems(text)


def test_server_address_must_lead_to_the_server():
    text = EXAMPLE.read_text()
    assert "203.0.113.30 belongs to nat-s, which does not forward tcp port 21 or 990 to the FTP server" in \
        problems(text.replace("server_address: 203.0.113.20", "server_address: 203.0.113.30"))
    assert "203.0.113.40: no node has this address" in \
        problems(text.replace("server_address: 203.0.113.20", "server_address: 203.0.113.40"))
    twice = text.replace("        - {public: 203.0.113.20, to: 10.1.1.10}     # the FTP server, every port both ways",
                         "        - {public: 203.0.113.20, to: 10.1.1.10}\n        - {public: 203.0.113.21, to: 10.1.1.10}")
    assert "10.1.1.10 has a public address already (203.0.113.20" in problems(twice)

