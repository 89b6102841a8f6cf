"""Issue 13's example pictures, end to end: every cell as the lab's model predicts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import TOPOLOGY_DIR
from lab.report import results

EXAMPLES = TOPOLOGY_DIR / "examples"


@pytest.mark.network
@pytest.mark.timeout(240)
def test_nftables_and_one_to_one_examples_run_as_predicted(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB",
                           "--throughput", "off", "--topologies", str(EXAMPLES / "nftables-filter.yaml"),
                           str(EXAMPLES / "one-to-one-nat.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {s["id"]: s for s in results.load(out)["scenarios"]}
    assert len(by_id) == 40 and all(s["matches"] for s in by_id.values())
    # the nft ruleset's drop is named by its line
    cell = by_id["nftables-filter/implicit/port"]
    assert cell["outcome"] == "fail" and "dropped by nftables-filter.nft:21: " in cell["reason"], cell["reason"]
    # 1:1 NAT: every port of the server's own public address reaches it, so EPSV passes inside TLS
    assert by_id["one-to-one-nat/tls/epsv"]["outcome"] == "pass"
    assert by_id["one-to-one-nat/tls/pasv"]["outcome"] == "fail"


@pytest.mark.network
@pytest.mark.timeout(300)
def test_ipv6_picture_and_v6_twins_run_as_predicted(tmp_path):
    """The IPv6-only example (a stateful firewall, no NAT) and the +v6 twins of NAT pictures with
    the scapy ALG and the kernel helper (NAT66): EPSV/EPRT as over IPv4, PASV refused (522)."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB",
                           "--throughput", "off", "--topologies", str(EXAMPLES / "ipv6-firewall.yaml"),
                           "double-nat", "static-filter-nat", "--security", "plain", "tls", "--variants", "v6",
                           "alg-kernel+v6", "--out", str(out)], capture_output=True, text=True, timeout=290)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {s["id"]: s for s in results.load(out)["scenarios"]}
    assert all(s["matches"] for s in by_id.values())
    assert by_id["ipv6-firewall/plain/eprt"]["outcome"] == "pass"
    assert by_id["ipv6-firewall/tls/epsv"]["outcome"] == "fail" and by_id["ipv6-firewall/tls/epsv"]["device"] == "fw"
    for alg in ("v6", "alg-kernel+v6"):
        assert by_id[f"double-nat/plain/eprt+{alg}"]["outcome"] == "pass"       # both NATs rewrite EPRT |2|
        assert "522" in by_id[f"double-nat/plain/pasv+{alg}"]["reason"]
    assert by_id["static-filter-nat/tls/epsv+v6"]["outcome"] == "pass"        # step 3 over IPv6


@pytest.mark.network
@pytest.mark.timeout(240)
def test_nat_loopback_on_and_off_run_as_predicted(tmp_path):
    """`hairpin: true`: an inside client reaches the forwards by the NAT's public address; off, the
    connection is dropped by the NAT, which names the option (before: 'Connection refused', no device)."""
    off = tmp_path / "no-hairpin.yaml"
    off.write_text((EXAMPLES / "hairpin.yaml").read_text().replace("hairpin: true", "hairpin: false")
                   .replace("name: hairpin", "name: no-hairpin"))
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--quiet", "--size", "256KiB",
                           "--throughput", "off", "--topologies", str(EXAMPLES / "hairpin.yaml"), str(off),
                           "--security", "plain", "tls", "--data", "pasv", "epsv", "--out", str(out)],
                          capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stdout + done.stderr
    by_id = {s["id"]: s for s in results.load(out)["scenarios"]}
    assert all(s["matches"] for s in by_id.values())
    assert all(by_id[f"hairpin/{s}/{d}"]["outcome"] == "pass" for s in ("plain", "tls") for d in ("pasv", "epsv"))
    cell = by_id["no-hairpin/tls/epsv"]
    assert (cell["outcome"], cell["stage"], cell["device"]) == ("fail", "connect", "nat-s")
    assert "NAT loopback is off on nat-s" in cell["reason"] and "hairpin: true" in cell["reason"]
