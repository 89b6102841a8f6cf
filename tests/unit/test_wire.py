"""lab.report.wire: what a device's capture shows of the control channel (cleartext vs TLS)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab.report.wire import cells_seen, describe


def test_capture_shows_cleartext_227_and_tls_records(tmp_path):
    def pkt(ts, src, sport, dst, dport, payload):
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA") / payload
        p.time = ts
        return p

    tls = bytes([0x17, 0x03, 0x03, 0x00, 0x05]) + b"\x8f\x12\x00\xaa\x01"
    inside = [pkt(100.0, "10.1.1.10", 21, "198.51.100.10", 40000, b"227 Entering Passive Mode (10,1,1,10,234,96)\r\n"),
              pkt(101.0, "10.1.1.10", 21, "198.51.100.10", 40000, tls),
              pkt(101.5, "10.1.1.10", 21, "198.51.100.10", 40002, b"another session, not this cell's"),
              pkt(300.0, "10.1.1.10", 21, "198.51.100.10", 40000, b"226 late\r\n")]
    wrpcap(str(tmp_path / "nat-s-eth1.pcap"), inside)
    wrpcap(str(tmp_path / "client-eth0.pcap"), inside)
    control = {"role": "control", "opened_by": "client",
               "client_view": {"local": ["198.51.100.10", 40000], "remote": ["203.0.113.1", 21], "ok": True},
               "server_view": {"local": ["10.1.1.10", 21], "remote": ["198.51.100.10", 40000]}}
    cell = {"id": "c", "ended": 101.0, "duration_s": 1.0, "pcaps": ["nat-s-eth1.pcap", "client-eth0.pcap"],
            "connections": [control]}
    items = cells_seen([cell], tmp_path, {"nat-s"})["c"]
    assert [i["kind"] for i in items] == ["cleartext", "ciphertext"]
    assert items[0]["device"] == "nat-s (nat-s-eth1)"
    assert items[0]["text"].endswith("227 Entering Passive Mode (10,1,1,10,234,96)")
    assert "TLS application_data[5]" in items[1]["text"]

def test_describe_binary_is_not_cleartext():
    assert describe(b"\x00\x01\x02binary")[0] == "ciphertext"
    assert describe(b"PORT 10,0,0,1,4,1\r\n") == ("cleartext", "PORT 10,0,0,1,4,1")


# -- a cell's own connections (issue 20) ----------------------------------------------------------

def _seg(ts, src, sport, dst, dport, payload=b"", flags="PA", v6=False):
    from scapy.layers.inet6 import IPv6

    p = Ether() / (IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)) / TCP(sport=sport, dport=dport, flags=flags)
    p = p / payload if payload else p
    p.time = ts
    return p


def _control(conn_client_port, nat_port=None, server="203.0.113.10"):
    """A control connection as the agent and the server log record it, client behind nat-c."""
    return {"role": "control", "opened_by": "client",
            "client_view": {"local": ["192.168.1.10", conn_client_port], "remote": [server, 21], "ok": True},
            "server_view": {"local": [server, 21], "remote": ["198.51.100.1", nat_port or conn_client_port]}}


def test_each_cell_sees_only_its_own_connections_in_both_views_of_a_nat(tmp_path):
    from lab.report.wire import cells_seen

    # two cells 50 ms apart (a time window with any slack mixes them); each capture of nat-c
    # sees one view: eth0 the client's own addresses, eth1 the translated source
    a, b = 40001, 40002
    inside = [_seg(100.00, "192.168.1.10", a, "203.0.113.10", 21, b"USER lab\r\n"),
              _seg(100.01, "192.168.1.10", a, "203.0.113.10", 21, b"PASS secret-a\r\n"),
              _seg(100.02, "192.168.1.10", 41000, "203.0.113.10", 60005, flags="S"),
              _seg(100.05, "192.168.1.10", b, "203.0.113.10", 21, b"USER lab\r\n"),
              _seg(100.06, "192.168.1.10", b, "203.0.113.10", 21, b"PASS secret-b\r\n")]
    outside = [_seg(p.time, "198.51.100.1", p[TCP].sport, p[IP].dst, p[TCP].dport,
                    bytes(p[TCP].payload), flags=str(p[TCP].flags)) for p in inside]
    wrpcap(str(tmp_path / "nat-c-eth0.pcap"), inside)
    wrpcap(str(tmp_path / "nat-c-eth1.pcap"), outside)
    pcaps = ["nat-c-eth0.pcap", "nat-c-eth1.pcap"]
    data = {"role": "data", "opened_by": "client",
            "client_view": {"local": ["192.168.1.10", 41000], "remote": ["203.0.113.10", 60005], "ok": False},
            "server_view": None}
    cells = [{"id": "a", "ended": 100.04, "duration_s": 0.04, "pcaps": pcaps, "connections": [_control(a), data]},
             {"id": "b", "ended": 100.09, "duration_s": 0.04, "pcaps": pcaps, "connections": [_control(b)]}]
    found = cells_seen(cells, tmp_path, {"nat-c"})
    texts_a = [i["text"] for i in found["a"]]
    assert all(f":{b} " not in t for t in texts_a), "cell b's session is not cell a's evidence"
    assert "192.168.1.10:40001 -> 203.0.113.10:21  PASS ****" in texts_a
    assert "198.51.100.1:40001 -> 203.0.113.10:21  PASS ****" in texts_a      # the translated view
    assert not any("secret" in t for c in found.values() for i in c for t in [i["text"]])
    syn = [i for i in found["a"] if "data connection" in i["text"]]
    assert [i["device"] for i in syn] == ["nat-c (nat-c-eth0)"] and syn[0]["kind"] == "drop"
    assert "only SYNs" in syn[0]["text"]
    assert {i["device"] for i in found["b"]} == {"nat-c (nat-c-eth0)", "nat-c (nat-c-eth1)"}
    assert all(f":{a} " not in i["text"] for i in found["b"])


def test_ipv6_connections_are_selected_too(tmp_path):
    from lab.report.wire import cells_seen

    tls = bytes([0x16, 0x03, 0x01, 0x00, 0x02]) + b"\x01\x00"
    pkts = [_seg(10.0, "fd00:1::10", 50000, "2001:db8:5::10", 21, b"AUTH TLS\r\n", v6=True),
            _seg(10.1, "fd00:1::10", 50000, "2001:db8:5::10", 21, tls, v6=True),
            _seg(10.2, "fd00:1::10", 50999, "2001:db8:5::10", 21, b"USER other\r\n", v6=True)]
    wrpcap(str(tmp_path / "nat-c-eth0.pcap"), pkts)
    conn = {"role": "control", "client_view": {"local": ["fd00:1::10", 50000], "remote": ["2001:db8:5::10", 21]}}
    found = cells_seen([{"id": "v6", "ended": 10.5, "duration_s": 1.0, "pcaps": ["nat-c-eth0.pcap"],
                         "connections": [conn]}], tmp_path)
    assert [i["kind"] for i in found["v6"]] == ["cleartext", "ciphertext"]
    assert found["v6"][0]["text"] == "[fd00:1::10]:50000 -> [2001:db8:5::10]:21  AUTH TLS"
    assert "TLS handshake[2]" in found["v6"][1]["text"]


def test_attach_replaces_the_time_window_evidence_and_the_page_masks_old_documents(tmp_path):
    from report_fixtures import S, make_doc

    from lab.report import html
    from lab.report.wire import attach

    (tmp_path / "pcaps").mkdir()
    wrpcap(str(tmp_path / "pcaps" / "nat-c-eth0.pcap"),
           [_seg(100.0, "192.168.1.10", 40001, "203.0.113.10", 21, b"PASS secret\r\n")])
    doc = make_doc(S.default_cells(topologies=["client-nat"], security=["plain"], data=["pasv"]))
    s = doc["scenarios"][0]
    s.update(ended=100.1, duration_s=0.2, pcaps=["pcaps/nat-c-eth0.pcap"], connections=[_control(40001)],
             wire=[{"device": "nat-c", "kind": "cleartext", "text": "1.2.3.4:1 -> 5.6.7.8:21  PASS other-cells"}])
    attach(doc, tmp_path)
    assert [i["text"] for i in s["wire"]] == ["192.168.1.10:40001 -> 203.0.113.10:21  PASS ****"]
    old = make_doc(S.default_cells(topologies=["client-nat"], security=["plain"], data=["pasv"]))
    old["scenarios"][0]["wire"] = [{"device": "nat-c", "kind": "cleartext",
                                    "text": "1.2.3.4:1 -> 5.6.7.8:21  USER lab | PASS hunter2"}]
    page = html.render(old)
    assert "hunter2" not in page and "PASS ****" in page and "Selected by time window" in page
