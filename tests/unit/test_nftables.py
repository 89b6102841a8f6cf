"""The nftables filter without a network: reading a ruleset, its drops observed by line, its model,
the loader's section and `topo check` (nft -c in a throw-away user and network namespace)."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import pytest

from firewall import nftables, savefile
from firewall.nftparse import parse, read, tokenize
from firewall.section import Firewall
from lab import TOPOLOGY_DIR
from lab.cli import main
from lab.devkit import nflog
from lab.devkit.observed import logged_key
from lab.devkit.types import Flow
from lab.topology import devices
from lab.topology import loader as topo

EXAMPLE = TOPOLOGY_DIR / "examples" / "nftables-filter.yaml"
CLIENT, SERVER = ipaddress.ip_address("198.51.100.10"), ipaddress.ip_address("203.0.113.10")


def fw(text: str) -> Firewall:
    return Firewall(mode="nftables", nftables_text=text)


def inbound(dport: int, sport: int | None = None, **kw) -> Flow:
    return Flow("tcp", CLIENT, SERVER, dport, sport, kw.get("i", "fw-eth0"), kw.get("o", "fw-eth1"))


def outbound(sport: int) -> Flow:
    return Flow("tcp", SERVER, CLIENT, 40000, sport, "fw-eth1", "fw-eth0")


# -- reading ------------------------------------------------------------------------------------

def test_tokens_keep_lines_and_drop_comments_and_continuations():
    toks = tokenize('tcp dport { 21, 990 } \\\n  accept comment "a # not a comment" # a comment\n')
    words = [t.text for t in toks if t.kind != "newline"]
    assert words == ["tcp", "dport", "{", "21", ",", "990", "}", "accept", "comment", "a # not a comment"]
    assert [t.line for t in toks if t.text == "accept"] == [2]
    with pytest.raises(ValueError, match="line 1: unterminated string"):
        tokenize('log prefix "open\n')


def test_blocks_statements_and_command_forms():
    text = """\
table ip t {
  set allowed { type ipv4_addr; elements = { 192.0.2.1, 192.0.2.2 } }
  chain c { type filter hook forward priority filter + 10; policy drop; tcp dport 21 accept; udp dport 53 drop
  }
}
add chain ip t other
add rule ip t other tcp dport { 1,
   2 } accept
