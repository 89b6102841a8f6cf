"""Which way of doing FTP to use on a network: one answer for the terminal, results.json and the report.

    rec = recommend(model, scenarios)                      # before a run: from the path walk
    rec = recommend(model, scenarios, observed=outcomes)   # after one: {"tls/epsv": "pass", ...}
    rec.text()                                             # the one line every output shows

The choice: the first method, in PREFERENCE order, that passes (observed when the run has it,
else predicted). Methods that keep the control channel encrypted for the whole session come
first (lab.ftps.modes.ENCRYPTED_CONTROL): CCC puts the control channel in clear for every device
on the way, so it is recommended only where no such method passes. Within a security mode,
EPSV first (no address to rewrite), then PASV, EPRT, PORT.

The slides' four steps say which of their recipes applies to the devices on the path: 0 no
devices, 1 a device whose rules the model cannot read, 2 NAT only, 3 static filtering, 4 dynamic
filtering. The recommendation says so, and says where this network differs from the step (a step-2
EPSV that the NAT does not forward; a step-4 CCC that is not needed). Every reason about the
client is about the cell's real client (its profile: what it sends first after CCC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.ftps.modes import DATA_MODES, ENCRYPTED_CONTROL, KERBEROS_MODES, SECURITY_MODES
from lab.matrix import predict, scenario
from lab.matrix.ends import ends_of
from lab.matrix.pathwalk import Prediction
from lab.topology import devices
from lab.topology.model import Topology

DATA_ORDER = ("epsv", "pasv", "eprt", "port")
SECURITY_ORDER = ("tls", "implicit-zos", "implicit", "tls-ccc")
PREFERENCE = tuple(f"{s}/{d}" for s in SECURITY_ORDER for d in DATA_ORDER)
# Kerberos is no step of the slides (both ends need a KDC and keytabs): never recommended here
assert set(SECURITY_ORDER) == set(SECURITY_MODES) - {"plain", *KERBEROS_MODES} and set(DATA_ORDER) == set(DATA_MODES)

STEP_TEXT = {
    0: "no firewall and no NAT on the path: secure FTP works with every method (slides: 'there are no problems')",
    1: "step 1: a device's rules cannot be read, so you don't know what it does: the slides say use the CCC method",
    2: "step 2: the firewalls only do NAT (no filtering): use extended passive mode (EPSV)",
    3: "step 3: NAT and/or static filtering: PASSIVEDATAPORTS on the server, static permits for that range, "
       "and extended passive mode (EPSV) from the client",
    4: "step 4: dynamic filtering (with or without NAT): the slides say the CCC method is the only one that works",
}
STEP_METHOD = {0: "tls/epsv", 1: "tls-ccc/epsv", 2: "tls/epsv", 3: "tls/epsv", 4: "tls-ccc/epsv"}


@dataclass(frozen=True)
class Recommendation:
    step: int                           # the slides' step for the devices on the path (0-4)
    method: str | None                  # "security/data"; None: no secure method gets through
    why: str
    settings: dict = field(default_factory=dict)       # what to configure: {"server": {...}, "client": {...}}
    predicted: Prediction | None = None                 # the path walk's prediction for the method
    observed: str | None = None                         # its outcome in the run (None: not run)
    alternatives: tuple[str, ...] = ()                  # other secure methods that pass, best first

    @property
    def security(self) -> str | None:
        return self.method.split("/")[0] if self.method else None

    @property
    def data(self) -> str | None:
        return self.method.split("/")[1] if self.method else None

    @property
    def keeps_control_encrypted(self) -> bool:
        return self.security in ENCRYPTED_CONTROL

    def text(self) -> str:
        """The one line the terminal, results.json and the report show."""
        return f"{self.method or 'nothing secure'} (step {self.step}): {self.why}"

    def to_dict(self) -> dict:
        return {"step": self.step, "method": self.method, "why": self.why, "settings": self.settings,
                "observed": self.observed, "alternatives": list(self.alternatives),
                "keeps_control_encrypted": self.keeps_control_encrypted,
                "predicted": None if self.predicted is None else
                {"outcome": self.predicted.outcome, "stage": self.predicted.stage,
                 "device": self.predicted.device, "reason": self.predicted.reason}}


def step_of(model: Topology, predicted: dict[str, Prediction] | None = None) -> int:
    """The slides' step for the devices on the client-server path. Step 1 (a device whose rules
    cannot be read) only where what the model cannot read decides a cell: with `predicted`, a
    cell the walk could not predict because of a ruleset line (the matrix's "cannot predict:
    FILE:LINE uses X"); without, a rule outside what the model reads that can decide a packet."""
    on_path = model.devices_on_path()
    if (unread_cell(predicted) is not None) if predicted is not None else predict.unreadable(model):
        return 1
    modes = {n.firewall.mode for n in on_path if n.firewall is not None}
    if "dynamic" in modes:
        return 4
    if modes:
        return 3
    return 2 if any(n.nat is not None for n in on_path) else 0


def recommend(model: Topology, scen: scenario.Scenarios, observed: dict[str, str] | None = None) -> Recommendation:
    """The method to use on this network, and why (see the module's docstring)."""
    observed = observed or {}
    cells = {m: scenario.Cell(model.name, *m.split("/")) for m in PREFERENCE}
    cells = {m: c for m, c in cells.items() if scen.supported(c)}
    picture = scenario.Picture(model.name, model=model)
    predicted = {m: predict.predict(scen, c, picture) for m, c in cells.items()}

    def outcome(m: str) -> str:
        return observed.get(m) or predicted[m].outcome

    passing = [m for m in cells if outcome(m) == "pass"]
    step = step_of(model, predicted)
    if not passing:
        why = (f"{_step_text(step, predicted)}. On this network no secure method is "
               + ("observed" if observed else "predicted") + " to get through: "
               + _first_failure(predicted, cells))
        return Recommendation(step, None, why)
    method = passing[0]
    source = "passed in this run" if method in observed else "is predicted to pass"
    parts = [_step_text(step, predicted)]
    if method != STEP_METHOD[step]:
        parts.append(_differs(step, method, outcome, observed))
    secure = "keeps the control channel encrypted" if method.split("/")[0] in ENCRYPTED_CONTROL \
        else "clears the control channel after login (CCC), so the devices can read the data setup"
    parts.append(f"here {method} {source} and {secure}")
    if method.startswith("tls-ccc/"):
        parts += _ccc_notes(model, scen, cells[method])
    if method in observed and predicted[method].outcome != observed[method]:
        parts.append(f"the lab's model predicted {predicted[method].outcome} ({predicted[method].reason})")
    return Recommendation(step, method, "; ".join(parts), settings=_settings(model, method),
                          predicted=predicted[method], observed=observed.get(method),
                          alternatives=tuple(passing[1:]))


def unread_cell(predicted: dict[str, Prediction] | None) -> Prediction | None:
    """The first cell the walk could not predict because a device's rules decide it with
    something the model does not read (None: every cell's rules were read)."""
    return next((p for p in (predicted or {}).values()
                 if p.outcome == "unknown" and p.reason.startswith("cannot predict: ") and " uses " in p.reason), None)


def _step_text(step: int, predicted: dict[str, Prediction]) -> str:
    """The step's words; step 1 names the line the matrix names for the same cells."""
    cell = unread_cell(predicted) if step == 1 else None
    if cell is None:
        return STEP_TEXT[step]
    return STEP_TEXT[1].replace("cannot be read,", f"cannot be read ({cell.reason.removeprefix('cannot predict: ')}),")


def _differs(step: int, method: str, outcome, observed: dict) -> str:
    """Where this network departs from the slides' step."""
    step_method = STEP_METHOD[step]
    verb = "fails" if outcome(step_method) == "fail" else ("cannot be predicted"
                                                                if outcome(step_method) == "unknown" else "passes")
    if step_method.startswith("tls-ccc/") and not method.startswith("tls-ccc/"):
        return (f"the step's {step_method} {verb}, but it is not needed: {method} gets through without "
                "putting the control channel in clear")
    return f"the step's {step_method} {verb} on this network"


def _ccc_notes(model: Topology, scen: scenario.Scenarios, cell: scenario.Cell) -> list[str]:
    """What CCC needs on this path, true for the cell's real client."""
    ends = ends_of(scen, cell, model)
    client = "built-in" if ends.client.name == "builtin" else ends.client.name
    helpers = [n.name for n in model.devices_on_path()
               if n.nat is not None and getattr(devices.nat_inspector(n.nat.alg), "misses_first_line_after_ccc", False)]
    notes = ["the server must allow CCC (SECURE_CTRLCONN CLEAR, TLSRFCLEVEL RFC4217 or CCCNONOTIFY)"]
    if helpers:
        if ends.first_after_ccc == "data":
            notes.append(f"the kernel helper on {', '.join(helpers)} misses the first clear line after CCC, and "
                         f"the {client} client's first command after CCC is the data command: set "
                         "CCCNOOP TRUE on the client (NOOP first)")
        else:
            notes.append(f"the kernel helper on {', '.join(helpers)} misses the first clear line after CCC; the "
                         f"{client} client sends another command first (not the data command), so the "
                         "helper reads PASV/PORT")
    return notes


def _settings(model: Topology, method: str) -> dict:
    security, data = method.split("/")
    client: dict[str, str] = {"SECURE_MECHANISM": "TLS"}
    server: dict[str, str] = {}
    if security.startswith("implicit"):
        client["TLSPORT"] = str(model.ftp.implicit_port)
        client["SECUREIMPLICITZOS"] = "TRUE" if security == "implicit-zos" else "FALSE"
    if data == "epsv":
        client["EPSV4"] = "TRUE"
    elif data == "pasv":
        client["FWFRIENDLY"] = "TRUE"
    if data in ("epsv", "pasv") and model.ftp.server_statements.get("PASSIVEDATAPORTS"):
        server["PASSIVEDATAPORTS"] = str(model.ftp.server_statements["PASSIVEDATAPORTS"])
    if security == "tls-ccc":
        server["SECURE_CTRLCONN"] = "CLEAR"
        client["SECURE_CTRLCONN"] = "CLEAR"
    return {"client": client, **({"server": server} if server else {})}


def _first_failure(predicted: dict[str, Prediction], cells: dict) -> str:
    first = next(iter(cells), None)
    return predicted[first].reason if first else "no secure method is supported by both ends"
