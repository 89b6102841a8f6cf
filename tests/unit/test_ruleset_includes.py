"""A user's ruleset reads nothing of the host's file system (issue 18, item 3).

Two defences: what names a file (nft's `include`, `osf`, `socket cgroupv2`, names looked up in the
host's user database; iptables' `-m bpf --object-pinned`, `-m cgroup --path`, `-j LED`, ...) is
refused wherever it stands, read with the tokenizer, every one with its line; and nft and
iptables-restore run in a sandbox (firewall.savefile.sandboxed) where the ruleset is the only
file of the host they see, so an include that slipped through reads nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from firewall import nftables, savefile, static
from firewall.section import Firewall
from lab.devkit.view import NodeView
from lab.errors import InputError
from lab.topology import ipsave
from lab.topology import loader as topo

ONE_LINE = 'table inet f { chain c { type filter hook forward priority 0; policy accept; }; }; ' \
           'include "/etc/nftables.conf"\n'
RULES = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"


def _works(*argv: str) -> bool:
    if any(shutil.which(a) is None for a in ("nft", "unshare", "iptables-restore")):
        return False
    return subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", *argv],
                          capture_output=True).returncode == 0


needs_nft = pytest.mark.skipif(not _works("true"), reason="needs nft, iptables-restore and a user+mount namespace")


# -- refused by the tokenizer, wherever it stands ------------------------------------------------------

def test_an_include_after_a_block_on_the_same_line_is_refused():
    assert nftables.refused(ONE_LINE) == [(1, "`include` is not allowed: put the rules in this file")]


def test_every_include_is_named_by_its_line():
    text = ('flush ruleset\n'
            'table inet f { include "/root/a" ; chain c { include "/etc/b"\n'
            '  }; }\n'
            'define x = 1;include"/home/c"\n')
    assert [line for line, _ in nftables.refused(text)] == [2, 2, 4]


def test_include_in_a_comment_or_a_string_is_not_a_statement():
    text = ('# include "/etc/passwd"\n'
            'table inet f { chain c { tcp dport 22 counter comment "include me" accept # include x\n } }\n')
    assert nftables.refused(text) == []


def test_what_else_reads_the_host_is_refused():
    text = ('table inet f { chain c { type filter hook output priority 0;\n'
            '  osf name "Linux" accept\n'
            '  socket cgroupv2 level 1 "user.slice" accept\n'
            '  meta skuid { root, 0 } accept; meta skgid != "staff" accept; meta skuid 1000 accept\n'
            '} }\n')
    lines = [line for line, _ in nftables.refused(text)]
    assert lines == [2, 3, 4, 4]
    assert "root" in nftables.refused(text)[2][1] and "staff" in nftables.refused(text)[3][1]


def test_an_unterminated_string_is_refused_with_its_line():
    assert nftables.refused('table inet f {\n include "/etc/x\n}\n') == [(2, "unterminated string")]


def test_the_loader_refuses_a_one_line_include(tmp_path):
    (tmp_path / "fw.nft").write_text(ONE_LINE)
    yaml = (topo.TOPOLOGY_DIR / "examples" / "nftables-filter.yaml").read_text()
    (tmp_path / "net.yaml").write_text(yaml.replace("nftables-filter.nft", "fw.nft"))
    with pytest.raises(InputError) as info:
        topo.load(tmp_path / "net.yaml")
    assert f"{tmp_path / 'fw.nft'}:1: nodes.fw.firewall.nftables: `include` is not allowed" in str(info.value)


def test_iptables_options_that_read_the_host_are_refused():
    text = RULES.format(rules=(
        "-A FORWARD -m bpf --object-pinned /sys/fs/bpf/prog -j ACCEPT\n"
        "-A FORWARD -m bpf --bytecode \"4,48 0 0 9,21 0 1 6,6 0 0 1,6 0 0 0\" -j ACCEPT\n"
        "-A FORWARD -m cgroup --path user.slice -j DROP\n"
        "-A FORWARD -m cgroup --cgroup 1 -j DROP\n"
        "-A FORWARD -j LED --led-trigger-id x\n"
        "-A OUTPUT -m owner --uid-owner root -j ACCEPT\n"
        "-A OUTPUT -m owner --uid-owner 0-10 --gid-owner 0 -j ACCEPT\n"
        "-A FORWARD -j IDLETIMER --timeout 5 --label x\n"
        "-A FORWARD -m ../../tmp/evil -j ACCEPT\n"
        "-A FORWARD -m comment --comment \"-j LED --object-pinned\" -j ACCEPT\n"
        "-A FORWARD --modprobe /tmp/evil.sh -j ACCEPT\n"
        "-A FORWARD -M /tmp/evil.sh -j ACCEPT\n"))
    assert [line for line, _ in savefile.refused(text)] == [5, 7, 9, 10, 12, 13, 15, 16]


def test_the_loader_refuses_an_iptables_file_that_reads_the_host(tmp_path):
    example = topo.TOPOLOGY_DIR / "examples"
    (tmp_path / "fw.rules").write_text(RULES.format(rules="-A FORWARD -m bpf --object-pinned /x -j ACCEPT\n"
                                                          "-A FORWARD -j LED --led-trigger-id x\n"))
    yaml = (example / "iptables-user-chain.yaml").read_text()
    (tmp_path / "net.yaml").write_text(yaml.replace("iptables-user-chain.rules", "fw.rules"))
    with pytest.raises(InputError) as info:
        topo.load(tmp_path / "net.yaml")
    text = str(info.value)
    assert f"{tmp_path / 'fw.rules'}:5: " in text and "--object-pinned" in text
    assert f"{tmp_path / 'fw.rules'}:6: " in text and "LED" in text


# -- the sandbox: an include that slips through reads nothing --------------------------------------------

@pytest.fixture
def secret():
    """A valid nft file in the host's /tmp that a ruleset must never see."""
    path = Path("/tmp") / f"ftlab-secret-{uuid.uuid4().hex}.nft"
    path.write_text("table inet leaked { chain c { type filter hook forward priority 0; policy drop; }; }\n")
    path.chmod(0o644)
    yield path
    path.unlink()


