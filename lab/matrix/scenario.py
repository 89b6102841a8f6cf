"""Scenario files: which cells a matrix runs, on which pictures, with which clients and servers.

A cell is one way of doing FTP on one picture: `<topology>/<security>/<data>[+variation...]`
(e.g. `server-nat/tls/pasv+ignore-pasv-address`). A scenario file (scenarios/default.yaml) names the
matrix, the variations, the clients and servers (their profiles: what prediction needs to know of
each), and per picture its slide and reasoning. Predictions come from the topology itself
(lab.matrix.pathwalk), never from this file. Loading is strict: the file is read as hostile input
(lab.topology.yamlfile), checked against its JSON schema (scenarios/scenarios.schema.json), then
its names are checked against each other; every problem is reported with file:line and field,
and nothing is half-loaded.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import SCENARIO_DIR
from lab.devkit.types import ALG_MODES
from lab.errors import InputError, Problem
from lab.ftps.modes import DATA_MODES, SECURITY_MODES
from lab.topology import override
from lab.topology.loader import statement_problems
from lab.topology.timing import Timing
from lab.topology.yamlfile import Mapping, load_ours, schema_problems

# -- cells ------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Cell:
    topology: str
    security: str
    data: str
    options: tuple[str, ...] = ()     # variation names, in id order

    @property
    def variant(self) -> str:
        return "+".join(self.options)

    @property
    def id(self) -> str:
        base = f"{self.topology}/{self.security}/{self.data}"
        return f"{base}+{self.variant}" if self.options else base

    def __str__(self) -> str:
        return self.id


def parse_cell_id(text: str) -> Cell:
    """`client-nat/tls/pasv+ignore-pasv-address` -> Cell. Raises InputError on a malformed id.

    The topology may be a file (`my/net.yaml/tls/pasv`): the security and data modes are the last
    two parts, and variations follow the data mode (a '+' in a folder name is no variation)."""
    text = text.strip()
    prefix, _, last = text.rpartition("/")
    data, *options = last.split("+")
    parts = [*prefix.rsplit("/", 1), data]
    if len(parts) != 3 or not all(parts):
        raise InputError(f"cell id {text!r}: expected <topology>/<security>/<data>[+variation...]")
    topology, security, data = parts
    problems = []
    if security not in SECURITY_MODES:
        problems.append(Problem(f"cell id {text}", 0, "security", f"{security!r} is not one of {', '.join(SECURITY_MODES)}"))
    if data not in DATA_MODES:
        problems.append(Problem(f"cell id {text}", 0, "data", f"{data!r} is not one of {', '.join(DATA_MODES)}"))
    if any(not o for o in options):
        problems.append(Problem(f"cell id {text}", 0, "variation", f"empty variation in {text!r}"))
    if problems:
        raise InputError(problems)
    return Cell(topology, security, data, tuple(options))


# -- the file's contents ------------------------------------------------------------------------

@dataclass(frozen=True)
class Picture:
    """What a report says about a network beside its cells: the slides' title, the slide and the
    reasoning for a shipped picture; the description for a user's file. Predictions never come from
    here: lab.matrix.pathwalk walks the topology itself (`model`, when the caller has it loaded)."""
    name: str
    title: str = ""
    slide: str = ""
    reasoning: str = ""
    model: Any = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class ClientTraits:
    name: str
    security: tuple[str, ...] = SECURITY_MODES
    data: tuple[str, ...] = DATA_MODES
    ignores_pasv_address: bool = False
    first_after_ccc: str = "data"      # data | other
    broken: dict = field(default_factory=dict, hash=False, compare=False)

    def broken_for(self, security: str, data: str) -> str | None:
        """Why this client cannot do the cell (a known bug of the client), or None."""
        if not self.broken:
            return None
        if security in self.broken.get("security", SECURITY_MODES) and data in self.broken.get("data", DATA_MODES):
            return str(self.broken.get("why", "known client defect"))
        return None


@dataclass(frozen=True)
class ServerTraits:
    name: str
    security: tuple[str, ...] = SECURITY_MODES
    #: where active-mode data comes from: "l-1" = RFC 959's default data port, one below the control
    #: port (20 for 21, 989 for the implicit port 990); "ephemeral"; or a fixed port number
    active_source_port: str = "l-1"
    #: a PORT/EPRT naming another host than the client's control address: "accept" (connect to it),
    #: "refuse" (vsftpd's port_promiscuous NO: 500), "control-address" (ProFTPD's AllowForeignAddress
    #: off: connect to the control connection's address instead); the built-in server: its
    #: PORTCOMMANDIPADDR statement
    foreign_port: str = "accept"
    #: a passive data connection from another address than the control connection's: "accept" or
    #: "refuse" (vsftpd's pasv_promiscuous NO, ProFTPD's AllowForeignAddress off; the built-in
    #: server: its PASSIVEDATACONN statement)
    foreign_passive: str = "accept"

    def data_source_port(self, security: str, control_port: int | None = None) -> int | None:
        """The source port of active-mode data, for a session whose control connection arrived at
        `control_port` (default: 21, or 990 for the implicit modes); None: an ephemeral one."""
        if self.active_source_port == "ephemeral":
            return None
        if self.active_source_port == "l-1":
            if control_port is None:
                control_port = 990 if security.startswith("implicit") else 21
            return control_port - 1
        return int(self.active_source_port)


@dataclass(frozen=True)
class Variation:
    name: str
    what: str = ""
    alg: str | None = None
    client: str | None = None
    server: str | None = None
    client_statements: dict = field(default_factory=dict, hash=False, compare=False)
    server_statements: dict = field(default_factory=dict, hash=False, compare=False)
    client_option: str | None = None
    timing: Timing = Timing()          # idle timeouts on the path's devices, a shaped server link
    ip_version: int | None = None      # 6: the client dials the server over IPv6 (a dual-stack picture)


@dataclass(frozen=True)
class CellSpec:
    """Everything the runner needs to know to run a cell (resolved from its variations)."""
    cell: Cell
    client: str
    server: str
    alg: str | None                    # ALG override (lab.topology.override: "kernel", "kernel@nat-c"); None: as the topology says
    client_statements: dict
    server_statements: dict            # value None removes a statement
    client_options: tuple[str, ...]
    timing: Timing = Timing()          # lab.topology.timing: idle timeouts, a shaped server link
    ip_version: int | None = None      # the IP version the client dials with (None: the picture's server_address)


@dataclass
class Scenarios:
    name: str
    description: str
    source: Path | None
    defaults: dict
    topologies: list[str]
    security: list[str]
    data: list[str]
    pictures: dict[str, Picture]
    clients: dict[str, ClientTraits]
    servers: dict[str, ServerTraits]
    variations: dict[str, Variation]
    variation_cells: list[dict]

    # -- expansion --------------------------------------------------------------------------
    def default_cells(self, topologies=None, security=None, data=None) -> list[Cell]:
        """The base matrix (optionally narrowed), in file order."""
        return [Cell(t, s, d) for t, s, d in itertools.product(
            topologies or self.topologies, security or self.security, data or self.data)]

    def variant_cells(self, names: list[str], topologies=None, security=None, data=None,
                      users: list[str] | tuple[str, ...] = ()) -> list[Cell]:
        """Cells of the named variations ("all" = every one the file lists): on the shipped pictures
        where the file says they matter; on a user's network (named in `users`) over its whole
        matrix, narrowed by security and data - the file cannot know where they matter there."""
        want_all = "all" in names
        for name in names:
            if name != "all" and not any(vc["variant"] == name for vc in self.variation_cells):
                self._check_variant(name)
        shipped = None if topologies is None else [t for t in topologies if t not in users]
        cells = []
        for vc in self.variation_cells if shipped is None or shipped else ():
            if not want_all and vc["variant"] not in names:
                continue
            options = tuple(vc["variant"].split("+"))
            for t, s, d in itertools.product(vc["topologies"], vc["security"], vc["data"]):
                if (shipped and t not in shipped) or (security and s not in security) \
                        or (data and d not in data):
                    continue
                cells.append(Cell(t, s, d, options))
        # A variation name not listed in variation_cells (e.g. a combination): apply it to the base matrix.
        for name in names:
            if name == "all" or any(vc["variant"] == name for vc in self.variation_cells) or shipped == []:
                continue
            options = tuple(name.split("+"))
            cells.extend(Cell(c.topology, c.security, c.data, options)
                         for c in self.default_cells(shipped, security, data))
        wanted = list(dict.fromkeys(vc["variant"] for vc in self.variation_cells)) if want_all else \
            [n for n in names if n != "all"]
        for user in users:
            for name in wanted:
                options = tuple(name.split("+"))
                cells.extend(Cell(user, c.security, c.data, options) for c in self.default_cells([user], security, data))
        return [c for c in cells if self.supported(c)]

    def with_endpoints(self, cells: list[Cell], client: str | None, server: str | None) -> list[Cell]:
        """Run the cells with another client and/or server (only where it supports the cell)."""
        extra = tuple(n for n in (client, server) if n and n != "builtin")
        for n in extra:
            self._check_variant(n)
        out = []
        for c in cells:
            options = c.options + tuple(o for o in extra if o not in c.options)
            cell = Cell(c.topology, c.security, c.data, options)
            if self.supported(cell):
                out.append(cell)
        return out

    def _check_variant(self, name: str) -> None:
        for option in name.split("+"):
            part = option.partition("@")[0]      # alg-kernel@nat-c: the variation alg-kernel on nat-c
            if part not in self.variations:
                raise InputError([Problem(str(self.source or ""), 0, "variation",
                                          f"unknown variation {part!r}; known: {', '.join(self.variations)}")])

    # -- resolution -------------------------------------------------------------------------
    def spec(self, cell: Cell) -> CellSpec:
        self._check_variant(cell.variant) if cell.options else None
        client = self.defaults.get("client", "builtin")
        server = self.defaults.get("server", "builtin")
        algs: list[tuple[str, str | None]] = []
        cstat: dict = {}
        sstat: dict = {}
        copts: list[str] = []
        timed: dict = {}
        version = None
        for option in cell.options:
            name, _, router = option.partition("@")
            v = self.variations[name]
            if router and not v.alg:
                raise InputError([Problem(cell.id, 0, "variation", f"{option}: only an ALG variation can name a "
                                                                   f"router (@{router})")])
            client = v.client or client
            server = v.server or server
            if v.alg:
                algs.append((v.alg, router or None))
            cstat.update(v.client_statements)
            sstat.update(v.server_statements)
            if v.client_option:
                copts.append(v.client_option)
            timed.update({k: val for k, val in vars(v.timing).items() if val is not None})
            version = v.ip_version or version
        return CellSpec(cell, client, server, override.join(algs), cstat, sstat, tuple(copts), Timing(**timed),
                        version)

    def client_traits(self, cell: Cell) -> ClientTraits:
        return self.clients[self.spec(cell).client]

    def server_traits(self, cell: Cell) -> ServerTraits:
        return self.servers[self.spec(cell).server]

    def supported(self, cell: Cell) -> bool:
        """Both endpoints of the cell implement its security and data method."""
        try:
            spec = self.spec(cell)
        except InputError:
            return False
        ct = self.clients.get(spec.client)
        st = self.servers.get(spec.server)
        return bool(ct and st and cell.security in ct.security and cell.data in ct.data
                    and cell.security in st.security)


# -- loading ----------------------------------------------------------------------------------------

SCHEMA_FILE = SCENARIO_DIR / "scenarios.schema.json"
TOP_KEYS = {"schema", "name", "description", "defaults", "matrix", "pictures", "clients", "servers",
            "variations", "variation_cells"}


@functools.cache
def schema() -> dict:
    """The JSON schema of a scenario file, with the names of modes filled in from their one definition."""
    doc = json.loads(SCHEMA_FILE.read_text())
    for name, values in {"security": SECURITY_MODES, "data": DATA_MODES, "alg": ALG_MODES,
                         "alg_or_null": (*ALG_MODES, None)}.items():
        doc["$defs"][name]["enum"] = list(values)
    return doc


def _names_or_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path) or p.exists() or p.is_symlink():
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def load(name_or_path: str | Path = "default") -> Scenarios:
    """Load a scenario file by name (a stem in scenarios/) or path; InputError lists every problem."""
    path = _names_or_path(name_or_path)
    where = str(path)
    raw = load_ours(path, "scenario file", TOP_KEYS)
    problems = schema_problems(raw, schema(), where)
    if problems:
        raise InputError(problems)
    scen = _build(raw, path)
    problems = _cross_references(raw, scen, where)
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.line))
    return scen


def _build(raw: Mapping, path: Path) -> Scenarios:
    """The Scenarios of a file that is valid by its schema (so every value has its type)."""
    matrix = raw["matrix"]
    clients = {name: ClientTraits(name, tuple(c.get("security", SECURITY_MODES)), tuple(c.get("data", DATA_MODES)),
                                  c.get("ignores_pasv_address", False), c.get("first_after_ccc", "data"),
                                  dict(c.get("broken") or {}))
               for name, c in (raw.get("clients") or {}).items()}
    clients.setdefault("builtin", ClientTraits("builtin"))
    servers = {name: ServerTraits(name, tuple(s.get("security", SECURITY_MODES)), str(s.get("active_source_port", "l-1")),
                                  s.get("foreign_port", "accept"), s.get("foreign_passive", "accept"))
               for name, s in (raw.get("servers") or {}).items()}
    servers.setdefault("builtin", ServerTraits("builtin"))
    variations = {name: Variation(name, v.get("what", ""), v.get("alg"), v.get("client"), v.get("server"),
                                  _statements(v.get("client_statements")), _statements(v.get("server_statements")),
                                  v.get("client_option"), Timing(v.get("idle_timeout"), v.get("transfer_seconds")),
                                  v.get("ip_version"))
                  for name, v in (raw.get("variations") or {}).items()}
    vcells = [{"variant": vc["variant"], "topologies": list(vc.get("topologies") or matrix["topologies"]),
               "security": list(vc.get("security") or matrix["security"]), "data": list(vc.get("data") or matrix["data"])}
              for vc in raw.get("variation_cells") or []]
    return Scenarios(
        name=raw.get("name", path.stem), description=raw.get("description", ""), source=path,
        defaults=dict(raw.get("defaults") or {}), topologies=list(matrix["topologies"]),
        security=list(matrix["security"]), data=list(matrix["data"]),
        pictures={name: _picture(name, p) for name, p in raw["pictures"].items()},
        clients=clients, servers=servers, variations=variations, variation_cells=vcells)


def _picture(name: str, p: Mapping) -> Picture:
    return Picture(name=name, title=p.get("title", ""), slide=p.get("slide", ""), reasoning=p["reasoning"].strip())


def _statements(values: Mapping | None) -> dict:
    """Statement values as the endpoints take them: text, or None to remove a statement."""
    return {k: None if v is None else str(v) for k, v in (values or {}).items()}


def _cross_references(raw: Mapping, scen: Scenarios, where: str) -> list[Problem]:
    """What the schema cannot see: names that must name something elsewhere in the file, and the
    statements of each variation as the FTPS endpoints read them."""
    problems = []
    matrix = raw["matrix"]
    for i, t in enumerate(scen.topologies):
        if t not in scen.pictures:
            problems.append(Problem(where, matrix["topologies"].line_of(i), "matrix.topologies",
                                    f"{t!r} has no entry in pictures"))
    for name, v in (raw.get("variations") or {}).items():
        for key, table in (("client", scen.clients), ("server", scen.servers)):
            if v.get(key) and v[key] not in table:
                problems.append(Problem(where, v.line_of(key), f"variations.{name}.{key}",
                                        f"unknown {key} {v[key]!r}; known: {', '.join(table)}"))
        for side in ("client", "server"):
            written = v.get(f"{side}_statements")
            if written:
                given = {k: value for k, value in _statements(written).items() if value is not None}
                problems += statement_problems(given, written, side, where, f"variations.{name}.{side}_statements")
    for key, table in (("client", scen.clients), ("server", scen.servers)):
        value = scen.defaults.get(key)
        if value and value not in table:
            problems.append(Problem(where, raw["defaults"].line_of(key), f"defaults.{key}",
                                    f"unknown {key} {value!r}; known: {', '.join(table)}"))
    for i, vc in enumerate(raw.get("variation_cells") or []):
        field = f"variation_cells[{i}]"
        for part in vc["variant"].split("+"):
            if part not in scen.variations:
                problems.append(Problem(where, vc.line_of("variant"), f"{field}.variant", f"unknown variation {part!r}"))
        for j, t in enumerate(scen.variation_cells[i]["topologies"]):
            if t not in scen.pictures:
                line = vc["topologies"].line_of(j) if "topologies" in vc else vc.line
                problems.append(Problem(where, line, f"{field}.topologies", f"unknown picture {t!r}"))
    return problems
