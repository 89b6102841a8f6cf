"""Three-way ("proxy", FXP) transfers: one client drives two servers, and the data flows between the
servers. The only reason PASV and PORT carry an address at all (RFC 959 section 5.2, figure 2).

    result = fxp(src, dst, "dir/file", "copy", data="pasv", passive="dst", sscn=None)

src and dst are logged-in lab.ftps.client.FTPClient sessions (any security mode). The client
    1. sends TYPE I to both, and SSCN ON to the server named by `sscn` (protected data only);
    2. asks the passive side for a port: PASV (its 227 names the address) or EPSV (its 229 names
       only a port: the address is the one the client reached the passive server at);
    3. names that address to the active side: PORT, or EPRT for epsv;
    4. sends the passive side's transfer command (RETR on src or STOR on dst), then the active
       side's: the active server connects to the passive one and the file flows src -> dst;
    5. reads both final replies; when the active side is done and the passive side still waits for
       a connection (PASSIVEDATACONN NOREDIRECT closed the one that came), it sends ABOR there;
    6. compares the sizes (SIZE on both; EXTENSIONS SIZE) -> FXPResult, or FTPError with the stage.

The z/OS settings against three-way transfers (reference/zos-ftp-and-rfcs.md section 2):
PORTCOMMANDIPADDR NOREDIRECT on the active side refuses the PORT/EPRT naming another host than the
client (504); PASSIVEDATACONN NOREDIRECT on the passive side closes the other server's connection,
and the passive side's 425 says so. Both name their statement in the reply.

Protected data (PROT P on both): RFC 4217 section 7 makes the FTP client the TLS client of every
data connection; between two servers both would be TLS servers and both would wait for a
ClientHello. One server must be told to be the TLS client: SSCN ON (glftpd, DrFTPD, FlashFXP; the
lab's server offers it under EXTENSIONS SSCN; z/OS has no SSCN, so a protected three-way transfer
between two z/OS servers cannot be made). Without `sscn` a protected transfer is refused here,
before any command, with that reason.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from lab.ftps import grammar, waiting
from lab.ftps.client import FTPClient, FTPError
from lab.ftps.grammar import GrammarError, Reply

FXP_DATA_MODES = ("pasv", "epsv")
SIDES = ("src", "dst")


@dataclass
class FXPResult:
    bytes: int
    seconds: float              # from the active side's transfer command to the last final reply
    mbps: float
    data: str                   # pasv | epsv
    passive: str                # src | dst: the side that listened
    sscn: str | None            # the side that was the TLS client of the data connection
    src_reply: str              # the final replies, for the record
    dst_reply: str

    def to_dict(self) -> dict:
        return asdict(self)


def fxp(src: FTPClient, dst: FTPClient, src_path: str, dst_path: str, *, data: str = "pasv",
        passive: str = "dst", sscn: str | None = None, connect_wait: float | None = None) -> FXPResult:
    """Copy src_path on src to dst_path on dst, server to server. connect_wait: how long the
    active server may take to connect to the passive one (default: src's DATACONNTIME + 2 s)."""
    if data not in FXP_DATA_MODES:
        raise ValueError(f"data must be one of {', '.join(FXP_DATA_MODES)}")
    if passive not in SIDES or sscn not in (None, *SIDES):
        raise ValueError("passive and sscn name a side: src or dst")
    sides = {"src": src, "dst": dst}
    if src.prot != dst.prot:
        raise FTPError("data-setup", f"the two sessions protect data differently (src PROT {src.prot}, "
                                     f"dst PROT {dst.prot}): one data connection cannot be both")
    if src.prot == "P" and sscn is None:
        raise FTPError("data-setup", "protected three-way transfer needs SSCN (or CPSV): with PROT P both "
                                     "servers would be the TLS server of the data connection (RFC 4217 "
                                     "section 7) and wait for each other's ClientHello")
    wait = connect_wait if connect_wait is not None else src.cfg.DATACONNTIME + 2
    for name, c in sides.items():
        _ok(c.command("TYPE", "I"), (200,), "data-setup", name, "TYPE I")
    if sscn is not None and src.prot == "P":
        _ok(sides[sscn].command("SSCN", "ON"), (200,), "data-setup", sscn, "SSCN ON")

    active = "src" if passive == "dst" else "dst"
    listener, connector = sides[passive], sides[active]
    where = _passive_address(listener, data, passive)
    verb = "PORT" if data == "pasv" else "EPRT"
    arg = grammar.format_port_args(where) if data == "pasv" else grammar.format_eprt_args(where)
    _ok(connector.command(verb, arg), (200,), "data-setup", active, verb)

    commands = {"src": ("RETR", src_path), "dst": ("STOR", dst_path)}
    listener._send(*commands[passive])          # the listening side first: it waits for the connection
    start = time.monotonic()
    connector._send(*commands[active])
    finals = {active: _final(connector, first_within=wait)}
    finals[passive] = _final(listener, first_within=wait if finals[active].kind == 2 else 0.5)
    seconds = time.monotonic() - start
    bad = [s for s in SIDES if finals[s].kind != 2]
    if bad:
        raise _failure(finals, bad)
    size = _size(src, src_path, "src")
    copied = _size(dst, dst_path, "dst")
    if copied != size:
        raise FTPError("verify", f"the copy has {copied} bytes, the original {size}")
    seconds = max(seconds, 1e-9)
    return FXPResult(size, round(seconds, 6), round(size / seconds / 1e6, 2), data, passive,
                     sscn if src.prot == "P" else None, str(finals["src"]), str(finals["dst"]))


def _ok(reply: Reply, codes: tuple[int, ...], stage: str, side: str, what: str) -> Reply:
    if reply.code not in codes:
        raise FTPError(stage, f"{side}: {what} refused: {reply.lines[-1] if reply.lines else ''}", reply.code)
    return reply


def _passive_address(c: FTPClient, data: str, side: str) -> grammar.HostPort:
    """Where the passive server listens: the 227's address, or (EPSV) the address the client
    reached that server at. PASSIVEIGNOREADDR is no help here: the other server needs the address."""
    verb = "PASV" if data == "pasv" else "EPSV"
    reply = c.command(verb)
    try:
        if data == "pasv":
            _ok(reply, (227,), "data-setup", side, verb)
            return grammar.parse_227(reply.text)
        _ok(reply, (229,), "data-setup", side, verb)
        return grammar.HostPort(c.sock.getpeername()[0], grammar.parse_229(reply.text))
    except GrammarError as exc:
        raise FTPError("data-setup", f"{side}: bad {verb} reply: {exc}", reply.code) from None


def _final(c: FTPClient, first_within: float) -> Reply:
    """The final reply of a transfer command whose first reply must come within `first_within`;
    when none does, the server still waits for a data connection that will not come: ABOR."""
    reply = _reply_within(c, first_within)
    if reply is None:
        c._send("ABOR")
        return _after_abort(c)
    while reply.kind == 1:
        reply = c.read_reply()
    return reply


def _after_abort(c: FTPClient) -> Reply:
    """The replies after ABOR: the transfer command's own end (425/426, or 226 when it just made it),
    then ABOR's 226. The first of them is the transfer's."""
    replies = []
    while (r := _reply_within(c, 5)) is not None:
        replies.append(r)
        if r.kind != 1 and len([x for x in replies if x.kind != 1]) >= 2:
            break
    finals = [r for r in replies if r.kind != 1]
    return finals[0] if finals else Reply(426, ("no reply after ABOR",))


def _reply_within(c: FTPClient, seconds: float) -> Reply | None:
    """The next reply if one comes within `seconds`, else None."""
    if not c._ctrl_buffered() and not waiting.select([c.sock], [], max(seconds, 0.01))[0]:
        return None
    try:
        return c.read_reply(timeout=max(seconds, 1))
    except FTPError:
        return None


def _failure(finals: dict[str, Reply], bad: list[str]) -> FTPError:
    """One error for a failed three-way transfer: the reply that names a z/OS statement first."""
    def score(side: str) -> int:
        text = " ".join(finals[side].lines)
        return 0 if "NOREDIRECT" in text else 1
    side = sorted(bad, key=score)[0]
    reply = finals[side]
    stage = {425: "data-connect", 522: "tls", 521: "tls", 534: "tls"}.get(reply.code, "transfer")
    others = [f"{s}: {finals[s].code} {finals[s].lines[-1]}" for s in SIDES if s != side]
    return FTPError(stage, f"{side}: {' '.join(line.strip() for line in reply.lines)} ({'; '.join(others)})",
                    reply.code)


def _size(c: FTPClient, path: str, side: str) -> int:
    try:
        return c.size(path)
    except FTPError as exc:
        raise FTPError("verify", f"{side}: cannot check the size of {path}: {exc.reason}", exc.code) from None
