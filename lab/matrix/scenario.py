"""Scenario files: which cells a matrix runs, and the facts of each picture the predictions come from.

A cell is one way of doing FTP on one picture: `<topology>/<security>/<data>[+variation...]`
(e.g. `server-nat/tls/pasv+ignore-pasv-address`). A scenario file (scenarios/default.yaml) names the
matrix, the variations, the clients and servers, and per picture the facts that lab.matrix.predict turns
into an expected outcome. Loading is strict: every problem is reported with file:line and field.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import SCENARIO_DIR
from lab.errors import InputError, Problem
from lab.ftps.modes import DATA_MODES, SECURITY_MODES

ALG_MODES = ("scapy", "kernel", "off")
FILTER_MODES = ("static", "dynamic")
FILTER_PERMITS = ("passive-range", "active-from-20", "active-from-989")


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
    """`client-nat/tls/pasv+ignore-pasv-address` -> Cell. Raises InputError on a malformed id."""
    head, *options = text.strip().split("+")
    parts = head.split("/")
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
class FilterFacts:
    node: str
    mode: str                          # static | dynamic
    permits: tuple[str, ...] = ()      # static: passive-range, active-from-20


@dataclass(frozen=True)
class Picture:
    """What is on the path between client and server, as far as FTP's data connections care."""
    name: str
    title: str = ""
    slide: str = ""
    reasoning: str = ""
    client_nat: str | None = None      # node of the NAT router that hides the client
    server_nat: str | None = None      # node of the NAT router that hides the server
    alg: str = "scapy"                 # the NAT devices' ALG: scapy | kernel | off
    forwarded: tuple[str, ...] = ()    # what the server-side NAT forwards besides 21/990
    filter: FilterFacts | None = None
    passive_range: bool = False        # server PASSIVEDATAPORTS set
    internet: str = "internet"         # node of the router that drops private destinations

    @property
    def has_nat(self) -> bool:
        return bool(self.client_nat or self.server_nat)


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
    #: port (20 for 21, 989 for the implicit port 990); or a fixed port number
    active_source_port: str = "l-1"

    def data_source_port(self, security: str) -> int:
        if self.active_source_port == "l-1":
            return 989 if security.startswith("implicit") else 20
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


@dataclass(frozen=True)
class CellSpec:
    """Everything the runner needs to know to run a cell (resolved from its variations)."""
    cell: Cell
    client: str
    server: str
    alg: str | None                    # None: as the topology says
    client_statements: dict
    server_statements: dict            # value None removes a statement
    client_options: tuple[str, ...]


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

    def variant_cells(self, names: list[str], topologies=None, security=None, data=None) -> list[Cell]:
        """Cells of the named variations ("all" = every one) where the file says they matter."""
        want_all = "all" in names
        for name in names:
            if name != "all" and not any(vc["variant"] == name for vc in self.variation_cells):
                self._check_variant(name)
        cells = []
        for vc in self.variation_cells:
            if not want_all and vc["variant"] not in names:
                continue
            options = tuple(vc["variant"].split("+"))
            for t, s, d in itertools.product(vc["topologies"], vc["security"], vc["data"]):
                if (topologies and t not in topologies) or (security and s not in security) \
                        or (data and d not in data):
                    continue
                cells.append(Cell(t, s, d, options))
        # A variation name not listed in variation_cells (e.g. a combination): apply it to the base matrix.
        for name in names:
            if name == "all" or any(vc["variant"] == name for vc in self.variation_cells):
                continue
            options = tuple(name.split("+"))
            cells.extend(Cell(c.topology, c.security, c.data, options)
                         for c in self.default_cells(topologies, security, data))
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
        for part in name.split("+"):
            if part not in self.variations:
                raise InputError([Problem(str(self.source or ""), 0, "variation",
                                          f"unknown variation {part!r}; known: {', '.join(self.variations)}")])

    # -- resolution -------------------------------------------------------------------------
    def spec(self, cell: Cell) -> CellSpec:
        self._check_variant(cell.variant) if cell.options else None
        if cell.topology not in self.pictures:
            # A user's topology: no facts in the file; lab.matrix.predict derives them from the model.
            pass
        client = self.defaults.get("client", "builtin")
        server = self.defaults.get("server", "builtin")
        alg = None
        cstat: dict = {}
        sstat: dict = {}
        copts: list[str] = []
        for name in cell.options:
            v = self.variations[name]
            client = v.client or client
            server = v.server or server
            alg = v.alg or alg
            cstat.update(v.client_statements)
            sstat.update(v.server_statements)
            if v.client_option:
                copts.append(v.client_option)
        return CellSpec(cell, client, server, alg, cstat, sstat, tuple(copts))

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

