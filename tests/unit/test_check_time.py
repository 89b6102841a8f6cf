"""Issue 12, item 7: what a run would fail on is found by `ftlab topo check` (and before a run), each
problem one line with file:line and exit 2, never a traceback or a lab error at run time."""

from __future__ import annotations

import pytest

from lab import TOPOLOGY_DIR
from lab.cli import main
from lab.topology import loader as topo

SHIPPED = (TOPOLOGY_DIR / "static-filter.yaml").read_text()
BASE = SHIPPED.replace("name: static-filter", "name: my-filter")   # a user's own file


def check(tmp_path, text: str, capsys, *extra: str) -> tuple[int, str]:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    code = main(["topo", "check", *extra, str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_statement_typo_gets_a_did_you_mean(tmp_path, capsys):
    text = BASE.replace("PASSIVEDATAPORTS: (60000,60100)", "PASSIVEDATAPORT: (60000,60100)")
    code, out = check(tmp_path, text, capsys)
    line = text.splitlines().index(next(x for x in text.splitlines() if "PASSIVEDATAPORT:" in x)) + 1
    assert code == 2
    assert f"net.yaml:{line}: ftp.server_statements.PASSIVEDATAPORT: unknown statement PASSIVEDATAPORT " \
           "(did you mean PASSIVEDATAPORTS?)" in out


def line_of(text: str, words: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if words in line)


def with_ruleset(tmp_path, rules: str) -> str:
    """static-filter with its rules replaced by an iptables-save file fw.rules beside the topology."""
    (tmp_path / "fw.rules").write_text(rules)
    start, end = BASE.index("      default: drop"), BASE.index("  server: {kind: host")
    return BASE[:start] + "      iptables_save: fw.rules\n" + BASE[end:]


RULES_WITH_THREE_MISTAKES = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:permit-ftp - [0:0]
-A FORWARD -p tcp --dport 21 -j ACCEPT
-A FORWARD -p tcp --dprot 990 -j ACCEPT
-A FORWARD -j no-such-chain
-A FORWARD -p tcp -m multiport --dports 60000:60100,20 -j permit-ftp
-A permit-ftp -s 300.1.1.1 -j ACCEPT
-A permit-ftp -j ACCEPT
COMMIT
"""


def test_malformed_iptables_save_lists_every_problem_with_its_line(tmp_path, capsys):
    from lab.topology import ipsave

    if why := ipsave.can_restore():
        pytest.skip(f"no throw-away network namespace here: {why}")
    code, out = check(tmp_path, with_ruleset(tmp_path, RULES_WITH_THREE_MISTAKES), capsys)
    rules = tmp_path / "fw.rules"
    assert code == 2
    assert f"{rules}:7: `-A FORWARD -p tcp --dprot 990 -j ACCEPT`: unknown option \"--dprot\"" in out
    assert f"{rules}:8: `-A FORWARD -j no-such-chain`: jumps to chain 'no-such-chain', which the file does " \
           "not declare" in out
    assert f"{rules}:10: `-A permit-ftp -s 300.1.1.1 -j ACCEPT`: host/network `300.1.1.1' not found" in out
    assert "3 problems" in out and "Traceback" not in out


def test_a_good_iptables_save_file_passes(tmp_path, capsys):
    good = "\n".join(x for x in RULES_WITH_THREE_MISTAKES.splitlines() if "dprot" not in x and "no-such" not in x
                     and "300.1" not in x) + "\n"
    code, out = check(tmp_path, with_ruleset(tmp_path, good), capsys)
    assert code == 0 and "net.yaml: ok" in out


def test_a_rule_naming_an_interface_the_node_lacks(tmp_path, capsys):
    rules = RULES_WITH_THREE_MISTAKES.replace("--dprot 990", "--dport 990 -i eth0").replace(
        "-A FORWARD -j no-such-chain\n", "-A FORWARD -o fw-eth+ -j ACCEPT\n").replace("300.1.1.1", "192.0.2.1")
    code, out = check(tmp_path, with_ruleset(tmp_path, rules), capsys)
    assert code == 2
    assert f"{tmp_path / 'fw.rules'}:7: -i: fw has no interface 'eth0' (its interfaces: fw-eth0, fw-eth1)" in out
    assert ":8:" not in out          # fw-eth+ is a prefix of fw's interfaces


def test_a_counted_rule_naming_an_interface_the_node_lacks(tmp_path, capsys):
    """`iptables-save -c` writes [packets:bytes] before each rule: such a rule is checked too."""
    rules = "*filter\n:FORWARD DROP [0:0]\n[12:345] -A FORWARD -i eth9 -p tcp --dport 21 -j ACCEPT\nCOMMIT\n"
    code, out = check(tmp_path, with_ruleset(tmp_path, rules), capsys)
    assert code == 2
    assert f"{tmp_path / 'fw.rules'}:3: -i: fw has no interface 'eth9' (its interfaces: fw-eth0, fw-eth1); " \
           "`-A FORWARD -i eth9 -p tcp --dport 21 -j ACCEPT` would never match" in out


def test_a_lab_rule_naming_an_interface_the_node_lacks(tmp_path, capsys):
    text = BASE.replace("dport: 21, comment", "dport: 21, in_interface: eth0, comment")
    code, out = check(tmp_path, text, capsys)
    assert code == 2
    assert f"net.yaml:{line_of(text, 'in_interface: eth0')}: nodes.fw.firewall.rules[0].in_interface: 'eth0' is " \
           "not an interface of fw nor a neighbour; choose from: fw-eth0 (to client), fw-eth1 (to server)" in out


@pytest.mark.parametrize("keyring, words", [
    ("FTPD/FTPRING", "'FTPD/FTPRING': no such file or folder"),
    ("ring", "'ring': the folder"),
    ("junk.pem", "not a PEM certificate"),
])
def test_keyring_is_resolved_or_a_clear_error(tmp_path, capsys, keyring, words):
    (tmp_path / "ring").mkdir()
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    text = BASE.replace("    PASSIVEDATAPORTS: (60000,60100)", f"    PASSIVEDATAPORTS: (60000,60100)\n    KEYRING: {keyring}")
    code, out = check(tmp_path, text, capsys)
    assert code == 2
    assert f"net.yaml:{line_of(text, 'KEYRING')}: ftp.server_statements.KEYRING: " in out and words in out


def test_keyring_given_relative_to_the_file_becomes_absolute(tmp_path):
    from lab.ftps import pki

    pki.init_ca(tmp_path / "ca")
    (tmp_path / "ring").mkdir()
    (tmp_path / "ring" / "ca.pem").write_bytes((tmp_path / "ca" / "ca.pem").read_bytes())
    for keyring, expect in (("ring", str(tmp_path / "ring")), ("'*AUTH*/*'", "*AUTH*/*")):
        (tmp_path / "net.yaml").write_text(BASE.replace("    PASSIVEDATAPORTS: (60000,60100)",
                                                        f"    PASSIVEDATAPORTS: (60000,60100)\n    KEYRING: {keyring}"))
        assert topo.load(tmp_path / "net.yaml").ftp.server_statements["KEYRING"] == expect


def test_a_design_that_blocks_the_control_connection_is_a_warning_naming_the_rule(tmp_path, capsys):
    text = BASE.replace("      rules:\n", "      rules:\n        - {action: drop, proto: tcp, dport: 21, "
                                           "comment: no clear FTP}\n")
    code, out = check(tmp_path, text, capsys)
    assert code == 0 and "1 warning" in out
    assert f"net.yaml:{line_of(text, 'no clear FTP')}: warning: nodes.fw.firewall.rules[0]: blocks the control " \
           "connection client → 203.0.113.10:21 (at fw: 198.51.100.10 → 203.0.113.10:21, in fw-eth0, out fw-eth1): " \
           "rule 1 (no clear FTP) drops it" in out
    assert "implicit-TLS" not in out               # 990 still passes
    code, out = check(tmp_path, text, capsys, "--strict")
    assert code == 2 and "1 warning (--strict)" in out


def test_the_default_drop_blocking_the_control_connection_is_named(tmp_path, capsys):
    text = BASE.replace("dport: 21, comment", "dport: 2121, comment")
    code, out = check(tmp_path, text, capsys)
    assert code == 0
    assert "warning: nodes.fw.firewall.default: blocks the control connection client → 203.0.113.10:21" in out
    assert "no rule permits it and the default is drop" in out


def test_shipped_pictures_have_no_warnings():
    from lab.topology import check as deep

    for name in topo.names():
        t = topo.load(name)
        assert deep.warnings(t) == [] and deep.problems(t) == [], name


def test_a_file_named_like_a_shipped_picture_is_warned(tmp_path, capsys):
    code, out = check(tmp_path, SHIPPED, capsys)
    assert code == 0
    assert f"net.yaml:{line_of(SHIPPED, 'name: static-filter')}: warning: name: 'static-filter' is also the name of " \
           "a shipped picture" in out


def test_png_into_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["topo", "show", "lan", "--png", str(tmp_path / "no" / "lan.png")])
    err = capsys.readouterr().err
    assert code == 2 and f"--png: the folder {tmp_path / 'no'} does not exist" in err and "Traceback" not in err
    code = main(["topo", "show", "lan", "--png", str(tmp_path)])
    assert code == 2 and "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["topo", "check"], ["topo", "show"], ["recommend", "--no-run"],
                                     ["matrix", "--topologies"], ["baseline"], ["bench"]])
def test_a_directory_given_as_a_topology_is_a_directory(tmp_path, capsys, monkeypatch, command):
    (tmp_path / "mynet").mkdir()
    monkeypatch.chdir(tmp_path)
    code = main([*command, "mynet"])
    err = capsys.readouterr().err
    assert code == 2 and "mynet: is a directory, not a topology file" in err, err


@pytest.mark.parametrize("command", [["matrix", "--topologies", "lan", "--size", "0"],
                                     ["run", "lan/plain/pasv", "--size", "0"], ["bench", "lan", "--size", "0"]])
def test_size_zero_is_refused(capsys, command):
    code = main(command)
    err = capsys.readouterr().err
    assert code == 2 and "--size: '0'" in err and "at least 1 byte" in err, err


def test_an_iptables_save_rule_blocking_the_control_connection_is_named_at_its_line(tmp_path, capsys):
    rules = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
             "-A FORWARD -p tcp --dport 21 -j DROP\n"
             "-A FORWARD -p tcp -m multiport --dports 990,60000:60100 -j ACCEPT\nCOMMIT\n")
    code, out = check(tmp_path, with_ruleset(tmp_path, rules), capsys)
    assert code == 0
    assert f"{tmp_path / 'fw.rules'}:6: warning: blocks the control connection client → 203.0.113.10:21" in out
    assert "drop: fw.rules:6: -A FORWARD -p tcp --dport 21 -j DROP" in out
    assert "implicit-TLS" not in out
