"""Rulesets as real tools write them (issue 19 item 2): each construct, a cell predicted for a
small ruleset in front of the server. Every test here failed on the model before (unknown cells,
wrong outcomes, an unnamed REJECT); tests/net/test_real_rulesets_run.py runs the example designs."""

from __future__ import annotations

import ipaddress

import pytest

from firewall import saved, static
from lab import TOPOLOGY_DIR
from lab.devkit.types import Flow
from lab.matrix import predict, scenario
from lab.topology import loader

S = scenario.load("default")
EXAMPLES = TOPOLOGY_DIR / "examples"
CLIENT, SERVER = ipaddress.ip_address("198.51.100.10"), ipaddress.ip_address("203.0.113.10")

#: fw-eth0 faces the client, fw-eth1 the server (the iptables-user-chain example's picture)
HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
PERMIT = ("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
          "-A FORWARD -i fw-eth0 -o fw-eth1 -p tcp -m multiport --dports 21,990 -j ACCEPT\n"
          "-A FORWARD -i fw-eth0 -o fw-eth1 -p tcp -m tcp --dport 60000:60100 -j ACCEPT\n"
          "-A FORWARD -i fw-eth1 -o fw-eth0 -p tcp -m tcp --sport 20 -j ACCEPT\n")


def design(tmp_path, rules: str, *, nft: bool = False, extra: str = ""):
    """The iptables-user-chain (or nftables-filter) picture with this ruleset."""
    if nft:
        text = (EXAMPLES / "nftables-filter.yaml").read_text()
        (tmp_path / "nftables-filter.nft").write_text(rules)
    else:
        text = (EXAMPLES / "iptables-user-chain.yaml").read_text()
        (tmp_path / "iptables-user-chain.rules").write_text(rules)
    (tmp_path / "net.yaml").write_text(text.replace("  fw:\n    kind: router\n", "  fw:\n    kind: router\n" + extra))
    return loader.load(tmp_path / "net.yaml")


def cell(model, sec: str, data: str, variant: tuple[str, ...] = ()) -> predict.Prediction:
    return predict.predict(S, scenario.Cell(model.name, sec, data, variant), model=model)


def key(p: predict.Prediction) -> tuple:
    return p.outcome, p.stage, p.device


# -- rules that cannot decide a packet never stop the walk -----------------------------------------

@pytest.mark.parametrize("rule", [
    '-A FORWARD -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "',   # ufw, logging on
    "-A FORWARD -p tcp -j NFLOG --nflog-group 5 --nflog-prefix x",
    "-A FORWARD -m set --match-set watch src -j LOG",                   # an unknown match on a LOG
    "-A FORWARD -p tcp -m recent --set --name DEFAULT --rsource",       # records, decides nothing
    "-A FORWARD -j MARK --set-xmark 0x0/0x0",                           # marks nothing that is matched
    "-A FORWARD -m comment --comment counting",
])
def test_a_rule_that_cannot_decide_is_passed_over(tmp_path, rule):
    model = design(tmp_path, HEAD + rule + "\n" + PERMIT + "COMMIT\n")
    assert key(cell(model, "tls", "pasv")) == ("pass", None, None)
    assert key(cell(model, "implicit", "port")) == ("fail", "data-connect", "fw")      # from 989: the policy
    assert predict.unreadable(model) == []


def test_every_readable_match_is_read_whatever_their_order(tmp_path):
    """-m mark before a --dport false for the cell: it gave up ("uses -m mark"); swapped, it did not."""
    for rule in ("-A FORWARD -m mark --mark 0x1/0xff -p tcp -m tcp --dport 22 -j DROP",
                 "-A FORWARD -p tcp -m tcp --dport 22 -m mark --mark 0x1/0xff -j DROP",
                 # -m mark is false while nothing in the file sets a mark: the --dport 21 rule does not drop
                 "-A FORWARD -m mark --mark 0x1/0xff -p tcp -m tcp --dport 21 -j DROP"):
        model = design(tmp_path, HEAD + rule + "\n" + PERMIT + "COMMIT\n")
        assert key(cell(model, "tls", "epsv")) == ("pass", None, None), rule