insert rule ip t c ip saddr @allowed accept
"""
    rs = read(text)
    c = rs.chains[("ip", "t", "c")]
    assert (c.hook, c.priority, c.policy, c.policy_line) == ("forward", 10, "drop", 3)
    assert [r.line for r in c.rules] == [9, 3, 3]          # insert puts its rule first
    assert [t.text for t in rs.sets[("ip", "t", "allowed")] if t.kind == "word"] == ["192.0.2.1", "192.0.2.2"]
    assert [r.line for r in rs.chains[("ip", "t", "other")].rules] == [7]
    assert len(parse(text)) == 4


# -- observed drops --------------------------------------------------------------------------------

RULESET = """\
define srv = 203.0.113.10
table inet f {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip daddr $srv tcp dport 22 counter drop comment "no ssh"
    tcp dport 23 reject with tcp reset
    tcp dport 21 jump ftp
  }
  chain ftp { ip saddr 192.0.2.0/24 return; accept }
}
"""


def test_every_drop_is_logged_to_the_observer_on_its_own_line():
    text, reasons = nftables.observe_drops(RULESET, "fw.nft")
    old, new = RULESET.splitlines(), text.splitlines()
    assert len(new) == len(old) + 1                        # one catch-all for the policy, appended
    assert new[5] == '    ip daddr $srv tcp dport 22 counter log group 30 prefix "ftlab-drop 1000006" drop ' \
                     'comment "no ssh"'
    assert new[6] == '    tcp dport 23 log group 30 prefix "ftlab-drop 1000007" queue-threshold 1 reject with tcp reset'
    assert new[-1] == 'add rule inet f forward log group 30 prefix "ftlab-drop 1000004" drop'
    assert [a for a, b in zip(old, new[:len(old)], strict=True) if a != b] == [old[5], old[6]]
    assert reasons == {
        1000006: 'dropped by fw.nft:6: ip daddr $srv tcp dport 22 counter drop comment "no ssh"',
        1000007: "rejected by fw.nft:7: tcp dport 23 reject with tcp reset",
        1000004: "dropped by fw.nft:4: the inet f forward chain's policy drop",
    }
    assert logged_key('ftlab-drop 1000006') == 1000006 and logged_key("other") is None


# -- the model -------------------------------------------------------------------------------------

def test_model_walks_chains_jumps_returns_and_policies():
    f = fw(RULESET)
    assert nftables.unreadable(f) == []
    assert nftables.verdict(f, inbound(22)) == ("drop", 6)
    assert nftables.verdict(f, inbound(23)) == ("reject", 7)
    assert nftables.verdict(f, inbound(21)) == ("accept", 10)                 # jump, then accept
    other = Flow("tcp", ipaddress.ip_address("192.0.2.7"), SERVER, 21, None, "fw-eth0", "fw-eth1")
    assert nftables.verdict(f, other) == ("drop", 4)                          # return, then the policy
    assert nftables.verdict(f, inbound(80)) == ("drop", 4)


def test_model_of_the_example_matches_the_slides_static_filter():
    t = topo.load(EXAMPLE)
    f = t.nodes["fw"].firewall
    assert nftables.unreadable(f) == []
    assert nftables.verdict(f, inbound(21))[0] == nftables.verdict(f, inbound(990))[0] == "accept"
    assert nftables.verdict(f, inbound(60000))[0] == nftables.verdict(f, inbound(60100))[0] == "accept"
    assert nftables.verdict(f, inbound(40000)) == ("drop", 14)               # the forward policy
    assert nftables.verdict(f, inbound(21, i="fw-eth1"))[0] == "drop"        # wrong side
    assert nftables.verdict(f, outbound(20))[0] == "accept"
    assert nftables.verdict(f, outbound(989)) == ("drop", 21)
    assert devices.model("nftables") is nftables.verdict and devices.unreadable(f) == []


@pytest.mark.parametrize("rule, why", [
    ('ct helper "ftp" accept', "`ct helper` is outside what the model reads"),
    ("quota over 10 mbytes drop", "`quota over` is outside what the model reads"),
    ("ip saddr @nosuch accept", "named set @nosuch"),
    ("ip daddr $nothing accept", "undefined variable $nothing"),
])
def test_model_names_what_it_cannot_read(rule, why):
    f = fw(f"table ip t {{ chain c {{ type filter hook forward priority 0; {rule}; }} }}\n")
    assert any(why in p for p in nftables.unreadable(f)), nftables.unreadable(f)


def test_chains_outside_the_forward_filter_make_the_ruleset_unpredictable():
    nat = fw("table ip n { chain p { type nat hook prerouting priority dstnat; tcp dport 21 dnat to 10.0.0.1 } }\n")
    assert any("type nat" in p for p in nftables.unreadable(nat))
    pre = fw("table ip n { chain p { type filter hook prerouting priority 0; policy drop; } }\n")
    assert any("prerouting hook" in p for p in nftables.unreadable(pre))
    inputs = fw("table ip n { chain i { type filter hook input priority 0; policy drop; tcp flags syn drop } }\n")
    assert nftables.unreadable(inputs) == []                                 # not on a forwarded path


def test_ct_state_reads_the_connections_state_on_the_device():
    f = fw("table inet f { chain c { type filter hook forward priority 0; policy drop; "
           "ct state established,related accept; ct state != new drop; tcp dport 21 accept } }\n")
    assert nftables.verdict(f, inbound(21))[0] == "accept"
    related = Flow("tcp", SERVER, CLIENT, 40000, 20, "fw-eth1", "fw-eth0", state="RELATED")
    assert nftables.verdict(f, related)[0] == "accept"
    assert nftables.verdict(f, Flow("tcp", SERVER, CLIENT, 40000, 20, "fw-eth1", "fw-eth0"))[0] == "drop"


def test_model_families_interfaces_and_operators():
    text = """\
