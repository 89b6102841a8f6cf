"""lab.matrix.recommend: one answer for the terminal, results.json and the report; an encrypted
control channel whenever one gets through; reasons true for the cell's real client."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab import TOPOLOGY_DIR
from lab.ftps.modes import ENCRYPTED_CONTROL
from lab.matrix import scenario
from lab.matrix.recommend import recommend
from lab.matrix.scenario import ClientTraits
from lab.topology import loader

S = scenario.load("default")
NETWORKS = [*loader.names(), *(str(p) for p in sorted((TOPOLOGY_DIR / "examples").glob("*.yaml"))
                              if not p.name.endswith(".expect.yaml"))]


def test_the_slides_steps_and_where_a_picture_departs_from_them():
    rec = {n: recommend(loader.load(n), S) for n in S.topologies}
    assert (rec["lan"].step, rec["lan"].method) == (0, "tls/epsv")
    assert (rec["client-nat"].step, rec["client-nat"].method) == (2, "tls/epsv")
    assert (rec["static-filter-nat"].step, rec["static-filter-nat"].method) == (3, "tls/epsv")
    assert rec["static-filter-nat"].settings["server"] == {"PASSIVEDATAPORTS": "(60000,60100)"}
    assert (rec["dynamic-filter"].step, rec["dynamic-filter"].method) == (4, "tls-ccc/epsv")
    # step 2 says EPSV, but nat-s forwards no data port: the answer is a method that passes, and why
    server_nat = rec["server-nat"]
    assert server_nat.step == 2 and server_nat.method == "tls/eprt" and "the step's tls/epsv fails" in server_nat.why
    assert server_nat.predicted.outcome == "pass" and "tls/port" in server_nat.alternatives


@pytest.mark.parametrize("network", NETWORKS)
def test_no_ccc_where_an_encrypted_control_channel_gets_through(network):
    model = loader.load(network)
    rec = recommend(model, S)
    if any(m.split("/")[0] in ENCRYPTED_CONTROL for m in (rec.method, *rec.alternatives) if m):
        assert rec.keeps_control_encrypted, (network, rec.text())
    assert rec.method is None or rec.predicted.outcome == "pass"
    assert rec.text().startswith(f"{rec.method or 'nothing secure'} (step {rec.step}): ")


def test_after_a_run_the_observed_outcomes_decide_and_the_model_is_quoted():
    model = loader.load("static-filter-nat")
    rec = recommend(model, S, {"tls/epsv": "fail", "tls/pasv": "fail", "tls/eprt": "pass"})
    assert rec.method == "tls/eprt" and rec.observed == "pass" and "passed in this run" in rec.why
    rec = recommend(model, S, {"tls/epsv": "fail"})
    assert rec.method != "tls/epsv" and rec.to_dict()["predicted"]["outcome"] == "pass"
    rec = recommend(model, S, {"tls/eprt": "pass", "tls/epsv": "pass"})
    assert rec.method == "tls/epsv" and "lab's model predicted" not in rec.why


def test_ccc_reasons_are_true_for_the_actual_client():
    model = loader.load(TOPOLOGY_DIR / "examples" / "kernel-helper-dynamic.yaml")
    rec = recommend(model, S)
    assert rec.method == "tls-ccc/epsv" and rec.step == 4
    assert "the built-in client sends another command first (not the data command)" in rec.why
    assert "first command after CCC is the data command" not in rec.why
    eager = replace(S, clients={**S.clients, "builtin": ClientTraits("builtin", first_after_ccc="data")})
    rec = recommend(model, eager)
    assert "first command after CCC is the data command: set CCCNOOP TRUE" in rec.why


def test_nothing_secure_gets_through(tmp_path):
    text = (TOPOLOGY_DIR / "examples" / "two-filters.yaml").read_text().replace(
        "dport: 60000-60100, comment: passive data range}", "dport: 1-2, comment: nothing}")
    (tmp_path / "net.yaml").write_text(text)
    rec = recommend(loader.load(tmp_path / "net.yaml"), S)
    assert rec.method is None and rec.text().startswith("nothing secure (step 3)")
    assert "no secure method is predicted to get through" in rec.why


def test_recommend_and_the_matrix_say_the_same_about_what_they_can_read(tmp_path):
    """Step 1 (rules that cannot be read) only where the matrix cannot predict a cell because of
    them, naming the line it names; a rule it cannot read that decides no cell is no step 1
    (before: "a device's rules cannot be read" beside a confident prediction of every cell)."""
    base = (TOPOLOGY_DIR / "examples" / "iptables-user-chain.rules").read_text()
    (tmp_path / "net.yaml").write_text((TOPOLOGY_DIR / "examples" / "iptables-user-chain.yaml").read_text())
    icmp = base.replace("-A FORWARD -p icmp -j ACCEPT", "-A FORWARD -p icmp -m set --match-set ok src -j ACCEPT")
    (tmp_path / "iptables-user-chain.rules").write_text(icmp)
    rec = recommend(loader.load(tmp_path / "net.yaml"), S)
    assert rec.step == 3 and rec.method == "tls/epsv"       # the unreadable rule is ICMP's: tcp never reaches it
    blocked = base.replace("-A ftp-in -j RETURN", "-A ftp-in -j RETURN").replace(
        "-A ftp-in -p tcp -m multiport", "-A ftp-in -p tcp --dport 990 -m set --match-set bad src -j DROP\n"
                                          "-A ftp-in -p tcp -m multiport")
    (tmp_path / "iptables-user-chain.rules").write_text(blocked)
    rec = recommend(loader.load(tmp_path / "net.yaml"), S)
    assert rec.step == 1 and rec.method == "tls/epsv"       # tls on 21 is read; implicit on 990 is not
    assert "iptables-user-chain.rules:14 uses -m set" in rec.why, rec.why