def _ruleset(tmp_path: Path, secret: Path) -> Path:
    path = tmp_path / "fw.nft"
    path.write_text(f'table inet f {{ chain c {{ type filter hook forward priority 0; }}; }}\ninclude "{secret}"\n')
    return path


@needs_nft
def test_without_the_sandbox_nft_reads_the_file(tmp_path, secret):
    """The control: the same command outside the sandbox loads the host's file."""
    path = _ruleset(tmp_path, secret)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "sh", "-c",
                           f"nft -f {path} && nft list tables"], capture_output=True, text=True)
    assert "leaked" in done.stdout


@needs_nft
def test_the_check_does_not_read_an_include_that_slipped_through(tmp_path, secret):
    path = _ruleset(tmp_path, secret)
    problems = nftables._nft_check(path)                # the tokenizer's refusal bypassed
    assert problems and problems[0][0] == 2 and "File not found" in problems[0][1], problems


@needs_nft
def test_the_router_loads_the_ruleset_in_the_sandbox(tmp_path, secret):
    """setup()'s load command, as the engine runs it (`[*load, file]`), then what the kernel holds."""
    path = _ruleset(tmp_path, secret)
    firewall = Firewall(mode="nftables", nftables=path, nftables_text=path.read_text())
    restore = nftables.setup(NodeView(name="fw", interfaces=(), section=firewall)).restore
    for argv in ([*restore.check, str(path)], [*restore.load, str(path)]):
        script = '"$@"; echo "rc=$?"; nft list tables'
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "--mount", "sh", "-c", script,
                               "sh", *argv], capture_output=True, text=True)
        assert "rc=1" in done.stdout and "leaked" not in done.stdout, done
        assert f"{path}:2:" in done.stderr and "File not found" in done.stderr


@needs_nft
def test_a_ruleset_without_includes_still_loads_in_the_sandbox(tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text("table inet f { chain c { type filter hook forward priority 0; tcp dport { ftp, ssh } accept; }; }\n")
    assert nftables.check(path, path.read_text()) == []


@needs_nft
def test_the_sandbox_shows_the_ruleset_only(tmp_path, secret):
    """Whatever runs in it: the ruleset (its last argument) is there, the host's /tmp, /etc, /root are not."""
    path = tmp_path / "fw.rules"
    path.write_text("x\n")
    argv = savefile.sandboxed(["sh", "-c", f'cat "$0"; ls /etc; ls /root /home /work {secret} 2>&1; true',
                               str(path)], namespaces=("--user", "--map-root-user"))
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.stdout.startswith("x\n"), done
    assert "passwd" not in done.stdout and "No such file" in done.stdout
    assert str(secret) in done.stdout and "No such file or directory" in done.stdout.split(str(secret))[1][:40]


@needs_nft
def test_iptables_restore_runs_in_the_sandbox(tmp_path):
    """The check-time loader (stdin) and the router's (the file) both work there."""
    text = RULES.format(rules="-A FORWARD -p tcp --dport ftp -m comment --comment \"ftp\" -j ACCEPT\n")
    assert ipsave.restore_problems(text, "fw.rules") == []
    assert "ftlab-sandbox" in ipsave.throwaway_argv(["iptables-restore"])
    path = tmp_path / "fw.rules"
    path.write_text(text)
    firewall = Firewall(mode="static", iptables_save=path)
    restore = static.setup(NodeView(name="fw", interfaces=(), section=firewall)).restore
    for argv in ([*restore.check, str(path)], [*restore.load, str(path)]):
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--net", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done
        assert "ftlab-sandbox" in argv
