"""lab.report.wire: what a device's capture shows of the control channel (cleartext vs TLS)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab.report.wire import describe, seen


def test_capture_shows_cleartext_227_and_tls_records(tmp_path):
    def pkt(ts, src, sport, dst, dport, payload):
        p = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA") / payload
        p.time = ts
        return p

    tls = bytes([0x17, 0x03, 0x03, 0x00, 0x05]) + b"\x8f\x12\x00\xaa\x01"
    inside = [pkt(100.0, "10.1.1.10", 21, "198.51.100.10", 40000, b"227 Entering Passive Mode (10,1,1,10,234,96)\r\n"),
              pkt(101.0, "10.1.1.10", 21, "198.51.100.10", 40001, tls),
              pkt(101.5, "10.1.1.10", 60000, "198.51.100.10", 40002, b"data, not control"),
              pkt(300.0, "10.1.1.10", 21, "198.51.100.10", 40000, b"226 late\r\n")]
    wrpcap(str(tmp_path / "nat-s-eth1.pcap"), inside)
    wrpcap(str(tmp_path / "client-eth0.pcap"), inside)
    items = seen([tmp_path / "nat-s-eth1.pcap", tmp_path / "client-eth0.pcap"], {"nat-s"}, 99.0, 102.0)
    assert [i["kind"] for i in items] == ["cleartext", "ciphertext"]
    assert items[0]["device"] == "nat-s (nat-s-eth1)"
    assert items[0]["text"].endswith("227 Entering Passive Mode (10,1,1,10,234,96)")
    assert "TLS application_data[5]" in items[1]["text"]


def test_describe_binary_is_not_cleartext():
    assert describe(b"\x00\x01\x02binary")[0] == "ciphertext"
    assert describe(b"PORT 10,0,0,1,4,1\r\n") == ("cleartext", "PORT 10,0,0,1,4,1")
