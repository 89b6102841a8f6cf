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


# -- recording a cell's own connections -----------------------------------------------------------

def test_the_agent_records_the_connections_its_client_makes():
    import socket

    from lab.matrix.agent import ConnRecorder

    server = socket.create_server(("127.0.0.1", 0))      # the kernel completes handshakes in its backlog
    port = server.getsockname()[1]
    with ConnRecorder() as rec:
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
        closed.close()
        try:
            socket.create_connection(("127.0.0.1", dead), timeout=2)
        except OSError:
            pass
    after = socket.create_connection(("127.0.0.1", port), timeout=5)      # not recorded: outside the cell
    ops = [(x["op"], x["ok"]) for x in rec.conns]
    assert ops == [("connect", True), ("listen", True), ("connect", False)]
    assert rec.conns[0]["local"] == list(c.getsockname()) and rec.conns[0]["remote"] == ["127.0.0.1", port]
    assert rec.conns[1]["local"] == list(lsock.getsockname()) and rec.conns[1]["remote"] is None
    assert rec.conns[2]["remote"] == ["127.0.0.1", dead]
    for s in (c, lsock, after, server):
        s.close()


SERVER_LOG = """\
2026-12-07T23:25:32.897Z [1 198.51.100.1:52176] < 220 ready.
2026-12-07T23:25:32.899Z [1 198.51.100.1:52176] > PASS ****
2026-12-07T23:25:32.900Z [1 198.51.100.1:52176] < 227 Entering Passive Mode (203,0,113,10,234,235)
2026-12-07T23:25:32.901Z [1 198.51.100.1:52176] > PORT 198,51,100,1,143,225
2026-12-07T23:25:32.902Z [2 198.51.100.1:52200] < 220 ready.
""".splitlines()


def test_cell_connections_join_the_clients_and_the_servers_views():
    from lab.matrix import scenario, worker

    model = loader.load("client-nat")
    cell = scenario.Cell("client-nat", "plain", "pasv")
    conns = [{"op": "connect", "local": ["192.168.1.10", 52176], "remote": ["203.0.113.10", 21], "ok": True},
             {"op": "connect", "local": ["192.168.1.10", 41000], "remote": ["203.0.113.10", 60139], "ok": True},
             {"op": "listen", "local": ["192.168.1.10", 36833], "remote": None, "ok": True},
             {"op": "accept", "local": ["192.168.1.10", 36833], "remote": ["203.0.113.10", 20], "ok": True}]
    out = worker.cell_connections(conns, SERVER_LOG, model, cell, S.spec(cell))
    control, passive, active = out
    assert control["role"] == "control"
    assert control["server_view"] == {"local": ["203.0.113.10", 21], "remote": ["198.51.100.1", 52176]}
    assert passive["opened_by"] == "client" and passive["server_view"]["local"] == ["203.0.113.10", 60139]
    assert passive["server_view"]["remote"] == ["198.51.100.1", 41000]
    assert active["opened_by"] == "server" and active["client_view"]["remote"] == ["203.0.113.10", 20]
    assert active["server_view"] == {"local": ["203.0.113.10", 20], "remote": ["198.51.100.1", 36833]}
    assert ["198.51.100.1", 52176] in control["path_views"]["client"]
    doc = make_doc([cell])
    doc["scenarios"][0]["connections"] = out
    assert results.validate(doc) == []


def test_a_client_the_agent_does_not_run_gets_the_servers_view():
    from lab.matrix import scenario, worker

    model = loader.load("client-nat")
    cell = scenario.Cell("client-nat", "plain", "pasv")
    out = worker.cell_connections([], SERVER_LOG[:3], model, cell, S.spec(cell))
    assert [c["role"] for c in out] == ["control", "data"]
    assert out[0]["client_view"] is None and out[0]["server_view"]["remote"] == ["198.51.100.1", 52176]
    mine = str(model.address_of(model.ftp.client, 4))
    assert [mine, 52176] in out[0]["path_views"]["client"]       # the client's own address, the port kept


def test_a_design_that_states_no_statement_is_told_so():
    doc = make_doc(S.default_cells(topologies=["client-nat"], security=["tls"]))
    doc["topologies"]["client-nat"].update(facts.topology_facts(loader.load("client-nat"), shipped=True))
    assert "states no FTP.DATA statement here" in html.render(doc)
    doc = make_doc(S.default_cells(topologies=["static-filter"], security=["tls"]))
    doc["topologies"]["static-filter"].update(facts.topology_facts(loader.load("static-filter"), shipped=True))
    page = html.render(doc)
    assert "states no FTP.DATA statement here" not in page and "the design's file does not state it" in page
    row = next(r for r in _ftpdata_rows(page) if "PASSIVEDATAPORTS" in r)
    assert "lab default" not in row
