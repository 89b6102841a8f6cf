"""The model of an iptables-save ruleset (firewall/saved.py): the documented subset judged as the
kernel would, anything else named by its line - never a guess."""

from __future__ import annotations

import ipaddress

import pytest

from firewall import saved
from lab.devkit.types import Flow, Unreadable

CLIENT, SERVER = ipaddress.ip_address("198.51.100.10"), ipaddress.ip_address("203.0.113.10")

RULES = """\
# a comment
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [12:720]
:OUTPUT ACCEPT [0:0]
:in - [0:0]
:out - [0:0]
[5:300] -A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth+ -o fw-eth1 -d 203.0.113.10/32 -p tcp -j in
-A FORWARD -i fw-eth1 -s 203.0.113.10 -p tcp -g out
-A in -p tcp -m multiport --dports 21,990,60000:60100 -m conntrack --ctstate NEW -j ACCEPT
-A in -p tcp ! --dport 22 -m iprange --src-range 198.51.100.1-198.51.100.9 -j ACCEPT
-A in -p tcp --dport 2121 -m conntrack --ctstate DNAT -j ACCEPT
-A in -p tcp -j REJECT --reject-with tcp-reset
-A out -p tcp -m tcp --sport 20 --syn -j ACCEPT
-A out -p tcp --sport 989 -m set --match-set partners dst -j ACCEPT
-A out -j LOG --log-prefix "out: "
COMMIT
"""


def flow(src=CLIENT, dst=SERVER, dport=21, sport=None, i="eth0", o="fw-eth1", state="NEW", dnat=False):
    return Flow("tcp", src, dst, dport, sport, i, o, state, dnat)


def judge(f: Flow) -> tuple[str, int | None]:
    v = saved.verdict(RULES, f)
    return v.action, v.line


def test_user_chains_multiport_and_policy():
    assert judge(flow(dport=21)) == ("accept", 15)
    assert judge(flow(dport=60050)) == ("accept", 15)
    assert judge(flow(dport=60101)) == ("reject", 18)                       # falls to the REJECT
    assert judge(flow(dport=21, i="wlan0")) == ("drop", 8)                  # -i eth+ does not match: policy
    assert judge(flow(dport=21, state="ESTABLISHED")) == ("accept", 12)
    assert judge(flow(dport=2121, dnat=True)) == ("accept", 17)             # --ctstate DNAT
    # goto: the out chain's end returns from FORWARD's point of view to the policy
    assert judge(flow(SERVER, CLIENT, 40000, 20, "fw-eth1", "fw-eth0")) == ("accept", 19)
    assert judge(flow(SERVER, CLIENT, 40000, 21, "fw-eth1", "fw-eth0")) == ("drop", 8)


def test_negation_and_ranges():
    near = ipaddress.ip_address("198.51.100.5")
    assert judge(flow(near, dport=23)) == ("accept", 16)
    assert judge(flow(near, dport=22)) == ("reject", 18)                   # ! --dport 22


def test_a_rule_outside_the_subset_is_unreadable_only_where_it_decides():
    with pytest.raises(Unreadable) as err:
        judge(flow(SERVER, CLIENT, 40000, 989, "fw-eth1", "fw-eth0"))
    assert err.value.line == 20 and err.value.what == "-m set"
    # the same chain, a connection that never reaches line 20 with its readable matches true
    assert judge(flow(SERVER, CLIENT, 40000, 20, "fw-eth1", "fw-eth0"))[0] == "accept"
    assert saved.unreadable(RULES) == [(20, "-m set")]


@pytest.mark.parametrize("line, what", [
    ("-A FORWARD -p tcp -m recent --name x -j ACCEPT", "-m recent (a --rcheck/--update without --hitcount: it "
                                                       "depends on earlier connections)"),
    ("-A FORWARD -p tcp -j TEE --gateway 192.0.2.1", "-j TEE"),
    ("-A FORWARD -p tcp -j NFQUEUE --queue-num 3", "-j NFQUEUE"),
    ("-A FORWARD -p tcp -m u32 --u32 0x0>>22&0x3C@4=0x29 -j ACCEPT", "-m u32"),
    ("-A FORWARD -p tcp --state BOGUS -j ACCEPT", "--state BOGUS"),
])
def test_what_the_model_does_not_read_is_named(line, what):
    text = f"*filter\n:FORWARD DROP [0:0]\n{line}\nCOMMIT\n"
    assert saved.unreadable(text) == [(3, what)]
    with pytest.raises(Unreadable, match="line 3"):
        saved.verdict(text, flow())


def test_the_nat_table_is_read_as_the_routers_nat():
    assert saved.unreadable(RULES) == [(20, "-m set")]         # its *nat only declares its chains
    text = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1\nCOMMIT\n"
    assert saved.unreadable(text) == []
    assert saved.nat(text, flow()) == saved.Nat("dnat", 3, (ipaddress.ip_address("10.0.0.1"), 21))


def test_port_edges_cover_every_range():
    edges = saved.read(RULES).port_edges
    assert {21, 22, 990, 991, 60000, 60101, 2121, 2122, 20, 989}.issubset(edges)