def test_an_unknown_match_gives_up_only_where_it_changes_the_cells_verdict(tmp_path):
    rules = HEAD + "-A FORWARD -p tcp -m tcp --dport 990 -m set --match-set bad src -j DROP\n" + PERMIT + "COMMIT\n"
    model = design(tmp_path, rules)
    got = cell(model, "implicit", "pasv")
    assert got.outcome == "unknown" and "iptables-user-chain.rules:5 uses -m set" in got.reason
    assert key(cell(model, "tls", "pasv")) == ("pass", None, None)          # never reaches it
    # true or false, a rule that drops what the policy drops anyway cannot change the verdict
    rules = HEAD + PERMIT + "-A FORWARD -p tcp -m tcp --sport 989 -m set --match-set bad dst -j DROP\nCOMMIT\n"
    model = design(tmp_path, rules)
    assert key(cell(model, "implicit", "port")) == ("fail", "data-connect", "fw")
    # a mark the file sets makes -m mark unknown
    marked = HEAD.replace("*filter", "*mangle\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j MARK --set-mark 1\n"
                                     "COMMIT\n*filter")
    model = design(tmp_path, marked + "-A FORWARD -m mark --mark 0x1 -p tcp --dport 21 -j DROP\n" + PERMIT + "COMMIT\n")
    assert cell(model, "tls", "pasv").outcome == "unknown"


# -- REJECT is a device decision naming its line ---------------------------------------------------

def test_a_reject_is_the_filters_decision_named_by_line(tmp_path):
    rules = HEAD + ":f2b-ftps - [0:0]\n-A FORWARD -p tcp -m multiport --dports 990 -j f2b-ftps\n" + PERMIT + \
        "-A f2b-ftps -s 198.51.100.10/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-ftps -j RETURN\nCOMMIT\n"
    model = design(tmp_path, rules)
    got = cell(model, "implicit", "epsv")
    assert key(got) == ("fail", "connect", "fw")
    assert "rejects it (iptables-user-chain.rules:11: -A f2b-ftps -s 198.51.100.10/32 -j REJECT" in got.reason


def test_a_files_rejects_are_observed_and_still_reject():
    text = HEAD + "-A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset\n" \
                  "-A FORWARD -p udp -j REJECT\nCOMMIT\n"
    out, reasons = static.observe_saved_drops(text, "fw.rules")
    assert reasons[10005] == "rejected by fw.rules:5: -A FORWARD -p tcp --dport 23 -j REJECT --reject-with tcp-reset"
    assert "-A FORWARD -p tcp --dport 23 -j ftlab-saved-5" in out
    assert '-A ftlab-saved-5 -j NFLOG --nflog-group 30 --nflog-prefix "ftlab-drop 10005" --nflog-threshold 1' in out
    assert "-A ftlab-saved-5 -p tcp -j REJECT --reject-with tcp-reset" in out
    assert "-A ftlab-saved-6 -j REJECT" in out


# -- the kernel FTP helper attached by the ruleset -------------------------------------------------

RAW_HELPER = "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i fw-eth0 -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n"
RELATED_ONLY = HEAD + ("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                       "-A FORWARD -i fw-eth0 -o fw-eth1 -p tcp --dport 21 -j ACCEPT\n"
                       "-A FORWARD -j REJECT --reject-with tcp-reset\nCOMMIT\n")


