"""The shipped example designs (topologies/examples/): every cell's prediction pinned - outcome,
stage and the node that decides. tests/net/test_examples.py runs them and requires reality to agree."""

from __future__ import annotations

import pytest

from lab import TOPOLOGY_DIR
from lab.matrix import predict, scenario
from lab.topology import loader

S = scenario.load("default")
EXAMPLES = TOPOLOGY_DIR / "examples"

#: Per example, per security mode, the four data methods (pasv epsv port eprt): "pass", or
#: "stage/node" of the failure ("-" when nothing observable decides: a reset or an ICMP error).
PINNED = {
    "hairpin": {
        # NAT loopback: the inside client reaches the forwards by nat-s's public address; its PORT
        # is rewritten and mapped for the public address it dialed, which the server's active
        # connection (from 10.1.1.10) is not: refused at nat-s, no drop to observe
        **{s: "pass pass data-connect/- data-connect/-" for s in ("plain", "tls-ccc")},
        **{s: "pass pass pass pass" for s in ("tls", "implicit", "implicit-zos")},
    },
    "home-and-cgn": {
        # the home ALG rewrites PORT to 100.64.0.2 (the CGN's shared space), the CGN (alg off)
        # leaves it: the internet has no route there; inside TLS the private address is dropped
        "plain": "pass pass data-connect/- data-connect/-",
        "tls": "pass pass data-connect/internet data-connect/internet",
        "tls-ccc": "pass pass data-connect/- data-connect/-",
        "implicit": "pass pass data-connect/internet data-connect/internet",
        "implicit-zos": "pass pass data-connect/internet data-connect/internet",
    },
    "iptables-user-chain": {
        **{s: "pass pass pass pass" for s in ("plain", "tls", "tls-ccc")},
        # active data of implicit sessions comes from port 989: the ftp-out chain's DROP
        "implicit": "pass pass data-connect/fw data-connect/fw",
        "implicit-zos": "pass pass data-connect/fw data-connect/fw",
    },
    "two-filters": {
        # active data is let out by fw-s and dropped by the client site's egress filter fw-c
        **{s: "pass pass data-connect/fw-c data-connect/fw-c" for s in ("plain", "tls", "tls-ccc")},
        # fw-s admits no control connection to 990
        **{s: "connect/fw-s connect/fw-s connect/fw-s connect/fw-s" for s in ("implicit", "implicit-zos")},
    },
    "kernel-helper-dynamic": {
        "plain": "pass pass pass pass",
        "tls-ccc": "pass pass pass pass",
        # in path order: PASV's private address (internet), EPSV's port not forwarded (nat-s),
        # the server's active data has no pinhole at fw, before it reaches nat-s
        **{s: "data-connect/internet data-connect/nat-s data-connect/fw data-connect/fw"
           for s in ("tls", "implicit", "implicit-zos")},
    },
    "zos-server": {
        "plain": "login/zos login/zos login/zos login/zos",                 # SECURE_FTP REQUIRED: 530
        "tls": "pass pass data-setup/zos data-setup/zos",                   # NOREDIRECT: 504
        "tls-ccc": "tls/zos tls/zos tls/zos tls/zos",                       # SECURE_CTRLCONN PRIVATE: 534
        "implicit": "pass pass data-setup/zos data-setup/zos",
        "implicit-zos": "pass pass data-setup/zos data-setup/zos",
    },
    "ufw-logging": {  # measured: every cell as observed (tests/net/test_real_rulesets_run.py)
        # ufw's LOG, limit and recent rules decide nothing; 989's active data meets the FORWARD policy
        "plain": "pass pass pass pass",
        "tls": "pass pass pass pass",
        "tls-ccc": "pass pass pass pass",
        "implicit": "pass pass data-connect/fw data-connect/fw",
        "implicit-zos": "pass pass data-connect/fw data-connect/fw",
    },
    "fail2ban": {  # measured: every cell as observed (tests/net/test_real_rulesets_run.py)
        # fail2ban's REJECT of the banned client on 990 (f2b-ftps): the router's decision
        "plain": "pass pass pass pass",
        "tls": "pass pass pass pass",
        "tls-ccc": "pass pass pass pass",
        "implicit": "connect/fw connect/fw connect/fw connect/fw",
        "implicit-zos": "connect/fw connect/fw connect/fw connect/fw",
    },
    "firewalld": {  # measured: every cell as observed (tests/net/test_real_rulesets_run.py)
        # ct status dnat accept: the forwarded ports pass; PASV's 227 names the private address
        "plain": "data-connect/internet pass pass pass",
        "tls": "data-connect/internet pass pass pass",
        "tls-ccc": "data-connect/internet pass pass pass",
        "implicit": "data-connect/internet pass pass pass",
        "implicit-zos": "data-connect/internet pass pass pass",
    },
    "shorewall": {  # measured: every cell as observed (tests/net/test_real_rulesets_run.py)
        # no data ports open: data crosses as RELATED where the raw table's helper reads it; else REJECT
        "plain": "pass pass pass pass",
        "tls": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
        "tls-ccc": "pass pass pass pass",
        "implicit": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
        "implicit-zos": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
    },
    "nft-helper": {  # measured: every cell as observed (tests/net/test_real_rulesets_run.py)
        # ct helper set: the kernel helper's RELATED data in clear; inside TLS the policy drop
        "plain": "pass pass pass pass",
        "tls": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
        "tls-ccc": "pass pass pass pass",
        "implicit": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
        "implicit-zos": "data-connect/fw data-connect/fw data-connect/fw data-connect/fw",
    },
}


