"""What the slides predict for a cell, and which method their four steps recommend. Pure functions.

The prediction follows one data connection through the picture, the way the slides reason:
who connects to which announced address, whether a device on the path can read the announcement
(cleartext control channel: plain, or tls-ccc after CCC) and so rewrite it or open a mapping or
pinhole for it, and whether a filter or NAT drops the connection. The first obstacle decides the
cell; the reason names the device that is expected to drop the connection and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lab.devkit.types import Flow
from lab.matrix.scenario import Cell, ClientTraits, Picture, Scenarios, ServerTraits
from lab.topology import devices


@dataclass(frozen=True)
class Prediction:
    outcome: str            # pass | fail
    stage: str | None       # the stage expected to fail (data-connect, ...); None on pass
    reason: str             # one line: why
    device: str | None = None   # the node expected to drop the data connection


def predict_facts(picture: Picture, security: str, data: str, *, alg: str | None = None,
                  client: ClientTraits | None = None, ignore_pasv_address: bool = False,
                  passive_range: bool | None = None, client_options: tuple[str, ...] = (),
                  server: ServerTraits | None = None) -> Prediction:
    """Follow the data connection of (security, data) through the picture. Pure."""
    client = client or ClientTraits("builtin")
    server = server or ServerTraits("builtin")
    alg = alg or picture.alg
    passive_range = picture.passive_range if passive_range is None else passive_range
    first_after_ccc = "other" if "ccc-noop" in client_options else client.first_after_ccc
    # (a client that sends NOOP right after CCC lets even the kernel helper re-synchronise)
    # What can read the data connection's announcement: each inspecting device's own model.
    nat_reads, nat_blind = devices.nat_inspector(alg).reads(security, first_after_ccc)
    dyn_reads, dyn_blind = devices.model("dynamic").reads(security, first_after_ccc)
    flt = picture.filter
    ann = {"pasv": "227 reply", "epsv": "229 reply", "port": "PORT command", "eprt": "EPRT command"}[data]

    def no_pinhole(connection: str) -> Prediction:
        # A dynamic filter that cannot read the announcement drops the data connection, either way.
        return Prediction("fail", "data-connect",
                          f"{flt.node} opens no pinhole: {dyn_blind}; it drops {connection}", flt.node)

    broken = client.broken_for(security, data)
    if broken:
        return Prediction("fail", "data-connect", f"{client.name}: {broken}", None)

    if data in ("pasv", "epsv"):
        ignores = data == "epsv" or ignore_pasv_address or client.ignores_pasv_address
        if picture.server_nat:
            if not ignores and not nat_reads:
                return Prediction(
                    "fail", "data-connect",
                    f"the 227 reply announces the server's private address and {nat_blind}: nothing "
                    f"rewrites it, and {picture.internet} drops the client's connection to a private address",
                    picture.internet)
            forwarded = "passive-range" in picture.forwarded and passive_range
            if not nat_reads and not forwarded:
                what = "no port range is forwarded" if passive_range or "passive-range" not in picture.forwarded \
                    else "the server has no PASSIVEDATAPORTS, so its data port is outside the forwarded range"
                return Prediction(
                    "fail", "data-connect",
                    f"the client connects to {picture.server_nat}'s public address, but {what} and "
                    f"{nat_blind}, so no mapping exists for the data port: {picture.server_nat} drops it",
                    picture.server_nat)
        if flt and flt.mode == "static" and not (passive_range and "passive-range" in flt.permits):
            why = "the server has no PASSIVEDATAPORTS range" if not passive_range \
                else "the filter does not permit the passive range"
            return Prediction("fail", "data-connect",
                              f"{why}: the data port is an ephemeral one and {flt.node}'s static rules drop it",
                              flt.node)
        if flt and flt.mode == "dynamic" and not dyn_reads:
            return no_pinhole("the data connection")
        how = []
        if picture.server_nat and nat_reads:
            how.append(f"{picture.server_nat}'s ALG reads the {ann}, rewrites/maps it")
        elif picture.server_nat:
            how.append(f"{picture.server_nat} forwards the passive range")
        if ignores and data == "pasv":
            how.append("the client ignores the 227 address and uses the control address")
        if flt and flt.mode == "dynamic":
            how.append(f"{flt.node} opens a pinhole from the cleartext {ann}")
        if flt and flt.mode == "static":
            how.append(f"{flt.node} permits the passive range")
        if picture.client_nat:
            how.append(f"{picture.client_nat} masquerades the outbound data connection")
        return Prediction("pass", None, "; ".join(how) or "nothing on the path stands in the way")

    # Active: the client announces its own address; the server connects to it from port 20.
    if picture.client_nat and not nat_reads:
        return Prediction(
            "fail", "data-connect",
            f"the {ann} announces the client's private address and {nat_blind}: {picture.client_nat} "
            f"cannot rewrite it, so the server connects to a private address and {picture.internet} drops it",
            picture.internet)
    sport = server.data_source_port(security)
    if flt and flt.mode == "static" and f"active-from-{sport}" not in flt.permits:
        why = (" (an implicit session's control port is 990, so RFC 959's default data port L-1 is 989; the "
               "slides' rule permits only port 20)" if sport == 989 else "")
        return Prediction("fail", "data-connect",
                          f"{flt.node}'s static rules do not permit connections from the server's port {sport}{why}",
                          flt.node)
    if flt and flt.mode == "dynamic" and not dyn_reads:
        return no_pinhole("the server's data connection")
    how = []
    if picture.client_nat:
        how.append(f"{picture.client_nat}'s ALG rewrites the {ann} to its public address and maps the port")
    if picture.server_nat:
        how.append(f"the server connects out through {picture.server_nat}'s masquerade")
    if flt and flt.mode == "dynamic":
        how.append(f"{flt.node} opens a pinhole from the cleartext {ann}")
    if flt and flt.mode == "static":
        how.append(f"{flt.node} permits connections from the server's port {sport}")
    return Prediction("pass", None, "; ".join(how) or "nothing on the path stands in the way")


def predict(scenarios: Scenarios, cell: Cell, picture: Picture | None = None) -> Prediction:
    """The outcome the slides predict for a cell of a scenario file. Pure."""
    picture = picture or scenarios.pictures[cell.topology]
    spec = scenarios.spec(cell)
    client = scenarios.clients[spec.client]
    server = scenarios.servers[spec.server]
    passive_range = picture.passive_range
    if "PASSIVEDATAPORTS" in spec.server_statements:
        passive_range = spec.server_statements["PASSIVEDATAPORTS"] is not None
    ignore = str(spec.client_statements.get("PASSIVEIGNOREADDR", "FALSE")).upper() == "TRUE"
    options = spec.client_options
    if str(spec.client_statements.get("CCCNOOP", "FALSE")).upper() == "TRUE":
        options += ("ccc-noop",)
    return predict_facts(picture, cell.security, cell.data, alg=spec.alg, client=client,
                         ignore_pasv_address=ignore, passive_range=passive_range, client_options=options,
                         server=server)


# -- the slides' four steps --------------------------------------------------------------------------

@dataclass(frozen=True)
class Recommendation:
    step: int                  # 0 = "no problems" (no devices), 1-4 = the slides' steps
    security: str
    data: str
    why: str
    settings: dict = field(default_factory=dict)     # what to configure (FTP.DATA, firewall)
    predicted: Prediction | None = None              # the predictor's verdict on the recommended cell
    alternatives: tuple[str, ...] = ()               # other "security/data" predicted to pass

    @property
    def method(self) -> str:
        return f"{self.security}/{self.data}"


STEP_TEXT = {
    0: "no firewall and no NAT on the path: secure FTP works with every method (slides: 'there are no problems')",
    1: "step 1: you don't know what your firewalls do: use the CCC command method",
    2: "step 2: the firewalls only do NAT (no filtering): use extended passive mode (EPSV)",
    3: "step 3: NAT and/or static filtering: PASSIVEDATAPORTS on the server, static permits for that range, "
       "and extended passive mode (EPSV) from the client",
    4: "step 4: dynamic filtering (with or without NAT): the CCC command method is the only one that works",
}


def recommend(picture: Picture, known: bool = True) -> Recommendation:
    """Apply the slides' four steps to the devices on the picture's path. Pure.

    `known` is False when a device's behaviour cannot be read from the file (e.g. an
    iptables-save ruleset): step 1 applies then.
    """
    flt = picture.filter
    if not known:
        rec = Recommendation(1, "tls-ccc", "epsv", STEP_TEXT[1])
    elif flt and flt.mode == "dynamic":
        rec = Recommendation(4, "tls-ccc", "epsv", STEP_TEXT[4] + f" ({flt.node} filters dynamically)")
    elif flt and flt.mode == "static":
        rec = Recommendation(3, "tls", "epsv", STEP_TEXT[3] + f" ({flt.node} filters statically)",
                             settings={"server": {"PASSIVEDATAPORTS": "(60000,60100)"},
                                       "firewall": "permit client any -> server 60000-60100"})
    elif picture.has_nat:
        nats = ", ".join(n for n in (picture.client_nat, picture.server_nat) if n)
        rec = Recommendation(2, "tls", "epsv", STEP_TEXT[2] + f" ({nats} translates)",
                             settings={"client": {"EPSV4": "TRUE"}})
    else:
        rec = Recommendation(0, "tls", "epsv", STEP_TEXT[0])
    predicted = predict_facts(picture, rec.security, rec.data)
    alternatives = tuple(f"{s}/{d}" for s in ("tls", "tls-ccc", "implicit", "implicit-zos")
                         for d in ("pasv", "epsv", "port", "eprt")
                         if (s, d) != (rec.security, rec.data) and predict_facts(picture, s, d).outcome == "pass")
    why = rec.why
    if predicted.outcome != "pass":
        why += (f". But on this picture the predictor expects it to FAIL ({predicted.reason}); "
                "the slides' step assumes the data port reaches the server")
    return replace(rec, why=why, predicted=predicted, alternatives=alternatives)


# -- facts from a topology model (for users' own pictures) ------------------------------------------

def _passive_range(statements: dict) -> tuple[int, int] | None:
    value = statements.get("PASSIVEDATAPORTS")
    if not value:
        return None
    nums = [int(x) for x in str(value).strip("() ").replace(" ", ",").split(",") if x]
    return (nums[0], nums[1]) if len(nums) == 2 else None


def picture_of(topology) -> tuple[Picture, bool]:
    """Derive a picture's facts from a topology model; False when a device cannot be read (step 1)."""
    from lab.matrix.scenario import FilterFacts

    ftp = topology.ftp
    hops = topology.hops()
    prange = _passive_range(ftp.server_statements)
    client_ip = topology.address_of(ftp.client)
    server_ip = topology.address_of(ftp.server)
    client_nat = server_nat = None
    alg = "off"
    forwarded: tuple[str, ...] = ()
    flt = None
    known = True
    for i in range(1, len(hops) - 1):
        node = topology.nodes[hops[i]]
        toward_client = next((x.name for x in node.interfaces if x.peer == hops[i - 1]), None)
        toward_server = next((x.name for x in node.interfaces if x.peer == hops[i + 1]), None)
        if node.nat is not None:
            out = node.nat.outside
            if node.nat.masquerade and toward_server == out and toward_client != out:
                client_nat = node.name
            if toward_client == out and toward_server != out:
                server_nat = node.name
                if prange and any(f.ports.low <= prange[0] and prange[1] <= f.ports.high
                                  for f in node.nat.forwards if f.proto == "tcp"):
                    forwarded = ("passive-range",)
            if node.nat.alg != "off":
                alg = node.nat.alg
        if node.firewall is not None:
            fw = node.firewall
            permits = []
            unreadable = devices.unreadable(fw)
            if fw.iptables_save is not None or unreadable:
                known = False
            if fw.mode in ("static", "nftables") and not unreadable:
                # the filter's own model (a rule list or an nft ruleset), with the interfaces the
                # data connection crosses
                admits = devices.model(fw.mode)
                if prange and all(admits(fw, Flow("tcp", client_ip, server_ip, p, None, toward_client,
                                                  toward_server))[0] == "accept" for p in prange):
                    permits.append("passive-range")
                for sport in (20, 989):
                    if admits(fw, Flow("tcp", server_ip, client_ip, 40000, sport, toward_server,
                                       toward_client))[0] == "accept":
                        permits.append(f"active-from-{sport}")
            # an nft ruleset reads no control channel: to FTP it is a static filter
            flt = FilterFacts(node.name, "dynamic" if fw.mode == "dynamic" else "static", tuple(permits))
    picture = Picture(name=topology.name, title=topology.description, client_nat=client_nat,
                      server_nat=server_nat, alg=alg, forwarded=forwarded, filter=flt,
                      passive_range=prange is not None, internet=topology.internet or "internet")
    return picture, known