def test_iptables_raw_ct_helper_attaches_the_kernel_helper(tmp_path):
    model = design(tmp_path, RAW_HELPER + RELATED_ONLY)
    for sec, data in (("plain", "pasv"), ("plain", "port"), ("tls-ccc", "epsv"), ("tls-ccc", "eprt")):
        got = cell(model, sec, data)
        assert key(got) == ("pass", None, None), (sec, data, got.reason)
    assert "fw's kernel helper (attached by iptables-user-chain.rules:3) reads it" in cell(model, "plain", "pasv").reason
    # inside TLS the helper (its own model: nat/kernel_helper.py) reads nothing: the REJECT, fw's
    assert key(cell(model, "tls", "pasv")) == ("fail", "data-connect", "fw")
    assert key(cell(model, "implicit", "port")) == ("fail", "connect", "fw")        # 990: the REJECT


NFT_HELPER = """\
table inet filter {
  ct helper ftp-standard { type "ftp" protocol tcp; l3proto inet; }
  chain prerouting { type filter hook prerouting priority filter; policy accept;
    tcp dport 21 ct helper set "ftp-standard"
  }
  chain forward { type filter hook forward priority filter; policy drop;
    ct state vmap { established : accept, related : accept, invalid : drop }
    iifname "fw-eth0" tcp dport { 21, 990 } ct state new accept
    counter limit rate 3/minute log prefix "drop: "
  }
}
"""


def test_nft_ct_helper_set_in_prerouting_attaches_the_kernel_helper(tmp_path):
    model = design(tmp_path, NFT_HELPER, nft=True)
    assert predict.unreadable(model) == []
    for sec in ("plain", "tls-ccc"):
        for data in ("pasv", "epsv", "port", "eprt"):
            assert key(cell(model, sec, data)) == ("pass", None, None), (sec, data)
    assert key(cell(model, "tls", "epsv")) == ("fail", "data-connect", "fw")


# -- nftables constructs ----------------------------------------------------------------------------

def test_firewalld_ct_status_dnat_zones_and_sets(tmp_path):
    rules = """\
table inet firewalld {
  set allowed { type ipv4_addr . inet_service; flags interval; elements = { 203.0.113.10 . 60000-60100 } }
  chain filter_FORWARD { type filter hook forward priority filter + 10; policy accept;
    ct state { established, related } accept
    ct status dnat accept
    iifname "lo" accept
    ip6 daddr { ::/96, 2002::/24 } log prefix "RFC3964_IPv4_REJECT: " reject with icmpv6 addr-unreachable
    jump filter_FORWARD_ZONES
    ct state { invalid } drop
    reject with icmpx admin-prohibited
  }
  chain filter_FORWARD_ZONES { iifname "fw-eth0" goto filter_FWD_public; iifname "fw-eth1" goto filter_FWD_dmz }
  chain filter_FWD_public {
    limit rate 5/minute log prefix "FWD_public: "
    tcp dport vmap { 21 : accept, 990 : accept }
    ip daddr . tcp dport @allowed accept
  }
  chain filter_FWD_dmz { tcp sport 20 oifname "fw-eth0" accept }
}
"""
    model = design(tmp_path, rules, nft=True)
    assert predict.unreadable(model) == []
    assert key(cell(model, "tls", "pasv")) == ("pass", None, None)
    assert key(cell(model, "tls", "port")) == ("pass", None, None)
    got = cell(model, "implicit", "port")           # from 989: the final reject, fw's decision
    assert key(got) == ("fail", "data-connect", "fw") and "rejects it" in got.reason
    f = model.nodes["fw"].firewall
    from firewall import nftables
    dnat = Flow("tcp", CLIENT, SERVER, 2121, None, "fw-eth0", "fw-eth1", dnat=True)
    assert nftables.verdict(f, dnat) == ("accept", 5)                        # ct status dnat accept


# -- the file's nat table is the router's NAT --------------------------------------------------------

DOCKER = EXAMPLES / "docker-host.rules"


