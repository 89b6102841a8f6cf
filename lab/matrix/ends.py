"""The two ends of a cell: the statements each runs with, and what each refuses. Pure.

One place says which FTP.DATA statements a cell's client and server run with (the worker starts
them with these; prediction models them): the topology's, then the cell's variations; the
built-in server also gets the lab's base (TLSRFCLEVEL RFC4217) and the implicit model of the
cell. A third-party client (curl, lftp) gets none of them; a third-party server only
PASSIVEDATAPORTS (lab.matrix.servers). What those do instead is in their profiles, the
`clients:`/`servers:` traits of the scenario file.

`refusal` is the model of the two ends' FTP-level decisions, in the order the built-in client
meets them: AUTH TLS, the handshake, USER/PASS, PBSZ/PROT, CCC; then PORT/EPRT and the
protection of the data connection. The network's part is lab.matrix.pathwalk.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.devkit.types import PortRange
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.modes import CCC_MODES, KERBEROS_MODES
from lab.matrix import scenario
from lab.matrix.servers import server_statements

#: the client gives up a data connection after this (lab RTT is < 1 ms)
CLIENT_DATACONNTIME = 1.5


def client_statements(topology, spec: scenario.CellSpec) -> dict:
    """The built-in client's statements for a cell: the topology's, then the variations'."""
    st = {"DATACONNTIME": CLIENT_DATACONNTIME, **topology.ftp.client_statements}
    st.update({k: v for k, v in spec.client_statements.items() if v is not None})
    return st


@dataclass(frozen=True)
class Ends:
    """A cell's client and server as prediction sees them."""

    client: scenario.ClientTraits
    server: scenario.ServerTraits
    client_cfg: ClientConfig | None       # None: a third-party client (no FTP.DATA applies)
    server_cfg: ServerConfig              # a third-party server: only PASSIVEDATAPORTS applies
    builtin_server: bool
    client_node: str
    server_node: str

    @property
    def first_after_ccc(self) -> str:
        """What the client sends first in clear after CCC: "data" (the data command) or "other"."""
        if self.client_cfg is not None and self.client_cfg.CCCNOOP:
            return "other"
        return self.client.first_after_ccc

    @property
    def ignores_pasv_address(self) -> bool:
        """The client connects to the control address with the 227 port (PASSIVEIGNOREADDR TRUE)."""
        return self.client.ignores_pasv_address or bool(self.client_cfg and self.client_cfg.PASSIVEIGNOREADDR)

    @property
    def passive_range(self) -> PortRange | None:
        rng = self.server_cfg.PASSIVEDATAPORTS
        return PortRange(*rng) if rng else None

    @property
    def foreign_port(self) -> str:
        """What the server does with a PORT/EPRT naming another host than the client's control
        address: accept, refuse, or control-address (connects to the control address instead)."""
        if self.builtin_server and self.server_cfg.PORTCOMMANDIPADDR == "NOREDIRECT":
            return "refuse"
        return self.server.foreign_port

    @property
    def noredirect_passive(self) -> bool:
        """The server refuses a passive data connection from another address than the control one."""
        return self.server.foreign_passive == "refuse" or \
            (self.builtin_server and self.server_cfg.PASSIVEDATACONN == "NOREDIRECT")


def ends_of(scen: scenario.Scenarios, cell: scenario.Cell, topology) -> Ends:
    spec = scen.spec(cell)
    builtin_client = spec.client == "builtin"
    builtin_server = spec.server == "builtin"
    statements = server_statements(topology, spec)
    if not builtin_server:
        statements = {"PASSIVEDATAPORTS": statements.get("PASSIVEDATAPORTS")}
    return Ends(client=scen.clients[spec.client], server=scen.servers[spec.server],
                client_cfg=ClientConfig.from_dict(client_statements(topology, spec)) if builtin_client else None,
                server_cfg=ServerConfig.from_dict({k: v for k, v in statements.items() if v is not None}),
                builtin_server=builtin_server, client_node=topology.ftp.client, server_node=topology.ftp.server)


@dataclass(frozen=True)
class Refusal:
    """An end's FTP-level refusal: the stage it fails at, the reply code (None: no reply, e.g. a
    failed handshake or the client's own refusal), why, and whether the server decided it."""

    stage: str
    code: int | None
    why: str
    by_server: bool
    certain: bool = True        # False: the model cannot say what happens (a mismatch it does not read)


