"""Kerberos through the slides' pictures, with real packets and the lab's own matrix: `ftlab matrix
--security tls tls-ccc gssapi gssapi-ccc` on client-nat and dynamic-filter. Every cell must be as the
path walk predicts, and every gssapi / gssapi-ccc cell must end as its TLS twin (tls / tls-ccc) does:
devices cannot read MIC-protected commands and 631 replies any more than TLS records, and read the
clear commands after CCC again. The matrix runs a real krb5kdc in the client node's loopback
(lab/matrix/kerberos.py); the server takes its keytab, the client its ticket."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.network]

TWINS = {"gssapi": "tls", "gssapi-ccc": "tls-ccc"}


@pytest.mark.timeout(400)
def test_kerberos_cells_end_as_their_tls_twins(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lab.cli", "matrix", "--topologies", "client-nat", "dynamic-filter",
                           "--security", "tls", "tls-ccc", "gssapi", "gssapi-ccc", "--throughput", "off",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=390)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    cells = {s["id"]: s for s in json.loads((tmp_path / "results.json").read_text())["scenarios"]}
    assert len(cells) == 32 and all(c["matches"] for c in cells.values())
    differ = [f"{cid}: {c['outcome']} {c['stage']} but {cid.replace(f'/{k}/', f'/{t}/')}: "
              f"{cells[cid.replace(f'/{k}/', f'/{t}/')]['outcome']}"
              for cid, c in cells.items() for k, t in TWINS.items()
              if f"/{k}/" in cid and (c["outcome"], c["stage"]) != (cells[cid.replace(f"/{k}/", f"/{t}/")]["outcome"],
                                                                     cells[cid.replace(f"/{k}/", f"/{t}/")]["stage"])]
    assert not differ, "\n".join(differ)
    # not all alike: an encrypted session fails somewhere and CCC (the slides' step 4) rescues it
    assert any(cells[f"{p}/gssapi/{d}"]["outcome"] == "fail" and cells[f"{p}/gssapi-ccc/{d}"]["outcome"] == "pass"
               for p in ("client-nat", "dynamic-filter") for d in ("pasv", "epsv", "port", "eprt"))
    transcript = "\n".join(cells["client-nat/gssapi/pasv"]["transcript"])
    assert "ADAT ****" in transcript and "[MIC] USER" in transcript and "[631] 232" in transcript