def test_a_docker_hosts_nat_table_is_read():
    text = DOCKER.read_text()
    local = frozenset({ipaddress.ip_address("203.0.113.1"), ipaddress.ip_address("172.17.0.1")})
    to = saved.nat(text, Flow("tcp", CLIENT, ipaddress.ip_address("203.0.113.1"), 60050, None, "dock-eth0"),
                   "PREROUTING", local)
    assert to == saved.Nat("dnat", 17, (ipaddress.ip_address("172.17.0.2"), 60050))   # a range keeps the port
    assert saved.nat(text, Flow("tcp", CLIENT, ipaddress.ip_address("203.0.113.1"), 22, None, "dock-eth0"),
                     "PREROUTING", local) is None
    assert saved.nat(text, Flow("tcp", CLIENT, SERVER, 21, None, "dock-eth0"), "PREROUTING", local) is None  # not LOCAL
    out = Flow("tcp", ipaddress.ip_address("172.17.0.2"), CLIENT, 40000, 20, "dock-eth1", "dock-eth0")
    assert saved.nat(text, out, "POSTROUTING", local).action == "masquerade"
    assert saved.unreadable(text) == []


# -- stateful matches say when the matrix's connections trip them ----------------------------------

def test_ufw_limit_says_when_it_trips(tmp_path):
    rules = HEAD + (":ufw-user-limit - [0:0]\n"
                    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                    "-A FORWARD -p tcp --dport 21 -m conntrack --ctstate NEW -m recent --set --name DEFAULT --rsource\n"
                    "-A FORWARD -p tcp --dport 21 -m conntrack --ctstate NEW -m recent --update --seconds 30 "
                    "--hitcount 6 --name DEFAULT --rsource -j ufw-user-limit\n") + PERMIT + \
        "-A ufw-user-limit -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n"
    model = design(tmp_path, rules)
    got = cell(model, "plain", "epsv")
    assert key(got) == ("pass", None, None)
    assert "iptables-user-chain.rules:8: -m recent (list DEFAULT) matches from the 6th new connection of one " \
           "source within 30 s, then -j ufw-user-limit" in got.reason
    assert "the matrix opens one control connection per cell" in got.reason


# -- idle timeouts on every kind of device -----------------------------------------------------------

@pytest.mark.parametrize("picture, device", [("static-filter", "fw"), ("client-nat", "nat-c"),
                                             ("static-filter-nat", "fw")])
def test_a_static_filter_and_a_nat_forget_the_control_connection(picture, device):
    model = loader.load(picture)
    got = cell(model, "plain", "epsv", ("control-timeout",))
    assert key(got) == ("fail", "transfer", device), got.reason
    assert "forgets it" in got.reason
    assert key(cell(model, "plain", "epsv", ("control-timeout", "keepalive"))) == ("pass", None, None)


def test_an_nft_ruleset_forgets_the_control_connection_and_says_its_limits(tmp_path):
    model = loader.load(EXAMPLES / "nftables-filter.yaml")
    got = cell(model, "plain", "epsv", ("control-timeout",))
    assert key(got) == ("fail", "transfer", "fw") and "nftables-filter.nft:14" in got.reason
    limited = NFT_HELPER.replace('iifname "fw-eth0" tcp dport { 21, 990 } ct state new accept',
                                 'iifname "fw-eth0" tcp dport { 21, 990 } ct state new limit rate 5/minute accept')
    got = cell(design(tmp_path, limited, nft=True), "plain", "pasv")
    assert key(got) == ("pass", None, None)
    assert "nftables-filter.nft:8: limit rate 5/minute: matches the first packets (its burst), then at that rate" \
        in got.reason, got.reason


def test_the_226_of_a_forgotten_connection_is_no_syn():
    """Conntrack takes the 226 up as new, but it is an ACK: Shorewall's `! --tcp-flags ... SYN -j
    DROP` drops it (measured: the run's drop names shorewall.rules:53), not the REJECT a SYN meets."""
    got = cell(loader.load(EXAMPLES / "shorewall.yaml"), "plain", "epsv", ("control-timeout",))
    assert key(got) == ("fail", "transfer", "fw")
    assert "shorewall.rules:53: -A Reject -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j DROP" in got.reason