def session_refusal(security: str, ends: Ends) -> Refusal | None:
    """What refuses the session before any data command, in the order the client meets it."""
    s, c = ends.server_cfg, ends.client_cfg
    server = ends.builtin_server
    if server and security in ("tls", "tls-ccc") and "AUTH_TLS" not in s.EXTENSIONS:
        return Refusal("tls", 502, "the server does not offer AUTH TLS (EXTENSIONS without AUTH_TLS)", True)
    if server and security in KERBEROS_MODES and "AUTH_GSSAPI" not in s.EXTENSIONS:
        return Refusal("tls", 504, "the server does not offer AUTH GSSAPI (EXTENSIONS without AUTH_GSSAPI)", True)
    if server and security not in ("plain", *KERBEROS_MODES) and s.SECURE_LOGIN != "NO_CLIENT_AUTH":
        return Refusal("tls", None, f"the server's SECURE_LOGIN {s.SECURE_LOGIN} requires a client certificate "
                                    "and the lab's client presents none: the TLS handshake fails", False)
    if server and security == "plain" and s.SECURE_FTP == "REQUIRED":
        return Refusal("login", 530, "the server's SECURE_FTP REQUIRED refuses a login in clear (530)", True)
    if server and security == "plain" and s.SECURE_LOGIN != "NO_CLIENT_AUTH":
        return Refusal("login", 530, f"the server's SECURE_LOGIN {s.SECURE_LOGIN} refuses a login without TLS "
                                     "(530)", True)
    if server and security != "plain" and s.SECURE_DATACONN == "NEVER":
        return Refusal("tls", 536, "the server's SECURE_DATACONN NEVER refuses PROT P (536)", True)
    if security not in CCC_MODES:
        return None
    if server and security == "gssapi-ccc" and s.SECURE_CTRLCONN in ("SAFE", "PRIVATE"):
        return Refusal("tls", 534, f"the server's SECURE_CTRLCONN {s.SECURE_CTRLCONN} refuses CCC (534): the "
                                   "control connection must stay protected", True)
    if security == "gssapi-ccc":
        return None                   # TLSRFCLEVEL is TLS's: a Kerberos CCC has no close_notify
    if c is not None and c.TLSRFCLEVEL == "DRAFT":
        return Refusal("tls", None, "the client's TLSRFCLEVEL DRAFT has no CCC: it refuses to clear the "
                                    "control connection", False)
    if server and s.SECURE_CTRLCONN in ("SAFE", "PRIVATE"):
        return Refusal("tls", 534, f"the server's SECURE_CTRLCONN {s.SECURE_CTRLCONN} refuses CCC (534): the "
                                   "control connection must stay protected", True)
    if server and s.TLSRFCLEVEL == "DRAFT":
        return Refusal("tls", 534, "the server's TLSRFCLEVEL DRAFT refuses CCC (534)", True)
    if server and c is not None and (c.TLSRFCLEVEL == "CCCNONOTIFY") != (s.TLSRFCLEVEL == "CCCNONOTIFY"):
        return Refusal("tls", None, f"cannot predict: the client's TLSRFCLEVEL {c.TLSRFCLEVEL} and the server's "
                                    f"{s.TLSRFCLEVEL} disagree on close_notify at CCC", False, certain=False)
    return None


def family_refusal(data: str, version: int, ends: Ends) -> Refusal | None:
    """PASV and PORT on an IPv6 session: they carry IPv4 addresses only (RFC 2428 leaves IPv6 to
    EPSV and EPRT). The server refuses PASV (522, as z/OS does); the built-in client does not send
    a PORT it cannot fill (a z/OS client uses EPRT on IPv6), and refuses it itself."""
    if version != 6 or data not in ("pasv", "port"):
        return None
    if data == "pasv":
        return Refusal("data-setup", 522, "PASV on an IPv6 session: the server answers 522 No IPv4 address "
                                          "available for PASV. Use EPSV.", True)
    return Refusal("data-setup", None, "PORT on an IPv6 session: PORT cannot carry an IPv6 address, the client "
                                       "sends none (EPRT is IPv6's, RFC 2428)", False)


def port_refusal(ends: Ends, announced, client_seen) -> Refusal | None:
    """The server's answer to PORT/EPRT naming `announced`, from a client it sees as `client_seen`."""
    if ends.builtin_server and ends.server_cfg.PORTCOMMAND == "REJECT":
        return Refusal("data-setup", 504, "the server's PORTCOMMAND REJECT refuses PORT and EPRT (504)", True)
    if ends.foreign_port == "refuse" and announced != client_seen:
        what = "PORTCOMMANDIPADDR NOREDIRECT" if ends.builtin_server else f"{ends.server.name} (no foreign address)"
        return Refusal("data-setup", 504 if ends.builtin_server else 500,
                       f"the server receives {announced}, not the client's address {client_seen}, and its "
                       f"{what} refuses it", True)
    return None


def protection_refusal(security: str, ends: Ends) -> Refusal | None:
    """A data command in clear (no PROT P) where the server requires protected data."""
    if ends.builtin_server and security == "plain" and ends.server_cfg.SECURE_DATACONN in ("SAFE", "PRIVATE"):
        return Refusal("data-setup", 425, f"the server's SECURE_DATACONN {ends.server_cfg.SECURE_DATACONN} "
                                          "requires protected data, and a plain session sends no PROT P (425)", True)
    return None
