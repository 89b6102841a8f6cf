"""Evidence a change board can rely on (issue 20): the FTP.DATA table says what the design wrote and
what the lab added, the page shows its charts, results.json names no absolute machine path, and a
cell's "On the wire" holds the cell's own connections only."""

from __future__ import annotations

import json
import re

from report_fixtures import S, make_doc

from lab.matrix import facts
from lab.report import html, results, write_all
from lab.topology import loader

# -- the FTP.DATA table ---------------------------------------------------------------------------

def test_ftpdata_marks_the_labs_defaults_apart_from_the_designs_statements():
    fd = facts.topology_facts(loader.load("client-nat"), shipped=True)["ftpdata"]
    defaults = fd["lab_defaults"]
    assert set(defaults["server"]) == {"TLSRFCLEVEL", "MAXSESSIONSPERADDRESS"}
    assert set(defaults["client"]) == {"DATACONNTIME"}
    # a statement the design writes is the design's, even when the lab has a default for it
    model = loader.load("static-filter")
    fd = facts.topology_facts(model, shipped=True)["ftpdata"]
    assert "PASSIVEDATAPORTS" in model.ftp.server_statements
    assert "PASSIVEDATAPORTS" in fd["server"] and "PASSIVEDATAPORTS" not in fd["lab_defaults"]["server"]


def _ftpdata_rows(page: str) -> list[str]:
    table = page[page.index('<table class="ftpdata">'):]
    return table[:table.index("</table>")].splitlines()


def test_the_page_shows_defaults_as_defaults():
    doc = make_doc(S.default_cells(topologies=["client-nat"], security=["tls"]))
    doc["topologies"]["client-nat"].update(facts.topology_facts(loader.load("client-nat"), shipped=True))
    page = html.render(doc)
    rows = _ftpdata_rows(page)
    for key in ("MAXSESSIONSPERADDRESS 0", "TLSRFCLEVEL RFC4217", "DATACONNTIME 1.5"):
        row = next(r for r in rows if key in r)
        assert "lab default" in row, row
    assert "the design's file does not state it" in page


def test_an_older_document_without_defaults_says_it_cannot_tell():
    doc = make_doc(S.default_cells(topologies=["lan"], security=["tls"]))
    doc["topologies"]["lan"]["ftpdata"] = {"server": {"TLSRFCLEVEL": "RFC4217"}, "client": {}}
    page = html.render(doc)
    assert "does not say which of these statements the design wrote" in page


# -- charts and paths -----------------------------------------------------------------------------

def test_index_shows_the_charts_it_writes(tmp_path):
    doc = make_doc(S.default_cells(topologies=["lan"]))
    write_all(doc, tmp_path)
    page = (tmp_path / "index.html").read_text()
    for png in ("matrix.png", "throughput.png"):
        assert (tmp_path / png).exists()
        assert re.search(rf'<img[^>]+src="{png}"', page), png
        assert f'<a href="{png}"' in page


def test_results_json_holds_no_absolute_machine_path(tmp_path):
    doc = make_doc(S.default_cells(topologies=["client-nat"], security=["tls"]))
    doc["scenario_file"] = str(S.source)
    doc["topologies"]["client-nat"].update(facts.topology_facts(loader.load("client-nat"), shipped=True))
    out = tmp_path / "reports" / "run1"
    results.write(doc, out)
    text = (out / "results.json").read_text()
    written = json.loads(text)
    assert not written["scenario_file"].startswith("/")
    assert (out / written["scenario_file"]).resolve() == S.source.resolve()
    source = written["topologies"]["client-nat"]["source"]
    assert (out / source).resolve() == loader.load("client-nat").source.resolve()
    for root in ("/work/", "/tmp/", "/home/", "/root/", "/usr/"):
        assert f'"{root}' not in text and f" {root}" not in text, root


# -- the v6 diagram -------------------------------------------------------------------------------

def test_v6_cells_get_the_diagram_of_the_v6_plan():
    model = loader.load("client-nat")
    plan = facts.v6_plan(model)
    assert plan.ftp.server_address == model.ftp.server_address6
    for node in plan.nodes.values():
        for intf in node.interfaces:
            if intf.address6 is not None:
                assert intf.address.version == 6
    assert model.ftp.server_address.version == 4, "the model itself is not changed"
    info = facts.topology_facts(model, shipped=True)
    assert info["diagram_v6"].startswith("data:image/png;base64,") and info["diagram_v6"] != info["diagram"]
    doc = make_doc(S.default_cells(topologies=["client-nat"], security=["tls"]))
    doc["topologies"]["client-nat"].update(info)
    assert "IPv6 plan" not in html.render(doc), "no v6 cell, no v6 diagram"
    v6 = dict(doc["scenarios"][1], id="client-nat/tls/epsv+v6", variant="v6")
    doc["scenarios"].append(v6)
    page = html.render(doc)
    assert info["diagram_v6"] in page and info["diagram"] in page
    assert "IPv6 plan: the +v6 cells" in page and results.validate(doc) == []
