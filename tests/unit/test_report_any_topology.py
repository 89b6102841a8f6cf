"""Issue 12, item 4: a report for any network - its own diagram, its devices as programmed, both
ends' FTP.DATA, what works there, one key per network, and "the lab's model predicts" (never "the
slides") for an engineer's own file, also one named like a shipped picture.

The document is assembled by the runner's own collect() from group files as a worker writes them."""

from __future__ import annotations

import json

from lab import TOPOLOGY_DIR
from lab.matrix import scenario
from lab.matrix.plan import GroupPlan, RunPlan
from lab.matrix.predict import Prediction
from lab.matrix.runner import collect
from lab.matrix.verdict import Verdict
from lab.report import html, results
from lab.topology import loader as topo

S = scenario.load("default")
RULES = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n" \
        "-A FORWARD -p tcp -m multiport --dports 21,990,60000:60100 -j ACCEPT\nCOMMIT\n"


def user_file(tmp_path, name: str, stem: str, ruleset: bool = False):
    text = (TOPOLOGY_DIR / "static-filter.yaml").read_text().replace("name: static-filter", f"name: {name}")
    if ruleset:
        (tmp_path / "fw.rules").write_text(RULES)
        start, end = text.index("      default: drop"), text.index("  server: {kind: host")
        text = text[:start] + "      iptables_save: fw.rules\n" + text[end:]
    path = tmp_path / f"{stem}.yaml"
    path.write_text(text)
    return path


def collected(tmp_path, groups: list[tuple[str, str | None, list[scenario.Cell]]], observed: dict[str, str]) -> dict:
    """collect() over group folders as workers leave them: every cell predicted pass; observed as given."""
    plan = RunPlan(out=tmp_path / "out", size=4096, timeout=5.0, pcap=False, scenario_file=S.source,
                   pki=tmp_path / "pki", heartbeat=None,
                   groups=tuple(GroupPlan(where, alg, tuple(c.id for c in cells)) for where, alg, cells in groups))
    every = []
    for i, (_, _, cells) in enumerate(groups):
        gdir = plan.group_dir(i)
        gdir.mkdir(parents=True)
        (gdir / "topology.json").write_text(json.dumps({"description": "as the worker saw it", "baseline_mbps": 900.0}))
        with open(gdir / "cells.jsonl", "w") as f:
            for c in cells:
                outcome = observed.get(c.id, "pass")
                v = Verdict(outcome, None if outcome == "pass" else "data-connect",
                            "ok" if outcome == "pass" else "fw dropped tcp 198.51.100.10:40000 -> 203.0.113.10:5000 [S]")
                entry = results.scenario_entry(cell=c, spec=S.spec(c), prediction=Prediction("pass", None, "the walk"),
                                               verdict=v, duration_s=0.1)
                entry["why_differs"] = "the slides predict pass (the worker's words)"
                f.write(json.dumps(entry) + "\n")
        every += cells
    doc = results.new_run(run_id="t", size=4096)
    collect(doc, plan, every, S, [])
    doc["finished"] = results.now_iso()
    return doc


def test_a_users_file_is_keyed_by_its_name_and_described_as_it_ran(tmp_path):
    path = user_file(tmp_path, "edge", "edge-v2", ruleset=True)
    cells = S.default_cells(["edge"], ["tls"])
    doc = collected(tmp_path, [(str(path), None, cells)], {"edge/tls/port": "fail"})
    assert list(doc["topologies"]) == ["edge"] == list({s["topology"] for s in doc["scenarios"]})
    info = doc["topologies"]["edge"]
    assert info["shipped"] is False and info["predicted_by"] == "the lab's model" and not info["shadows_shipped"]
    assert info["source"] == str(path) and info["diagram"].startswith("data:image/png;base64,")
    fw = next(d for d in info["devices"] if d["node"] == "fw")
    assert fw["ruleset"]["text"] == RULES and fw["on_path"]
    assert any("iptables-save file" in line for line in fw["settings"])
    assert info["ftpdata"]["server"]["PASSIVEDATAPORTS"] == "(60000,60100)"
    assert info["ftpdata"]["client"]["DATACONNTIME"]
    differs = next(s for s in doc["scenarios"] if s["id"] == "edge/tls/port")
    assert differs["why_differs"].startswith("the lab's model predicts pass (the walk); observed fail at data-connect")
    assert results.validate(doc) == []

    page = html.render(doc)
    assert "slides" not in page.lower().replace("the slides' pictures", ""), "a user's network is not the slides'"
    for text in ("match the lab&#39;s model&#39;s prediction", "Your network: <code>", "the lab&#39;s model predicts its cells",
                 "<h3>What works here</h3>", "3 of 4 ways get through", "encrypted control and data: tls/pasv, tls/epsv, tls/eprt",
                 "ruleset <code>", "-m multiport --dports 21,990,60000:60100", "FTP.DATA statements of both ends",
                 "PASSIVEDATAPORTS (60000,60100)"):
        assert text in page, text


