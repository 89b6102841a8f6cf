"""Rulesets as real tools write them (issue 19 item 2), run for real: a few cells of each example
design (topologies/examples/: ufw with logging, fail2ban, firewalld zones, Shorewall, the nftables
helper recipe, a Docker host) and a static filter's and a NAT's idle timeout, each cell as the
lab's model predicts - outcome, stage and the device that decides (a REJECT is the filter's)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import TOPOLOGY_DIR
from lab.report import results
from lab.topology import loader

EXAMPLES = TOPOLOGY_DIR / "examples"
DESIGNS = ("ufw-logging", "fail2ban", "firewalld", "shorewall", "nft-helper")
DOCKER = EXAMPLES / "docker-host.yaml"


def matrix(out, *args: str, timeout: int = 170) -> dict[str, dict]:
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB",
                           "--throughput", "off", *args, "--out", str(out)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return {s["id"]: s for s in results.load(out)["scenarios"]}


def agree(by_id: dict[str, dict]) -> None:
    wrong = {i: (s["outcome"], s.get("stage"), s.get("device"), s.get("expected"), s.get("expected_stage"),
                 s.get("expected_device"), s.get("reason")) for i, s in by_id.items() if not s["matches"]}
    assert not wrong, wrong
    assert not [i for i, s in by_id.items() if s.get("expected") == "unknown"]


@pytest.mark.network
@pytest.mark.timeout(200)
def test_real_tools_rulesets_run_as_predicted(tmp_path):
    by_id = matrix(tmp_path / "run", "--topologies", *(str(EXAMPLES / f"{d}.yaml") for d in DESIGNS),
                   "--security", "plain", "tls", "implicit", "--data", "pasv", "port")
    assert len(by_id) == 30
    agree(by_id)
    # ufw with logging on: its LOG rules decide nothing; 989 falls to the FORWARD policy
    assert by_id["ufw-logging/tls/port"]["outcome"] == "pass"
    assert by_id["ufw-logging/implicit/port"]["device"] == "fw"
    # fail2ban's REJECT: the router's decision, named by its line
    ban = by_id["fail2ban/implicit/pasv"]
    assert (ban["outcome"], ban["stage"], ban["device"]) == ("fail", "connect", "fw")
    assert "fail2ban.rules:16" in ban["reason"], ban["reason"]
    # the kernel helper the ruleset attaches (iptables raw CT, nft ct helper set): RELATED data
    for design in ("shorewall", "nft-helper"):
        assert by_id[f"{design}/plain/pasv"]["outcome"] == by_id[f"{design}/plain/port"]["outcome"] == "pass"
        assert by_id[f"{design}/tls/pasv"]["device"] == "fw"
    assert "shorewall.rules:70" in by_id["shorewall/tls/pasv"]["reason"]     # REJECT --reject-with tcp-reset
    # firewalld: ct status dnat accept admits the forwarded ports
    assert by_id["firewalld/tls/port"]["outcome"] == "pass"


@pytest.mark.network
@pytest.mark.timeout(120)
def test_a_static_filter_and_a_nat_forget_an_idle_control_connection(tmp_path):
    by_id = matrix(tmp_path / "run", "--topologies", "static-filter", "client-nat", "--security", "plain",
                   "--data", "epsv", "--variants", "control-timeout", "--only-variants", timeout=110)
    agree(by_id)
    assert by_id["static-filter/plain/epsv+control-timeout"]["device"] == "fw"
    assert by_id["client-nat/plain/epsv+control-timeout"]["device"] == "nat-c"


@pytest.mark.network
@pytest.mark.timeout(120)
def test_a_docker_host_runs_as_predicted(tmp_path):
    """Its forwards are only in the file's nat table (the loader and the routing walk read it)."""
    loader.load(DOCKER)
    by_id = matrix(tmp_path / "run", "--topologies", str(DOCKER), "--security", "tls", "--data", "pasv", "epsv",
                   timeout=110)
    agree(by_id)
    assert by_id["docker-host/tls/epsv"]["outcome"] == "pass"


UNKNOWN_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp --dport 21 -m string --algo bm --string "blocked" -j DROP
-A FORWARD -i fw-eth0 -o fw-eth1 -d 203.0.113.10/32 -p tcp -m multiport --dports 21,990 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i fw-eth0 -o fw-eth1 -d 203.0.113.10/32 -p tcp -m tcp --dport 60000:60100 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
"""


@pytest.mark.network
@pytest.mark.timeout(120)
def test_a_cell_the_model_cannot_predict_fails_the_run_unless_allowed(tmp_path):
    """Issue 19 item 4: `ftlab matrix` exited 0 with every cell unpredicted."""
    (tmp_path / "unknown.rules").write_text(UNKNOWN_RULES)
    (tmp_path / "unknown.yaml").write_text((EXAMPLES / "fail2ban.yaml").read_text()
                                           .replace("fail2ban.rules", "unknown.rules")
                                           .replace("name: fail2ban", "name: unknown-match"))
    argv = [sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--throughput", "off", "--topologies",
            str(tmp_path / "unknown.yaml"), "--security", "plain", "--data", "pasv"]
    strict = subprocess.run([*argv, "--out", str(tmp_path / "strict")], capture_output=True, text=True, timeout=100)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "cannot predict: unknown.rules:6 uses -m string" in strict.stdout + strict.stderr
    allowed = subprocess.run([*argv, "--allow-unknown", "--out", str(tmp_path / "allowed")], capture_output=True,
                             text=True, timeout=100)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