table ip6 six { chain f { type filter hook forward priority 0; policy drop; } }
table inet f {
  chain forward { type filter hook forward priority 0;
    iifname "fw-eth*" tcp dport >= 1024 tcp dport != 3306 accept
    meta l4proto udp drop
    drop
  }
}
"""
    f = fw(text)
    assert nftables.verdict(f, inbound(2000)) == ("accept", 4)               # the ip6 table sees no IPv4
    assert nftables.verdict(f, inbound(3306)) == ("drop", 6)
    assert nftables.verdict(f, inbound(80)) == ("drop", 6)
    assert nftables.verdict(f, inbound(2000, i=None)) == ("drop", 6)         # an unknown interface matches no name
    six = Flow("tcp", ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("2001:db8:1::1"), 2000, None,
               "fw-eth0", "fw-eth1")
    assert nftables.verdict(f, six) == ("drop", 1)                           # the ip6 table's policy


# -- what the lab refuses, and nft -c --------------------------------------------------------------

def test_include_is_refused_before_nft_reads_anything():
    assert nftables.refused('flush ruleset\n  include "/etc/passwd"\n') == \
        [(2, "`include` is not allowed: put the rules in this file")]


def test_nft_errors_are_read_with_their_lines(tmp_path):
    path = tmp_path / "fw.nft"
    output = (f"{path}:6:18-23: Error: syntax error, unexpected accept\n    tcp dport 2x accept\n"
              f"                 ^^^^^^\nIn file included from {path}:1:1-22:\n/etc/x:1:5-5: Error: not ours\n")
    assert nftables.nft_errors(output, path) == [(6, "syntax error, unexpected accept")]


def _nft_check_works() -> bool:
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"], capture_output=True)
    return done.returncode == 0


needs_nft = pytest.mark.skipif(not _nft_check_works(), reason="nft or a user namespace is not available")


def with_nft(tmp_path, ruleset: str) -> str:
    (tmp_path / "fw.nft").write_text(ruleset)
    return EXAMPLE.read_text().replace("nftables: nftables-filter.nft", "nftables: fw.nft") \
        .replace("name: nftables-filter", "name: my-nft")


@needs_nft
def test_topo_check_names_every_nft_problem_by_file_and_line(tmp_path, capsys):
    ruleset = (TOPOLOGY_DIR / "examples" / "nftables-filter.nft").read_text()
    ruleset = ruleset.replace("tcp dport $passive accept", "tcp dport $pasive accept") \
        .replace("ct state invalid drop", "ct state bogus drop")
    (tmp_path / "net.yaml").write_text(with_nft(tmp_path, ruleset))
    code = main(["topo", "check", str(tmp_path / "net.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    nft = tmp_path / "fw.nft"
    assert f"{nft}:16: nodes.fw.firewall.nftables: Could not parse conntrack state" in err, err
    assert f"{nft}:19: nodes.fw.firewall.nftables: unknown identifier 'pasive'" in err, err


@needs_nft
def test_topo_check_passes_the_example(capsys):
    assert main(["topo", "check", str(EXAMPLE)]) == 0, capsys.readouterr().err


def test_loader_reads_the_section_and_refuses_mixtures(tmp_path):
    (tmp_path / "fw.nft").write_text("table inet f { }\n")
    text = with_nft(tmp_path, "table inet f { }\n")
    t = topo.loads(text, str(tmp_path / "net.yaml"), tmp_path / "net.yaml")
    assert t.nodes["fw"].firewall.mode == "nftables"
    assert t.nodes["fw"].firewall.nftables == tmp_path / "fw.nft"
    mixed = text.replace("      nftables: fw.nft", "      mode: static\n      nftables: fw.nft\n      default: drop")
    with pytest.raises(topo.InputError) as exc:
        topo.loads(mixed, "net.yaml", tmp_path / "net.yaml")
    assert "an nft ruleset is a firewall of its own: leave out mode 'static'" in str(exc.value)
    missing = text.replace("nftables: fw.nft", "nftables: nope.nft")
    with pytest.raises(topo.InputError, match="nope.nft"):
        topo.loads(missing, "net.yaml", tmp_path / "net.yaml")
    (tmp_path / "fw.nft").write_text('include "/etc/passwd"\n')
    with pytest.raises(topo.InputError, match="fw.nft:1: nodes.fw.firewall.nftables: `include` is not allowed"):
        topo.loads(text, "net.yaml", tmp_path / "net.yaml")


def test_setup_loads_the_observed_copy_with_nft():
    t = topo.load(EXAMPLE)
    [(_, setup)] = [(d, s) for d, s in devices.setups(t.nodes["fw"], t, EXAMPLE.parent / "events.jsonl",
                                                       programs=False) if d.name == "nftables"]
    # nft in the sandbox, where the ruleset is the only file of the host it sees (test_ruleset_includes)
    assert setup.restore.check == tuple(savefile.sandboxed(["nft", "-c", "-f"]))
    assert setup.restore.load == tuple(savefile.sandboxed(["nft", "-f"]))
    assert 'log group 30 prefix "ftlab-drop 1000021"' in setup.restore.text
    assert setup.reasons[1000014].startswith("dropped by nftables-filter.nft:14")


# -- the log group reader ----------------------------------------------------------------------------

def test_nflog_messages_are_built_and_read_without_a_kernel():
    msg = nflog.config_message(30, [(nflog.NFULA_CFG_CMD, b"\x01")])
    assert struct.unpack_from("=IHH", msg)[:2] == (len(msg), (4 << 8) | 1)
    assert struct.unpack_from("!H", msg, 18)[0] == 30

    def attr(kind: int, value: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)

    body = struct.pack("=BBH", 2, 0, 0) + attr(nflog.NFULA_PREFIX, b"ftlab-drop 7\0") + \
        attr(nflog.NFULA_MARK, struct.pack("!I", 5)) + attr(nflog.NFULA_PAYLOAD, b"E\0\0\x14")
    packet = struct.pack("=IHHII", 16 + len(body), 4 << 8, 0, 0, 0) + body
    assert nflog.parse_messages(packet + packet) == [nflog.LoggedPacket("ftlab-drop 7", 5, b"E\0\0\x14")] * 2