def test_a_users_file_named_like_a_shipped_picture_gets_its_own_diagram_and_no_slides(tmp_path):
    path = user_file(tmp_path, "lan", "mine")          # the static-filter picture, named lan
    cells = S.default_cells(["lan"], ["tls"])
    doc = collected(tmp_path, [(str(path), None, cells)], {"lan/tls/pasv": "fail"})
    info = doc["topologies"]["lan"]
    assert info["shipped"] is False and info["shadows_shipped"] is True
    assert info["diagram"] == collected_diagram(path) != collected_diagram(TOPOLOGY_DIR / "lan.yaml")
    assert "reasoning" not in info or info["reasoning"] is None
    page = html.render(doc)
    assert "Warning: this file's name is also a shipped picture's (lan)" in page
    assert "The slides&#39; analysis, checked" not in page          # the slides' claims are about their lan


def collected_diagram(path) -> str:
    from lab.matrix.facts import diagram_uri

    return diagram_uri(topo.load(path))


def test_shipped_pictures_keep_the_slides(tmp_path):
    cells = S.default_cells(["client-nat"], ["tls"])
    doc = collected(tmp_path, [("client-nat", None, cells)], {"client-nat/tls/port": "pass"})
    info = doc["topologies"]["client-nat"]
    assert info["shipped"] is True and info["predicted_by"] == "the slides" and info["reasoning"]
    page = html.render(doc)
    assert "match the slides&#39; prediction" in page and "Shipped picture" in page


def test_alg_overrides_are_reported_per_router(tmp_path):
    cells = [scenario.Cell("client-nat", "plain", "port", ("alg-kernel",))]
    doc = collected(tmp_path, [("client-nat", "kernel", cells)], {})
    assert doc["topologies"]["client-nat"]["alg_overrides"] == {"kernel": ["nat-c: ALG scapy -> kernel"]}
    assert "<code>kernel</code>: nat-c: ALG scapy -&gt; kernel" in html.render(doc)


def test_a_variation_that_changes_statements_shows_both_ends(tmp_path):
    cells = [scenario.Cell("client-nat", "tls", "pasv", ("ignore-pasv-address",))]
    doc = collected(tmp_path, [("client-nat", None, cells)], {})
    s = doc["scenarios"][0]
    assert s["ftpdata"]["client"]["PASSIVEIGNOREADDR"] == "TRUE"
    assert "FTP.DATA of both ends in this cell" in html.render(doc)


def test_old_documents_without_the_new_keys_still_render():
    from report_fixtures import make_doc

    page = html.render(make_doc(S.default_cells(topologies=["lan"])))
    assert "match the slides&#39; prediction" in page


def test_the_terminal_summary_says_who_predicts_and_what_works(tmp_path, capsys):
    from lab.matrix.cli import _summary

    path = user_file(tmp_path, "lan", "mine")
    doc = collected(tmp_path, [(str(path), None, S.default_cells(["lan"]))], {"lan/tls/port": "fail"})
    _summary(doc, None, tmp_path)
    out = capsys.readouterr().out
    assert "19 of 20 match the lab's model's prediction" in out and "slides" not in out
    assert "  lan: 19 of 20 ways get through; encrypted control and data: " in out
    assert "FAILS" not in out and "holds" not in out          # the slides' claims are about their lan
