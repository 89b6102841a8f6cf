"""A neighbour cannot fool the devices (issue 18): segments forged from each side of a real router.

Every attack is the real thing on a shipped picture: a real control connection through the device,
the attacker's node learning the live sequence numbers by capturing its own interface, and one
forged segment sent as a raw frame to the router (scapy, L2). Each test asserts that nothing was
opened (no pinhole, no mapping, no rewrite), that the port the forgery asked for stays closed, and
that the drop was observed with its reason. A control case (the same announcement sent for real,
or the same forgery with the check it defeats switched off in the unit tests) shows each attack
would have worked: tests/unit/test_stream_receipts.py.

What the kernel's own FTP helper (nf_conntrack_ftp, the reference device) does under the same
attacks is measured here too, on the same routers (strict reverse-path filter included).
"""

from __future__ import annotations

import pytest

from lab.network.sandbox import call_in_sandbox

pytestmark = [pytest.mark.network]

# The attacker: one real control connection to ADDR:21 through the router, a capture of its own
# interface for the live sequence numbers, then one forged segment (JSON argv[1] says which).
FORGE = r"""
import json, socket, sys, time
from scapy.all import AsyncSniffer, Ether, IP, IPv6, TCP, Raw, conf, fragment, sendp, get_if_hwaddr
conf.verb = 0
a = json.loads(sys.argv[1])
fam = socket.AF_INET6 if ":" in a["server"] else socket.AF_INET
L3 = IPv6 if fam == socket.AF_INET6 else IP
sniff = AsyncSniffer(iface=a["iface"], filter="tcp port 21", store=True)
sniff.start()
time.sleep(0.5)
out = {}
if a["role"] == "client":
    s = socket.socket(fam)
    s.settimeout(5)
    s.connect((a["server"], 21))
    f = s.makefile("rb")
    out["banner"] = f.readline().decode().rstrip()
    s.sendall(b"NOOP\r\n")
    out["noop"] = f.readline().decode().rstrip()
else:                                    # a hostile server: its own listening socket
    srv = socket.socket(fam)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 21))
    srv.listen()
    print("LISTENING", flush=True)
    s, _ = srv.accept()
    s.settimeout(5)
    s.sendall(b"220 hostile\r\n")
    f = s.makefile("rb")
    out["got"] = f.readline().decode().rstrip()
    s.sendall(b"200 ok\r\n")
time.sleep(0.3)
pkts = [p for p in sniff.stop() if TCP in p and L3 in p]
me_port, peer_port = s.getsockname()[1], s.getpeername()[1]
def nxt(port):       # the next sequence number after the last segment sent from `port`
    last = [p for p in pkts if p[TCP].sport == port][-1][TCP]
    return (last.seq + len(bytes(last.payload)) + (1 if last.flags & 0x03 else 0)) & 0xFFFFFFFF
mine, theirs = nxt(me_port), nxt(peer_port)
if a["claim"] == "peer":          # speak for the other end of this very connection
    tcp = TCP(sport=peer_port, dport=me_port, seq=theirs, ack=mine, flags="PA")
else:                             # speak as itself, on its own connection, with one thing wrong
    tcp = TCP(sport=me_port, dport=peer_port, seq=(mine + a.get("seq_shift", 0)) & 0xFFFFFFFF, ack=theirs,
              flags="PA")
ip = L3(src=a["claim_addr"], dst=a["claim_dst"])
if a.get("ttl"):
    setattr(ip, "ttl" if L3 is IP else "hlim", a["ttl"])
packet = ip / tcp / Raw(a["payload"].encode())
pieces = fragment(packet, fragsize=8) if a.get("fragments") else [packet]
src_mac = a.get("src_mac") or get_if_hwaddr(a["iface"])
sendp([Ether(src=src_mac, dst=a["gateway_mac"]) / p for p in pieces], iface=a["iface"])
out["frames"] = len(pieces)
time.sleep(0.3)
if a.get("then"):                 # what the real socket sends after the forgery
    s.sendall(a["then"].encode())
    out["then"] = f.readline().decode().rstrip()
print(json.dumps(out), flush=True)
if a["role"] == "server":
    time.sleep(3)                 # the connection stays up while the harness dials
s.close()
"""

# Does the forged announcement open anything? Dial the port it named, from where its pinhole
# or mapping would admit a connection.
DIAL = r"""
import json, socket, sys
c = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
c.settimeout(1.5)
try:
    c.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as exc:
    print(str(exc) or type(exc).__name__)
"""

