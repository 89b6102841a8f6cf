"""FTPKEEPALIVE: TCP keepalive on the control connection, so that a firewall does not forget it.

A control connection is silent while a long transfer runs on the data connection; a stateful
firewall or NAT that drops idle connections after its timeout then forgets it, and the 226 at the
end never arrives. TCP keepalive probes (an empty segment the peer answers) keep the firewall's
state fresh without a byte of FTP.

z/OS names the statement FTPKEEPALIVE for the server and the client ("TCP keepalive on control
connection"); its default, range and exact timing are UNCONFIRMED in the reference
(reference/zos-ftp-and-rfcs.md). The lab's reading: FTPKEEPALIVE n, n > 0, sends the first probe
after n seconds of silence and then one every n seconds (gives up after PROBES unanswered); 0, the
lab's default, leaves keepalive off. Unlike DATAKEEPALIVE (0 or 60-86400) the lab takes any value
from 1 s, so that a test need not wait a minute (a z/OS may refuse values below 60: UNCONFIRMED).
"""

from __future__ import annotations

import socket

PROBES = 5


def keep_alive(sock: socket.socket, seconds: int) -> None:
    """Turn on keepalive for `sock` with the FTPKEEPALIVE interval (0: leave it off)."""
    if seconds <= 0:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(seconds))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(seconds))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBES)
