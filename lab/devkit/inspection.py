"""The models of the devices that read the control channel (what prediction asks them).

An inspecting device (the scapy ALG, the kernel's FTP helper, the dynamic filter) can act on a
data connection's announcement only when the announcement crosses it in cleartext. Which
security modes leave it readable is a fact of FTP, the same for every inspector; what differs
is each inspector's own blind spot (the kernel helper after CCC) and what it does with a line it
read (each device module says so in its Inspector):

- whom it believes: every inspector acts only on a whole line that names its sender's own address
  (`names_sender`); a line naming anyone else opens and rewrites nothing;
- `rewrites`: a NAT's inspector rewrites the address to the one the peer knows the sender by;
  "outside" (the scapy ALG: its outside interface's address, and only for a sender on the inside)
  or "translated" (nf_nat_ftp: the address conntrack translated the sender to, either side);
  None for a filter, which only reads;
- `related`: the data connection it expects is RELATED in conntrack (the kernel helper's
  expectation) rather than translated by a rule of its own (the scapy ALG's DNAT mapping).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab.ftps.modes import CCC_MODES, KERBEROS_MODES, SECURITY_MODES

IMPLICIT = ("implicit", "implicit-zos")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def readable(security: str) -> tuple[bool, str]:
    """Does the data connection's announcement cross the control channel in cleartext?
    (yes/no, and why not)."""
    if security not in SECURITY_MODES:
        raise ValueError(f"unknown security mode {security!r}")
    if security == "plain" or security in CCC_MODES:
        return True, ""
    if security in IMPLICIT:
        return False, "the control channel is encrypted from the first byte (implicit TLS, no CCC possible)"
    if security in KERBEROS_MODES:
        return False, "the announcement is inside a Kerberos-protected reply (RFC 2228 MIC/631)"
    return False, "the announcement is inside TLS"


def names_sender(host: Address | None, *sender: Address) -> bool:
    """Does an announcement naming `host` (None: a 229 reply, which names no address) name its
    sender, known to this device by any of `sender`?"""
    return host is None or host in sender


@dataclass(frozen=True)
class Inspector:
    """The model of a device that reads the cleartext control channel.

    misses_first_line_after_ccc: it re-synchronises only on a line start it saw (nf_conntrack_ftp),
    so after CCC it misses the first cleartext line; that matters when the client's first command
    after CCC is the data command itself (first_after_ccc == "data").
    """

    name: str
    misses_first_line_after_ccc: bool = False
    rewrites: str | None = None        # None | "outside" | "translated" (see the module's docstring)
    related: bool = False

    def reads(self, security: str, first_after_ccc: str = "data") -> tuple[bool, str]:
        """Can this device read the data-connection setup? (yes/no, and why not)."""
        ok, why = readable(security)
        # Only after TLS: a Kerberos control channel is lines (MIC ... CRLF), so a helper that
        # tracks line starts never loses them, and sees the first clear line after CCC.
        if ok and security == "tls-ccc" and self.misses_first_line_after_ccc and first_after_ccc == "data":
            return False, (f"{self.name} misses the first cleartext line after CCC, and the client's "
                           "first command after CCC is the data command")
        return ok, why


@dataclass(frozen=True)
class Blind:
    """The model of a device that never reads the control channel (a NAT without ALG)."""

    name: str = "the NAT without ALG"
    rewrites: str | None = None
    related: bool = False

    def reads(self, security: str, first_after_ccc: str = "data") -> tuple[bool, str]:
        return False, "the device does not inspect the control channel"