def predictions(name: str) -> dict[str, predict.Prediction]:
    model = loader.load(EXAMPLES / f"{name}.yaml")
    return {f"{s}/{d}": predict.predict(S, scenario.Cell(model.name, s, d), model=model)
            for s in S.security for d in S.data}


def short(p: predict.Prediction) -> str:
    return "pass" if p.outcome == "pass" else f"{p.stage}/{p.device or '-'}"


@pytest.mark.parametrize("name", list(PINNED))
def test_example_predictions_are_pinned(name):
    got = predictions(name)
    for security, row in PINNED[name].items():
        for data, want in zip(S.data, row.split(), strict=True):
            p = got[f"{security}/{data}"]
            assert p.outcome in ("pass", "fail") and short(p) == want, f"{name}/{security}/{data}: {p}"


def test_every_example_file_is_pinned():
    """A shipped example of the path walk's designs has pinned predictions (other examples: other tests)."""
    for name in PINNED:
        assert (EXAMPLES / f"{name}.yaml").exists(), name


def test_reasons_name_what_each_device_did():
    got = predictions("home-and-cgn")
    assert "home's scapy ALG rewrites it to 100.64.0.2" in got["plain/port"].reason
    assert "internet has no route to 100.64.0.2" in got["plain/port"].reason
    got = predictions("iptables-user-chain")
    assert "iptables-user-chain.rules:19: -A ftp-out -j DROP" in got["implicit/port"].reason
    assert "ruleset admits it (iptables-user-chain.rules:15" in got["tls/epsv"].reason
    got = predictions("kernel-helper-dynamic")
    assert "nat-s's kernel helper rewrites it to 203.0.113.1" in got["plain/pasv"].reason
    assert "fw (dynamic filter) reads it and opens a pinhole" in got["tls-ccc/port"].reason
    got = predictions("fail2ban")
    assert "fw's ruleset rejects it (fail2ban.rules:16: -A f2b-ftps -s 198.51.100.10/32 -j REJECT" in \
        got["implicit/pasv"].reason
    got = predictions("shorewall")
    assert "fw's kernel helper (attached by shorewall.rules:8) reads it and expects the connection" in \
        got["plain/pasv"].reason
    assert "rejects it (shorewall.rules:70: -A reject -p tcp -j REJECT --reject-with tcp-reset)" in got["tls/port"].reason
    got = predictions("nft-helper")
    assert "attached by nft-helper.nft:16" in got["plain/port"].reason
    got = predictions("zos-server")
    assert "SECURE_FTP REQUIRED" in got["plain/pasv"].reason
    assert "SECURE_CTRLCONN PRIVATE refuses CCC (534)" in got["tls-ccc/epsv"].reason
    assert "PORTCOMMANDIPADDR NOREDIRECT" in got["implicit/eprt"].reason
