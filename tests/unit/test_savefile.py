"""One reader of iptables-save text (firewall/savefile.py), shared by the check-time interface check
(lab/topology/ipsave.py) and the model that predicts a static filter (firewall/saved.py): what one
of them reads, the other reads alike."""

from __future__ import annotations

from firewall import saved, savefile
from lab.topology import ipsave

FILE = """\
# iptables-save -c of fw, with counters
*nat
:PREROUTING ACCEPT [3:180]
COMMIT
*filter
:FORWARD DROP [12:720]
:permit-ftp - [0:0]

[12:345] -A FORWARD -i eth9 -j permit-ftp
[0:0] --append permit-ftp -o fw-eth1 -j ACCEPT
-I FORWARD -o eth8 -j ACCEPT
-A FORWARD -m comment --comment "it's open
COMMIT
"""


def test_every_line_read_once_with_its_number_table_and_kind():
    got = [(x.number, x.table, x.kind, x.chain, x.policy, x.words[:2], x.error is not None)
           for x in savefile.lines(FILE)]
    assert got == [
        (2, "nat", "table", "", "", (), False),
        (3, "nat", "chain", "PREROUTING", "ACCEPT", (), False),
        (5, "filter", "table", "", "", (), False),
        (6, "filter", "chain", "FORWARD", "DROP", (), False),
        (7, "filter", "chain", "permit-ftp", "-", (), False),
        (9, "filter", "rule", "", "", ("-A", "FORWARD"), False),          # counters stripped
        (10, "filter", "rule", "", "", ("--append", "permit-ftp"), False),
        (11, "filter", "rule", "", "", ("-I", "FORWARD"), False),
        (12, "filter", "rule", "", "", (), True),                          # does not split
    ]
    rule = next(x for x in savefile.lines(FILE) if x.number == 9)
    assert rule.text == "-A FORWARD -i eth9 -j permit-ftp"
    assert "quotation" in next(x for x in savefile.lines(FILE) if x.number == 12).error


def test_a_counted_rule_naming_a_missing_interface_is_found():
    """iptables-save -c writes `[packets:bytes]` before each rule: such a rule was not checked."""
    text = "*filter\n:FORWARD DROP [0:0]\n[12:345] -A FORWARD -i eth9 -j ACCEPT\nCOMMIT\n"
    problems = ipsave.interface_problems(text, "fw.rules", "fw", ["fw-eth0", "fw-eth1"])
    assert [(p.line, p.field) for p in problems] == [(3, "-i")]
    assert "fw has no interface 'eth9'" in problems[0].message


def test_both_readers_see_the_same_lines_and_keep_their_own_decisions():
    problems = ipsave.interface_problems(FILE, "fw.rules", "fw", ["fw-eth0", "fw-eth1"])
    assert sorted((p.line, p.field) for p in problems) == [(9, "-i"), (11, "-o"), (12, "")]
    assert next(p for p in problems if p.line == 12).message.startswith("`-A FORWARD -m comment --comment \"it's open`: ")
    # the model reads -A/--append rules; a hand-written -I is unread, as is the line that does not split
    assert saved.unreadable(FILE) == [(11, "'-I' (the model reads -A rules)"),
                                      (12, "a line that does not split into words (unbalanced quotes)")]
    rs = saved.read(FILE)
    assert [r.line for r in rs.chains["FORWARD"]] == [9] and [r.line for r in rs.chains["permit-ftp"]] == [10]
    assert rs.policies == {"FORWARD": ("DROP", 6)}


def test_a_chain_declared_without_a_policy_is_not_a_crash():
    text = "*nat\n:PREROUTING\nCOMMIT\n*filter\n:FORWARD\nCOMMIT\n"
    assert saved.unreadable(text) == []
    assert saved.read(text).policies == {"FORWARD": ("-", 5)}


def test_restore_problems_find_jumps_in_counted_rules():
    """The jump to an undeclared chain is named at each rule that jumps, counters or not."""
    lines = [x for x in ipsave.rules("[1:2] -A FORWARD -j nowhere\n-A FORWARD -g nowhere\n")[0]]
    assert [(r.line, r.values(ipsave.JUMP_OPTIONS)) for r in lines] == [(1, ["nowhere"]), (2, ["nowhere"])]