class _Map(dict):
    """A YAML mapping that remembers its line and its keys' lines (for error messages)."""
    line = 0
    lines: dict = {}


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    m = _Map(loader.construct_mapping(node, deep=True))
    m.line = node.start_mark.line + 1
    m.lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return m


def _line(m: object, key: str) -> int:
    """Line of `key` in mapping m (of the mapping itself when unknown)."""
    return getattr(m, "lines", {}).get(key, getattr(m, "line", 0))


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def _names_or_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def load(name_or_path: str | Path = "default") -> Scenarios:
    """Load a scenario file by name (a stem in scenarios/) or path; InputError lists every problem."""
    path = _names_or_path(name_or_path)
    where = str(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_LineLoader)
    except FileNotFoundError as exc:
        raise InputError([Problem(where, 0, "", "no such scenario file")]) from exc
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else 0
        raise InputError([Problem(where, line, "", f"not valid YAML: {exc}")]) from exc
    problems: list[Problem] = []

    def need(m: dict, key: str, kind: type, ctx: str) -> Any:
        if not isinstance(m, dict) or key not in m:
            problems.append(Problem(where, getattr(m, "line", 0), f"{ctx}{key}", "missing"))
            return kind()
        if not isinstance(m[key], kind):
            problems.append(Problem(where, _line(m, key), f"{ctx}{key}",
                                    f"expected {kind.__name__}, got {type(m[key]).__name__}"))
            return kind()
        return m[key]

    if not isinstance(raw, dict):
        raise InputError([Problem(where, 1, "", "expected a mapping at the top")])
    if raw.get("schema") != "ftlab.scenarios/1":
        problems.append(Problem(where, _line(raw, "schema"), "schema", "expected 'ftlab.scenarios/1'"))
    matrix = need(raw, "matrix", dict, "")
    topologies = [str(t) for t in need(matrix, "topologies", list, "matrix.")]
    security = [str(s) for s in need(matrix, "security", list, "matrix.")]
    data = [str(d) for d in need(matrix, "data", list, "matrix.")]
    for s in security:
        if s not in SECURITY_MODES:
            problems.append(Problem(where, _line(matrix, "security"), "matrix.security", f"unknown security mode {s!r}"))
    for d in data:
        if d not in DATA_MODES:
            problems.append(Problem(where, _line(matrix, "data"), "matrix.data", f"unknown data mode {d!r}"))

    pictures: dict[str, Picture] = {}
    for name, p in need(raw, "pictures", dict, "").items():
        ctx = f"pictures.{name}."
        if not isinstance(p, dict):
            problems.append(Problem(where, raw["pictures"].line, ctx[:-1], "expected a mapping"))
            continue
        alg = str(p.get("alg", "scapy"))
        if alg not in ALG_MODES:
            problems.append(Problem(where, _line(p, "alg"), ctx + "alg", f"{alg!r} is not one of {', '.join(ALG_MODES)}"))
        flt = None
        if p.get("filter") is not None:
            f = p["filter"]
            if not isinstance(f, dict) or f.get("mode") not in FILTER_MODES or not f.get("node"):
                problems.append(Problem(where, getattr(f, "line", p.line), ctx + "filter",
                                        "expected {node: NAME, mode: static|dynamic, permits: [...]}"))
            else:
                permits = tuple(f.get("permits") or ())
                for x in permits:
                    if x not in FILTER_PERMITS:
                        problems.append(Problem(where, f.line, ctx + "filter.permits",
                                                f"{x!r} is not one of {', '.join(FILTER_PERMITS)}"))
                flt = FilterFacts(str(f["node"]), str(f["mode"]), permits)
        for key in ("reasoning", "title", "slide"):
            if key == "reasoning" and not str(p.get(key, "")).strip():
                problems.append(Problem(where, p.line, ctx + key, "every picture needs its reasoning"))
        pictures[name] = Picture(
            name=name, title=str(p.get("title", "")), slide=str(p.get("slide", "")),
            reasoning=str(p.get("reasoning", "")).strip(),
            client_nat=p.get("client_nat"), server_nat=p.get("server_nat"), alg=alg,
            forwarded=tuple(p.get("forwarded") or ()), filter=flt,
            passive_range=bool(p.get("passive_range", False)),
            internet=str(p.get("internet", "internet")))
    for t in topologies:
        if t not in pictures:
            problems.append(Problem(where, _line(matrix, "topologies"), "matrix.topologies", f"{t!r} has no entry in pictures"))

    clients = {}
    for name, c in (raw.get("clients") or {}).items():
        clients[name] = ClientTraits(
            name=name, security=tuple(c.get("security", SECURITY_MODES)), data=tuple(c.get("data", DATA_MODES)),
            ignores_pasv_address=bool(c.get("ignores_pasv_address", False)),
            first_after_ccc=str(c.get("first_after_ccc", "data")), broken=dict(c.get("broken") or {}))
    clients.setdefault("builtin", ClientTraits("builtin"))
    servers = {name: ServerTraits(name, tuple(s.get("security", SECURITY_MODES)),
                                  str(s.get("active_source_port", "l-1")))
               for name, s in (raw.get("servers") or {}).items()}
    servers.setdefault("builtin", ServerTraits("builtin"))

    variations = {}
    for name, v in (raw.get("variations") or {}).items():
        if v.get("alg") is not None and str(v["alg"]) not in ALG_MODES:
            problems.append(Problem(where, v.line, f"variations.{name}.alg", f"{v['alg']!r} is not an ALG mode"))
        for key in ("client", "server"):
            table = clients if key == "client" else servers
            if v.get(key) and v[key] not in table:
                problems.append(Problem(where, v.line, f"variations.{name}.{key}", f"unknown {key} {v[key]!r}"))
        variations[name] = Variation(
            name=name, what=str(v.get("what", "")), alg=str(v["alg"]) if v.get("alg") else None,
            client=v.get("client"), server=v.get("server"),
            client_statements=dict(v.get("client_statements") or {}),
            server_statements=dict(v.get("server_statements") or {}),
            client_option=v.get("client_option"))

    vcells = []
    for i, vc in enumerate(raw.get("variation_cells") or []):
        ctx = f"variation_cells[{i}]"
        for part in str(vc.get("variant", "")).split("+"):
            if part not in variations:
                problems.append(Problem(where, vc.line, ctx + ".variant", f"unknown variation {part!r}"))
        entry = {"variant": str(vc.get("variant", "")),
                 "topologies": list(vc.get("topologies") or topologies),
                 "security": list(vc.get("security") or security),
                 "data": list(vc.get("data") or data)}
        for t in entry["topologies"]:
            if t not in pictures:
                problems.append(Problem(where, vc.line, ctx + ".topologies", f"unknown picture {t!r}"))
        vcells.append(entry)

    if problems:
        raise InputError(problems)
    return Scenarios(
        name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")), source=path,
        defaults=dict(raw.get("defaults") or {}), topologies=topologies, security=security, data=data,
        pictures=pictures, clients=clients, servers=servers, variations=variations, variation_cells=vcells)
