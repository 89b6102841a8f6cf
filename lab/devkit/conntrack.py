"""Connection-tracking settings a device asks for in its node's own network namespace.

How long the kernel keeps an idle established TCP connection (nf_conntrack_tcp_timeout_established,
5 days by default) is per network namespace on this kernel, so each router of a picture has its
own, as each real firewall has its own idle timeout. When it runs out, the connection's state is
gone: its next packet is no longer part of an admitted connection (conntrack picks it up again
as NEW), and a stateful filter drops it - the classic FTP failure where a long transfer succeeds
but the control connection's 226 never arrives.
"""

from __future__ import annotations

ESTABLISHED = "net.netfilter.nf_conntrack_tcp_timeout_established"


def idle_sysctls(idle_timeout: int | None) -> dict[str, str]:
    """The namespace sysctls for an idle timeout of established TCP connections (None: the kernel's)."""
    return {} if idle_timeout is None else {ESTABLISHED: str(int(idle_timeout))}


def forgets(idle_timeout: int | None, silent: float, keepalive: float | None = None) -> bool:
    """Does a device with this idle timeout forget a connection that stays silent `silent` seconds,
    when one end sends TCP keepalives every `keepalive` seconds (None or 0: none)? Pure: each
    keepalive probe and its answer refresh the device's timer, as any packet does."""
    if idle_timeout is None or silent <= idle_timeout:
        return False
    return not (keepalive and keepalive < idle_timeout)
