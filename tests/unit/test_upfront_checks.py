"""What would fail in a run is refused when the file is loaded (issue 18, item 4): a link address
the lab cannot route (loopback, multicast, link-local, ...), and (lab.ftps) every file an FTP.DATA
or an AT-TLS policy names, and a policy that leaves no cipher its TLS versions can use."""

from __future__ import annotations

import ipaddress

import pytest

from lab.cli import main
from lab.errors import InputError
from lab.topology import loader as topo

LAN = """name: special
description: a LAN with special addresses
ftp: {{client: client, server: server, server_address: "{server}"}}
nodes:
  client: {{kind: host}}
  server: {{kind: host}}
links:
  - {{client: "{client}", server: "{server_end}"}}
"""


def lan(client: str, server: str) -> str:
    return LAN.format(client=client, server=server.split("/")[0].strip("[]").split(",")[0], server_end=server)


@pytest.mark.parametrize(("client", "server", "what"), [
    ("127.0.0.1/8", "127.0.0.2/8", "a loopback address (127.0.0.0/8)"),
    ("224.0.0.1/24", "224.0.0.2/24", "a multicast address (224.0.0.0/4)"),
    ("169.254.0.1/16", "169.254.0.2/16", "a link-local address (169.254.0.0/16)"),
    ("0.0.0.1/8", "0.0.0.2/8", "in 0.0.0.0/8"),
    ("240.0.0.1/24", "240.0.0.2/24", "a reserved address (240.0.0.0/4)"),
    ("255.255.255.255/32", "255.255.255.254/32", "the limited broadcast address"),
    ("::1/128", "::2/128", "a loopback address (::1)"),
    ("::/127", "::1/127", "the unspecified address"),
    ("::ffff:192.0.2.1/120", "::ffff:192.0.2.2/120", "an IPv4-mapped IPv6 address"),
    ("fec0::1/64", "fec0::2/64", "a site-local address"),
])
def test_a_link_address_the_lab_cannot_route_is_refused(client, server, what):
    with pytest.raises(InputError) as info:
        topo.loads(lan(client, server), "net.yaml")
    text = str(info.value)
    assert f"net.yaml:8: links[0].client: {ipaddress.ip_interface(client).ip} is not a unicast interface address: it is {what}" in text, text


def test_ordinary_addresses_still_load():
    for client, server in (("192.168.10.10/24", "192.168.10.20/24"), ("100.64.0.1/24", "100.64.0.2/24"),
                           ("2001:db8::1/64", "2001:db8::2/64"), ("fd00::1/64", "fd00::2/64"),
                           ("198.51.100.10/31", "198.51.100.11/31")):
        assert topo.loads(lan(client, server), "net.yaml").name == "special"


def test_topo_check_exits_2_on_a_loopback_link(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_text(lan("127.0.0.1/8", "127.0.0.2/8"))
    assert main(["topo", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:8: links[0].client: 127.0.0.1 is not a unicast interface address: it is a loopback address" in err
    assert f"{path}:8: links[0].server: 127.0.0.2 is not a unicast interface address: it is a loopback address" in err
