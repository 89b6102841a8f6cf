"""Pure rule generation: NAT (nat.rules), static filter (firewall.static), the internet
(lab.network.internet), observed drops; and the static filter's model, the same rule matching."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from firewall.section import FilterRule, Firewall
from firewall.static import (
    CHAIN,
    MARK_DEFAULT,
    RULE_MARK_BASE,
    SAVED_MARK_BASE,
    filter_rules,
    match_args,
    matches,
    observe_saved_drops,
    restore_argv,
    verdict,
)
from lab.devkit.observed import RuleSet, drop_chain
from lab.devkit.queues import DROPWATCH
from lab.devkit.types import Flow, PortRange
from lab.devkit.view import InterfaceView, NodeView
from lab.network.internet import MARK_PRIVATE_DESTINATION, PRIVATE_CHAIN, internet_rules
from nat.rules import (
    MARK_NO_HAIRPIN,
    MARK_UNSOLICITED,
    NO_HAIRPIN_CHAIN,
    UNSOLICITED_CHAIN,
    dnat_target,
    nat_rules,
)
from nat.section import Nat, PortForward

SERVER = IPv4Address("10.1.1.10")


def nat_node(forwards=(), masquerade=True, outside="nat-s-eth0") -> NodeView:
    return NodeView("nat-s", interfaces=(
        InterfaceView("nat-s-eth0", IPv4Interface("203.0.113.1/24"), "internet"),
        InterfaceView("nat-s-eth1", IPv4Interface("10.1.1.1/24"), "server"),
    ), section=Nat(outside=outside, masquerade=masquerade, forwards=list(forwards)))


def fwd(ports, to_ports=None, proto="tcp") -> PortForward:
    ports = PortRange(*ports)
    return PortForward(proto, ports, SERVER, PortRange(*to_ports) if to_ports else ports)


def test_masquerade_leaves_through_the_outside_interface():
    rules = nat_rules(nat_node()).iptables
    assert ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "nat-s-eth0", "-j", "MASQUERADE"] in rules


def test_no_masquerade_no_postrouting_rule():
    assert not [r for r in nat_rules(nat_node(masquerade=False)).iptables if "POSTROUTING" in r]


def test_single_port_forward_to_the_inside_host():
    rules = nat_rules(nat_node([fwd((21, 21))])).iptables
    assert ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", "nat-s-eth0", "-d", "203.0.113.1", "-p", "tcp",
            "--dport", "21", "-j", "DNAT", "--to-destination", "10.1.1.10"] in rules


def test_nat_loopback_on_forwards_and_masquerades_inside_connections():
    view = nat_node([fwd((21, 21))])
    view = replace(view, section=replace(view.section, hairpin=True))
    got = nat_rules(view)
    assert ["iptables", "-t", "nat", "-A", "PREROUTING", "!", "-i", "nat-s-eth0", "-d", "203.0.113.1", "-p", "tcp",
            "--dport", "21", "-j", "DNAT", "--to-destination", "10.1.1.10"] in got.iptables
    assert ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "nat-s-eth1", "-s", "10.1.1.0/24", "-m", "conntrack",
            "--ctstate", "DNAT", "-j", "MASQUERADE"] in got.iptables
    assert MARK_NO_HAIRPIN not in got.reasons


def test_nat_loopback_off_drops_inside_connections_to_the_public_address_by_name():
    got = nat_rules(nat_node([fwd((21, 21))]))
    assert ["iptables", "-A", "INPUT", "!", "-i", "nat-s-eth0", "-d", "203.0.113.1", "-p", "tcp", "-m", "conntrack",
            "--ctstate", "NEW", "-j", NO_HAIRPIN_CHAIN] in got.iptables
    assert "hairpin: true" in got.reasons[MARK_NO_HAIRPIN]
    assert not [r for r in nat_rules(nat_node()).iptables if NO_HAIRPIN_CHAIN in r]     # nothing forwarded


def test_forwarded_range_keeps_each_port():
    rules = nat_rules(nat_node([fwd((60000, 60100))])).iptables
    [rule] = [r for r in rules if "--to-destination" in r]
    assert rule[rule.index("--dport") + 1] == "60000:60100"
    assert rule[-1] == "10.1.1.10"   # identity: no port given, the kernel keeps it


@pytest.mark.parametrize("ports,to_ports,expected", [
    ((2121, 2121), (21, 21), "10.1.1.10:21"),
    ((61000, 61100), (60000, 60100), "10.1.1.10:60000-60100/61000"),
])
def test_shifted_forwards(ports, to_ports, expected):
    assert dnat_target(fwd(ports, to_ports)) == expected


def test_forward_ranges_of_different_size_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        nat_rules(nat_node([fwd((60000, 60100), (60000, 60001))]))


def test_unknown_outside_interface_is_named():
    with pytest.raises(ValueError, match="eth9"):
        nat_rules(nat_node(outside="eth9"))


def test_unsolicited_inbound_goes_to_dropwatch_with_its_reason():
    ruleset = nat_rules(nat_node([fwd((21, 21))]))
    assert set(ruleset.reasons) == {MARK_UNSOLICITED, MARK_NO_HAIRPIN}     # and the inside's way in, named
    assert "not forwarded" in ruleset.reasons[MARK_UNSOLICITED]
    jumps = [r for r in ruleset.iptables if r[-2:] == ["-j", UNSOLICITED_CHAIN]]
    assert {r[2] for r in jumps} == {"INPUT", "FORWARD"}
    forward = [r for r in jumps if r[2] == "FORWARD"]
    assert all(["!", "--ctstate", "DNAT"] == r[r.index("!"):r.index("!") + 3] for r in forward), \
        "forwarded (DNATed) connections must not be dropped"
    # the chain is created before it is used
    create = ruleset.iptables.index(["iptables", "-t", "filter", "-N", UNSOLICITED_CHAIN])
    assert create < ruleset.iptables.index(jumps[0])


def test_drop_chain_marks_then_queues_to_dropwatch():
    assert drop_chain("c", 7, table="mangle") == [
        ["iptables", "-t", "mangle", "-N", "c"],
        ["iptables", "-t", "mangle", "-A", "c", "-j", "MARK", "--set-mark", "7"],
        ["iptables", "-t", "mangle", "-A", "c", "-j", "NFQUEUE", "--queue-num", str(DROPWATCH)],
    ]


def test_internet_drops_private_destinations_before_routing():
    ruleset = internet_rules()
    assert ruleset.reasons == {MARK_PRIVATE_DESTINATION: "private address not routed on the internet"}
    jumps = [r for r in ruleset.iptables if r[-1] == PRIVATE_CHAIN and "-d" in r]
    assert {r[r.index("-d") + 1] for r in jumps} == {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
    assert all(r[1:5] == ["-t", "mangle", "-A", "PREROUTING"] for r in jumps)


def test_ruleset_refuses_a_mark_used_twice():
    a = RuleSet([], {1: "x"})
    with pytest.raises(ValueError, match="twice"):
        a.extend(RuleSet([], {1: "y"}))


# -- static filter --------------------------------------------------------------------------

def slides_filter(default="drop") -> Firewall:
    server = IPv4Network("203.0.113.10/32")
    return Firewall("static", default=default, rules=[
        FilterRule("accept", dst=server, dport=PortRange(21, 21), comment="control", line=10),
        FilterRule("accept", src=server, sport=PortRange(20, 20), line=11),
        FilterRule("drop", proto="any", src=IPv4Network("192.0.2.0/24"), comment="bad net", line=12),
        FilterRule("accept", dst=server, dport=PortRange(60000, 60100), line=13),
    ])


def test_established_first_then_rules_in_order_then_default():
    ruleset = filter_rules(slides_filter())
    chain = [r for r in ruleset.iptables if r[3:5] == ["-A", CHAIN]]
    assert chain[0][5:] == ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    assert [r[-1] for r in chain[1:]] == ["ACCEPT", "ACCEPT", "ftlab-fw-rule-3", "ACCEPT", "ftlab-fw-default"]
    assert ["iptables", "-t", "filter", "-A", "FORWARD", "-j", CHAIN] in ruleset.iptables


def test_each_drop_has_its_own_observed_reason():
    reasons = filter_rules(slides_filter()).reasons
    assert set(reasons) == {RULE_MARK_BASE + 3, MARK_DEFAULT}
    assert "rule 3 (line 12): bad net" in reasons[RULE_MARK_BASE + 3]
    assert "default" in reasons[MARK_DEFAULT]


def test_default_accept_has_no_drop_chain():
    ruleset = filter_rules(Firewall("static", default="accept", rules=[]))
    assert ruleset.reasons == {}
    assert ruleset.iptables[-1][-2:] == ["-j", "ACCEPT"]


def test_match_args():
    rule = FilterRule("accept", proto="tcp", src=IPv4Network("198.51.100.0/24"), dport=PortRange(60000, 60100),
                      in_interface="fw-eth0")
    assert match_args(rule) == ["-p", "tcp", "-s", "198.51.100.0/24", "-i", "fw-eth0", "--dport", "60000:60100"]
    assert match_args(FilterRule("drop", proto="any")) == []


@pytest.mark.parametrize("proto", ["any", "icmp"])
def test_ports_without_tcp_or_udp_are_refused(proto):
    with pytest.raises(ValueError, match="line 5"):
        match_args(FilterRule("accept", proto=proto, dport=PortRange(21, 21), line=5))


def test_dynamic_firewall_is_not_a_static_filter():
    with pytest.raises(ValueError):
        filter_rules(Firewall("dynamic"))


def test_restore_argv(tmp_path):
    assert restore_argv(tmp_path / "r", test=True) == ["iptables-restore", "--test", str(tmp_path / "r")]


SAVED = """*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -s 10.9.9.9/32 -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 21 -j ACCEPT
-A FORWARD -p tcp -m comment --comment "no telnet" --dport 23 --jump DROP
COMMIT
"""


def test_saved_ruleset_drops_become_observed_jumps_with_file_and_line():
    text, reasons = observe_saved_drops(SAVED, "fw.rules")
    assert reasons == {SAVED_MARK_BASE + 7: "dropped by fw.rules:7: the FORWARD chain's policy DROP",
                       SAVED_MARK_BASE + 10: 'dropped by fw.rules:10: -A FORWARD -p tcp -m comment '
                                             '--comment "no telnet" --dport 23 --jump DROP'}
    lines = text.splitlines()
    assert "-A PREROUTING -s 10.9.9.9/32 -j DROP" in lines            # other tables as written
    assert lines.index(":ftlab-saved-10 - [0:0]") < lines.index(
        '-A FORWARD -p tcp -m comment --comment "no telnet" --dport 23 -j ftlab-saved-10')
    commit = len(lines) - 1
    assert lines[commit] == "COMMIT" and "-A FORWARD -j ftlab-saved-7" in lines[commit - 5:commit]
    assert f"-A ftlab-saved-10 -j MARK --set-mark {SAVED_MARK_BASE + 10}" in lines


def test_saved_ruleset_without_drops_is_unchanged():
    plain = SAVED.replace(":FORWARD DROP", ":FORWARD ACCEPT").replace("--jump DROP", "-j ACCEPT")
    assert observe_saved_drops(plain, "x") == (plain, {})


# -- the static filter's model: the same fields, read the other way ----------------------------

CLIENT, SERVER_PUBLIC = IPv4Address("198.51.100.10"), IPv4Address("203.0.113.10")


def flow(src=CLIENT, dst=SERVER_PUBLIC, dport=60050, sport=None, proto="tcp", i="fw-eth0", o="fw-eth1") -> Flow:
    return Flow(proto, src, dst, dport, sport, i, o)


def test_verdict_first_match_wins_then_the_default():
    fw = slides_filter()
    assert verdict(fw, flow(dport=21)) == ("accept", 1)
    assert verdict(fw, flow(dport=60050)) == ("accept", 4)
    assert verdict(fw, flow(src=IPv4Address("192.0.2.7"), dport=60050)) == ("drop", 3)     # bad net first
    assert verdict(fw, flow(dport=22)) == ("drop", None)
    assert verdict(fw, flow(src=SERVER_PUBLIC, dst=CLIENT, dport=40000, sport=20)) == ("accept", 2)
    assert verdict(fw, flow(src=SERVER_PUBLIC, dst=CLIENT, dport=40000)) == ("drop", None)   # sport unknown
    assert verdict(fw, flow(dport=21, proto="udp")) == ("drop", None)


def test_verdict_honours_interfaces():
    """The kernel matches -i/-o: so does the model (prediction used to ignore them)."""
    rule = FilterRule("accept", dport=PortRange(21, 21), in_interface="fw-eth0", out_interface="fw-eth1")
    assert matches(rule, flow(dport=21))
    assert not matches(rule, flow(dport=21, i="fw-eth1", o="fw-eth0"))
    assert not matches(rule, flow(dport=21, i=None, o=None))


RULES = [FilterRule("accept", proto="tcp", src=IPv4Network("198.51.100.0/24"), dport=PortRange(60000, 60100),
                    in_interface="fw-eth0"),
         FilterRule("drop", proto="udp", dst=IPv4Network("203.0.113.0/24"), sport=PortRange(53, 53),
                    out_interface="fw-eth1"),
         FilterRule("accept", proto="any")]


@pytest.mark.parametrize("rule", RULES)
def test_every_field_the_rule_sets_is_in_its_iptables_match_and_in_its_model(rule):
    """One table of fields (firewall.static.FIELDS) makes both: a flow that differs from a match in
    one set field is not matched, and that field is in the iptables arguments."""
    base = Flow(rule.proto if rule.proto != "any" else "tcp",
                rule.src.network_address if rule.src else CLIENT, rule.dst.network_address if rule.dst else SERVER_PUBLIC,
                rule.dport.low if rule.dport else 1, rule.sport.low if rule.sport else 2,
                rule.in_interface or "x", rule.out_interface or "y")
    assert matches(rule, base)
    args = match_args(rule)
    wrong = {"proto": "icmp", "src": IPv4Address("192.0.2.1"), "dst": IPv4Address("192.0.2.2"), "dport": 7,
             "sport": 8, "in_interface": "other", "out_interface": "other"}
    option = {"proto": "-p", "src": "-s", "dst": "-d", "dport": "--dport", "sport": "--sport",
              "in_interface": "-i", "out_interface": "-o"}
    for name, value in wrong.items():
        is_set = getattr(rule, name) is not None and getattr(rule, name) != "any"
        assert (option[name] in args) == is_set, name
        assert matches(rule, replace(base, **{name: value})) != is_set, name


def test_saved_ruleset_with_counters_names_its_drops():
    # `iptables-save -c` writes [packets:bytes] before each rule and chain: the drops are the same.
    counted = SAVED.replace("-A FORWARD -p tcp -m comment", "[5:300] -A FORWARD -p tcp -m comment")
    text, reasons = observe_saved_drops(counted, "fw.rules")
    assert set(reasons) == {SAVED_MARK_BASE + 7, SAVED_MARK_BASE + 10}
    assert reasons[SAVED_MARK_BASE + 10].startswith("dropped by fw.rules:10: -A FORWARD -p tcp")
    assert '[5:300] -A FORWARD -p tcp -m comment --comment "no telnet" --dport 23 -j ftlab-saved-10' \
        in text.splitlines()