# A plain control connection that waits (the victim whose stream a hostile server forges into).
WAITER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 21), timeout=10)
f = s.makefile("rb")
f.readline()
s.sendall(b"NOOP\r\n")
f.readline()
time.sleep(float(sys.argv[2]))
s.close()
"""

# A responder on the server's port 21 for the client-side attacks.
ECHO = r"""
import socket, threading
srv = socket.create_server(("::", 21), family=socket.AF_INET6, dualstack_ipv6=True)
def serve(c):
    c.sendall(b"220 echo\r\n")
    for line in c.makefile("rb"):
        c.sendall(b"200 " + line.rstrip(b"\r\n") + b"\r\n")
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

LISTEN22 = r"""
import socket, time
s = socket.create_server(("::", 22), family=socket.AF_INET6, dualstack_ipv6=True)
print("LISTENING", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


def _mac(net, node: str, intf: str) -> str:
    import json

    return json.loads(net.run(node, ["ip", "-j", "link", "show", "dev", intf]).stdout)[0]["address"]


def _wait_listening(net, node: str, port: int) -> None:
    import time

    deadline = time.monotonic() + 5
    while f":{port} " not in net.run(node, ["ss", "-ltn"]).stdout:
        assert time.monotonic() < deadline, f"{node}: nothing listens on {port}"
        time.sleep(0.05)


def in_sandbox_attack(picture: str, alg: str | None, attack: dict) -> dict:
    """Bring the picture up, run one attack, return what the attacker saw, whether the port it
    asked for opened, the devices' events and the router's conntrack expectations."""
    import json
    import subprocess
    import sys
    import time

    from lab.matrix.jsonl import read_all as read
    from lab.network.net import LabNet
    from lab.topology.loader import load

    topo = load(picture)
    with LabNet(topo, alg=alg) as net:
        node = attack["node"]
        me = topo.nodes[node].interfaces[0]
        gateway = next(i for i in topo.nodes[me.peer].interfaces if i.peer == node)
        args = {**attack["args"], "iface": me.name, "gateway_mac": _mac(net, me.peer, gateway.name)}
        listener = attack["dial_from"][1]
        net.popen(listener, [sys.executable, "-c", LISTEN22], stdout=subprocess.DEVNULL)
        _wait_listening(net, listener, 22)
        if args["role"] == "client":
            net.popen("server", [sys.executable, "-c", ECHO])
            _wait_listening(net, "server", 21)
        proc = net.popen(node, [sys.executable, "-c", FORGE, json.dumps(args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if args["role"] == "server":
            assert proc.stdout.readline().strip() == "LISTENING", proc.stderr.read()
            net.popen("client", [sys.executable, "-c", WAITER, attack["dial"], "10"])
        line = proc.stdout.readline()
        result = json.loads(line) if line.strip() else {"error": proc.stderr.read()[-2000:]}
        # before the dial, which would use up an expectation the kernel helper made
        expect = net.run(attack.get("router", "fw"), ["conntrack", "-L", "expect"], check=False)
        dialer, target = attack["dial_from"][0], attack["dial_from"][2]
        dialed = net.run(dialer, [sys.executable, "-c", DIAL, target, "22"], check=False, timeout=10).stdout.strip()
        proc.kill()
        time.sleep(0.3)
        return {"attacker": result, "dialed": dialed, "events": read(net.events_path),
                "expectations": [x for x in expect.stdout.splitlines() if x.strip() and "conntrack" not in x]}


def _opened(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] in ("pinhole-open", "mapping-open", "rewrite")]


def _drops(events: list[dict], device: str) -> list[str]:
    return [e["reason"] for e in events if e["type"] == "drop" and e.get("device") == device]


CLIENT4, SERVER4, CLIENT6, SERVER6 = "198.51.100.10", "203.0.113.10", "2001:db8:c::10", "2001:db8:5::10"
PASV_22 = "227 Entering Passive Mode (203,0,113,10,0,22)\r\n"
PORT_22 = "PORT 198,51,100,10,0,22\r\n"
RPF = "strict reverse-path filter"

#: Who dials the port a forgery asked for: a 227/229 opens the client's way to the server, a
#: PORT/EPRT the server's way to the client. (dialer, listener, address dialed)
TO_SERVER4, TO_SERVER6 = ("client", "server", SERVER4), ("client", "server", SERVER6)
TO_CLIENT4, TO_CLIENT6 = ("server", "client", CLIENT4), ("server", "client", CLIENT6)


def _client(server: str, **args) -> dict:
    return {"node": "client", "args": {"role": "client", "server": server, **args}}


def _server(server: str, dial: str, **args) -> dict:
    return {"node": "server", "dial": dial, "args": {"role": "server", "server": server, **args}}


PRIVATE_227 = "227 Entering Passive Mode (10,1,1,10,0,22)\r\n"
#: how a server's own 227 is made one its client never takes: (id, forge arguments, drop reason)
OWN_227 = [("ttl-1", {"ttl": 1}, "expires at this router"),
           ("out-of-window", {"seq_shift": 50_000_000}, "beyond the window"),
           ("retransmitted-with-other-bytes", {"seq_shift": -len("200 ok\r\n")}, "other bytes")]

#: attack id -> (picture, the attack, the reason its drop must name). On dynamic-filter the
#: client is on fw's outside link, the server on its inside link.
ATTACKS = {
    # the client forges the server's 227 naming server:22
    "v4-forged-227": ("dynamic-filter", {**_client(SERVER4, claim="peer", claim_addr=SERVER4, claim_dst=CLIENT4,
                                                   payload=PASV_22), "dial_from": TO_SERVER4}, RPF),
    "v4-forged-227-in-fragments": ("dynamic-filter", {**_client(
        SERVER4, claim="peer", claim_addr=SERVER4, claim_dst=CLIENT4, payload=PASV_22, fragments=True),
        "dial_from": TO_SERVER4}, RPF),
    "v6-forged-229-hop-limit-1": ("dynamic-filter", {**_client(
        SERVER6, claim="peer", claim_addr=SERVER6, claim_dst=CLIENT6, ttl=1,
        payload="229 Entering Extended Passive Mode (|||22|)\r\n"), "dial_from": TO_SERVER6}, RPF),
    # a hostile server forges the client's PORT / EPRT naming client:22
    "v4-server-forges-port": ("dynamic-filter", {**_server(
        SERVER4, SERVER4, claim="peer", claim_addr=CLIENT4, claim_dst=SERVER4, payload=PORT_22),
        "dial_from": TO_CLIENT4}, RPF),
    "v6-server-forges-eprt": ("dynamic-filter", {**_server(
        SERVER6, SERVER6, claim="peer", claim_addr=CLIENT6, claim_dst=SERVER6, payload=f"EPRT |2|{CLIENT6}|22|\r\n"),
        "dial_from": TO_CLIENT6}, RPF),
    # a neighbour on the client's link (another link-layer address) speaks for the client
    "v4-neighbour-speaks-for-the-client": ("dynamic-filter", {**_client(
        SERVER4, claim="self", claim_addr=CLIENT4, claim_dst=SERVER4, src_mac="02:66:66:66:66:66", payload=PORT_22,
        then="NOOP\r\n"), "dial_from": TO_CLIENT4}, "another side of the router"),
    # the client's own PORT that dies here (TTL 1); the server gets a NOOP at the same place
    "v4-port-ttl-1": ("dynamic-filter", {**_client(
        SERVER4, claim="self", claim_addr=CLIENT4, claim_dst=SERVER4, ttl=1, payload=PORT_22, then="NOOP\r\n"),
        "dial_from": TO_CLIENT4}, "expires at this router"),
    "v6-eprt-hop-limit-1": ("dynamic-filter", {**_client(
        SERVER6, claim="self", claim_addr=CLIENT6, claim_dst=SERVER6, ttl=1, payload=f"EPRT |2|{CLIENT6}|22|\r\n",
        then="NOOP\r\n"), "dial_from": TO_CLIENT6}, "expires at this router"),
    # the NOOP was read; a "retransmission" of its bytes carries a PORT instead
    "v4-retransmission-with-other-bytes": ("dynamic-filter", {**_client(
        SERVER4, claim="self", claim_addr=CLIENT4, claim_dst=SERVER4, seq_shift=-6, payload=PORT_22),
        "dial_from": TO_CLIENT4}, "other bytes"),
    "v4-out-of-window": ("dynamic-filter", {**_client(
        SERVER4, claim="self", claim_addr=CLIENT4, claim_dst=SERVER4, seq_shift=50_000_000, payload=PORT_22),
        "dial_from": TO_CLIENT4}, "beyond the window"),
    # dynamic-filter-nat: fw is the scapy ALG and the dynamic filter; the server forges the
    # client's PORT as fw sees the client's packets (to fw's public address)
    # server-nat: a hostile server behind nat-s (the scapy ALG) sends its own 227 naming its port 22
    # in a way the client never takes: it expires at nat-s, starts far out of the client's window,
    # or "retransmits" its last reply with other bytes
    **{f"alg-own-227-{how}": ("server-nat", {**_server(
        "10.1.1.10", "203.0.113.1", claim="self", claim_addr="10.1.1.10", claim_dst=CLIENT4, payload=PRIVATE_227,
        **extra), "dial_from": ("client", "server", "203.0.113.1"), "router": "nat-s"}, reason)
       for how, extra, reason in OWN_227},
    "alg-server-forges-port": ("dynamic-filter-nat", {**_server(
        "10.1.1.10", "203.0.113.1", claim="peer", claim_addr=CLIENT4, claim_dst="203.0.113.1", payload=PORT_22),
        "dial_from": ("server", "client", CLIENT4)}, RPF),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_forged_or_undeliverable_segment_opens_nothing(attack):
    picture, spec, reason = ATTACKS[attack]
    out = call_in_sandbox(__file__, "in_sandbox_attack", picture, None, spec, timeout=110)
    got, events = out["attacker"], out["events"]
    assert "error" not in got, got
    assert out["dialed"] != "connected" and "timed out" in out["dialed"], out["dialed"]
    assert not _opened(events), _opened(events)
    router = spec.get("router", "fw")
    assert any(reason in r for r in _drops(events, router)), _drops(events, router)
    if spec["args"].get("fragments"):
        assert got["frames"] >= 8                         # it really went out in pieces
    if spec["args"].get("then"):
        assert got["then"] == "200 NOOP", got             # the server got the NOOP, not the forgery


# -- the kernel helper (the reference device) under the same attacks, measured ------------------------

#: server-nat with the kernel helper on nat-s (client -> internet -> nat-s -> server): the server
#: forges the client's PORT from the inside; the client's own PORT leaves with TTL 2, so that it
#: expires at nat-s (the internet router takes one).
HELPER_ATTACKS = {
    "server-forges-port": {**_server("10.1.1.10", "203.0.113.1", claim="peer", claim_addr=CLIENT4,
                                     claim_dst="203.0.113.1", payload=PORT_22),
                           "dial_from": ("server", "client", CLIENT4), "router": "nat-s"},
    **{f"own-227-{how}": {**_server("10.1.1.10", "203.0.113.1", claim="self", claim_addr="10.1.1.10",
                                    claim_dst=CLIENT4, payload=PRIVATE_227, **extra),
                          "dial_from": ("client", "server", "203.0.113.1"), "router": "nat-s"}
       for how, extra, _ in OWN_227},
    "port-expiring-at-the-helper": {**_client("203.0.113.1", claim="self", claim_addr=CLIENT4, claim_dst="203.0.113.1",
                                              ttl=2, payload=PORT_22, then="NOOP\r\n"),
                                    "dial_from": ("server", "client", CLIENT4), "router": "nat-s"},
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("attack", list(HELPER_ATTACKS))
def test_the_kernel_helper_under_the_same_attacks(attack):
    """Measured, not ours to fix: with the routers' strict reverse-path filter the forged PORT never
    reaches conntrack; a segment that expires at the router dies in the forwarding path before the
    helper's hook (POSTROUTING), and one out of the window is INVALID to conntrack, so the helper
    never reads either; but a retransmission with other bytes is read (see below)."""
    out = call_in_sandbox(__file__, "in_sandbox_attack", "server-nat", "kernel", HELPER_ATTACKS[attack],
                          timeout=110)
    got = out["attacker"]
    assert "error" not in got, got
    if attack == "own-227-retransmitted-with-other-bytes":
        # the reference's own weakness, measured: conntrack takes the overlapping segment (it is
        # in the window), the helper reads the 227 at a line start it remembered and expects a
        # connection to server:22, while the client trimmed those bytes and never saw a 227
        assert [x for x in out["expectations"] if "dport=22 " in x], out["expectations"]
        return
    assert out["expectations"] == [], out["expectations"]      # (nat-s lets the server dial out anyway)
    if attack == "server-forges-port":
        assert any(RPF in r for r in _drops(out["events"], "nat-s")), out["events"]
    elif attack == "port-expiring-at-the-helper":
        assert got["then"] == "200 NOOP", got
