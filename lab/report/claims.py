"""The slides' analysis as checkable claims over a run's observed outcomes. Pure.

Each claim names the cells it is about; it holds when every one of them was observed as the
slides say, and is "not run" when the run did not include them all. A cell an interrupted run did
not run (outcome "not-run") decides nothing: the claim reads "unknown (not run)" unless a cell that
did run already refutes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.report.results import is_not_run

TLS = ("tls", "implicit", "implicit-zos")
DATA = ("pasv", "epsv", "port", "eprt")


@dataclass(frozen=True)
class Claim:
    text: str
    expect: dict[str, str]       # cell id -> outcome the slides state


def _all(topology: str, securities, datas, outcome: str) -> dict[str, str]:
    return {f"{topology}/{s}/{d}": outcome for s in securities for d in datas}


CLAIMS = (
    Claim("Internal network without firewalls or NAT: 'there are no problems' - every method works",
          _all("lan", ("plain", "tls", "tls-ccc", "implicit", "implicit-zos"), DATA, "pass")),
    Claim("Client behind NAT, TLS: 'Passive mode (PASV) may work - Active mode (PORT) will not work'",
          {"client-nat/tls/pasv": "pass", "client-nat/tls/port": "fail"}),
    Claim("Server behind NAT, TLS: 'Passive mode (PASV) will not work - Active mode (PORT) may work'",
          {"server-nat/tls/pasv": "fail", "server-nat/tls/port": "pass"}),
    Claim("Both behind NAT, TLS: 'Neither passive mode (PASV) nor active mode (PORT) will work'",
          {"double-nat/tls/pasv": "fail", "double-nat/tls/port": "fail"}),
    Claim("NAT and static filtering with PASSIVEDATAPORTS: extended passive mode (EPSV) works (step 3)",
          {f"static-filter-nat/{s}/epsv": "pass" for s in ("tls", "implicit", "implicit-zos")}),
    Claim("Dynamic filtering: with TLS only the CCC method works (step 4)",
          {**_all("dynamic-filter", TLS, DATA, "fail"), **_all("dynamic-filter", ("tls-ccc",), DATA, "pass")}),
    Claim("Dynamic filtering with NAT: with TLS only the CCC method works (step 4)",
          {**_all("dynamic-filter-nat", TLS, DATA, "fail"),
           **_all("dynamic-filter-nat", ("tls-ccc",), DATA, "pass")}),
    Claim("'EPSV, used with IPv4, provides NAT firewall relief': through NAT with TLS, EPSV passes where PASV "
          "fails (IPv4)",
          {"static-filter-nat/tls/pasv": "fail", "static-filter-nat/tls/epsv": "pass", "client-nat/tls/epsv": "pass"}),
    Claim("... and over IPv6 through NAT66 (the +v6 twins): EPSV passes the same, PASV is refused (522) - EPSV is "
          "IPv6's passive mode",
          {"static-filter-nat/tls/pasv+v6": "fail", "static-filter-nat/tls/epsv+v6": "pass",
           "client-nat/tls/epsv+v6": "pass"}),
    Claim("'The CCC command is a solution that solves SSL/TLS-enabled FTP issues with both NAT firewalls and "
          "filtering firewalls'",
          {k: v for t in ("client-nat", "server-nat", "double-nat", "dynamic-filter", "dynamic-filter-nat")
           for k, v in _all(t, ("tls-ccc",), DATA, "pass").items()}),
)


def check(doc: dict) -> list[tuple[Claim, bool | None, list[str]]]:
    """[(claim, holds, ids)] for a results document: holds is True, or False with the ids observed
    otherwise, or None - not in the run (no ids), or not decided: the ids are cells where the lab
    failed (a lab error says nothing about the network, so it neither confirms nor refutes the
    slides), else cells an interrupted run did not run (when no cell that ran refutes the claim)."""
    observed = {s["id"]: "not-run" if is_not_run(s) else s["outcome"] for s in doc["scenarios"]}
    out = []
    for claim in CLAIMS:
        if not all(cid in observed for cid in claim.expect):
            out.append((claim, None, []))
            continue
        errors = [cid for cid in claim.expect if observed[cid] == "error"]
        if errors:
            out.append((claim, None, errors))
            continue
        wrong = [cid for cid, want in claim.expect.items() if observed[cid] not in (want, "not-run")]
        skipped = [cid for cid in claim.expect if observed[cid] == "not-run"]
        out.append((claim, None, skipped) if skipped and not wrong else (claim, not wrong, wrong))
    return out
