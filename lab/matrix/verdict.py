"""The verdict on one cell: what the client reported plus what the devices saw. Pure functions.

    outcome  pass   the file arrived whole (bytes and SHA-256 as sent)
             fail   FTP did not get through: a device dropped a connection, the server refused,
                    or the data arrived damaged; `stage` says where, `reason` says why in one line
             error  the lab itself broke (no client result, a device crashed, a hang nobody
                    explains); never counted as a fail of the method under test

A drop names the device and the packet; an unreachable PASV/PORT names the announced address
versus the one the peer can reach; a refusal names the reply code. `device` is the node that
decided (what `agrees` compares with the prediction's): the one whose drop was observed, or the
server that refused before any data connection; None when nothing observable decided
(lab.report.results.agrees compares outcome, stage and device with the prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.devkit.events import describe_drop
from lab.ftps.modes import STAGES


@dataclass
class Observation:
    """Everything the runner observed about one cell."""
    client: dict | None                  # the client's --json result (None: it printed none)
    exit_code: int | None = None
    events: list[dict] = field(default_factory=list)   # device events while the cell ran
    expected_bytes: int | None = None
    expected_sha256: str | None = None
    killed_on_drop: bool = False         # the runner ended the client because a drop decided it
    timed_out: bool = False              # the runner's hard timeout ended the client
    stderr: str = ""
    control_address: str | None = None   # the address the client dialed
    control_ports: tuple[int, ...] = (21, 990)
    server_node: str | None = None       # the node of the FTP server (a refusal is its decision)


@dataclass
class Verdict:
    outcome: str                         # pass | fail | error
    stage: str | None
    reason: str
    drop: dict | None = None             # the drop event that decided the cell
    code: int | None = None              # the reply code of a refusal
    device: str | None = None            # the node that decided: the one that dropped, or the server that refused


def is_new_connection(e: dict) -> bool:
    """A drop of a connection attempt (SYN without ACK), or of a packet whose flags are unknown."""
    flags = str(e.get("flags") or "")
    return not flags or ("S" in flags and "A" not in flags)


def on_control(e: dict, control_ports: tuple[int, ...] = (21, 990)) -> bool:
    """A dropped packet to or from a control port (of the control connection, not a data one)."""
    try:
        return int(e.get("dport", -1)) in control_ports or int(e.get("sport", -1)) in control_ports
    except (TypeError, ValueError):
        return False


def decides_cell(e: dict, control_ports: tuple[int, ...] = (21, 990)) -> bool:
    """A drop event of the running cell's own traffic after which nothing can get through, so
    the runner may end the client at once (killed_on_drop) instead of waiting for its timer:
    a new connection's SYN (nothing admits that connection any more), or a packet of the control
    connection (a device forgot it - its idle timeout - or never admitted it: each retransmission
    meets the same drop, and the reply the client waits for never comes). The caller leaves out
    strays of earlier cells (the worker's seen flows)."""
    if e.get("type") != "drop" or str(e.get("reason", "")).startswith("not read:"):
        return False          # a segment a device would not read (lab.devkit.ctrlstream): TCP resends it
    return is_new_connection(e) or on_control(e, control_ports)


def drop_stage(e: dict, control_ports: tuple[int, ...] = (21, 990)) -> str:
    """A dropped control connection fails at connect; anything else is a data connection."""
    try:
        if int(e.get("dport", -1)) in control_ports:
            return "connect"
    except (TypeError, ValueError):
        pass
    return "data-connect"


def announced_in(transcript: list[str]) -> tuple[str, str] | None:
    """The last data-connection announcement in a client transcript: ("ip:port" or ":port", what)."""
    from lab.ftps import grammar

    for line in reversed(transcript or []):
        direction, _, text = line.partition(" ")
        try:
            if direction == "<" and text.startswith("227"):
                return str(grammar.parse_227(text)), "the 227 reply"
            if direction == "<" and text.startswith("229"):
                return f":{grammar.parse_229(text)}", "the 229 reply"
            verb, _, arg = text.partition(" ")
            if direction == ">" and verb.upper() == "PORT":
                return str(grammar.parse_port_args(arg)), "PORT"
            if direction == ">" and verb.upper() == "EPRT":
                return str(grammar.parse_eprt_args(arg)), "EPRT"
        except (grammar.GrammarError, ValueError):
            continue
    return None


def client_fields(result: dict) -> dict:
    """The client's JSON result in the runner's terms (tolerant of the endpoints' key names)."""
    error = result.get("error") if isinstance(result.get("error"), dict) else {}
    ok = result.get("ok")
    if ok is None:
        ok = result.get("outcome") in ("ok", "pass", "success") or (not error and result.get("stage") is None
                                                                   and "bytes" in result)
    sha = result.get("sha256")
    found = announced_in(result.get("transcript") or [])
    fields = {
        "ok": bool(ok),
        "stage": error.get("stage") or result.get("stage"),
        "code": error.get("code") if error.get("code") is not None else result.get("code"),
        "reason": error.get("reason") or error.get("message") or result.get("reason") or result.get("message") or "",
        "bytes": result.get("bytes"),
        "sha256": sha,
        "mbps": result.get("mbps") if result.get("mbps") is not None else result.get("throughput_mbps"),
        "seconds": result.get("seconds"),
        "announced": error.get("announced") or result.get("announced") or result.get("data_address"),
        "announced_in": None,
    }
    if not fields["announced"] and found:
        fields["announced"], fields["announced_in"] = found
    return fields


def verdict(obs: Observation) -> Verdict:
    """Decide one cell. Pure."""
    drops = [e for e in obs.events if e.get("type") == "drop"]
    decisive = [e for e in drops if is_new_connection(e)]
    device_errors = [e for e in obs.events if e.get("type") == "error"]
    c = client_fields(obs.client) if isinstance(obs.client, dict) else None

    if c and c["ok"]:
        if obs.expected_bytes is not None and c["bytes"] is not None and c["bytes"] != obs.expected_bytes:
            return Verdict("fail", "verify", f"transfer reported success but moved {c['bytes']} of "
                                             f"{obs.expected_bytes} bytes")
        if obs.expected_sha256 and c["sha256"] and c["sha256"] != obs.expected_sha256:
            return Verdict("fail", "verify", f"the file arrived with SHA-256 {c['sha256'][:16]}..., "
                                             f"expected {obs.expected_sha256[:16]}...: the data was altered")
        if obs.expected_sha256 and not c["sha256"]:
            return Verdict("error", "verify", "the client reported success without a SHA-256 to check")
        return Verdict("pass", None, f"{c['bytes']} bytes, SHA-256 verified")

    if device_errors:
        e = device_errors[0]
        return Verdict("error", c["stage"] if c else None,
                       f"lab: device {e.get('device', '?')} reported an error: {e.get('message', '')}")

    if decisive:
        d = decisive[0]
        # The dropped SYN says which connection failed to open, whatever the client was doing then:
        # in active mode the server may already have sent its 150, so the client says "transfer".
        stage = drop_stage(d, obs.control_ports)
        return Verdict("fail", stage, describe_drop(d) + _announced(c, obs), drop=d, device=d.get("device"))

    lost = [e for e in drops if not is_new_connection(e) and on_control(e, obs.control_ports)]
    if c and not c["ok"] and lost and c["stage"] in STAGES and c["code"] is None:
        # a packet of the control connection itself dropped (a device forgot the connection: its
        # idle timeout): the reply the client waited for never came. A client that got a reply
        # code was answered; a control-port drop then is a stray of an earlier cell's connection.
        d = lost[0]
        return Verdict("fail", c["stage"], f"{c['reason'] or 'failed'}: {describe_drop(d)}", drop=d,
                       device=d.get("device"))

    if c and not c["ok"]:
        stage = c["stage"] if c["stage"] in STAGES else None
        if stage is None:
            return Verdict("error", None, f"lab: client failed outside any FTP stage: {c['reason'] or obs.stderr[-200:]}")
        code = c["code"]
        reason = c["reason"] or "failed"
        if code is not None and str(code) not in reason:
            reason = f"server replied {code}: {reason}"
        if stage == "data-connect":
            reason += _announced(c, obs, dropped=False)
        if stage in ("data-connect", "transfer") and obs.timed_out:
            reason += "; no device reported a drop"
        code = int(code) if isinstance(code, int | str) and str(code).isdigit() else None
        return Verdict("fail", stage, reason, code=code, device=refused_by(stage, code, obs))

    if obs.timed_out:
        return Verdict("error", None, "lab: the client gave no result before the hard timeout and no device "
                                      "reported a drop")
    tail = obs.stderr.strip().splitlines()[-1] if obs.stderr.strip() else "no output"
    return Verdict("error", None, f"lab: the client exited {obs.exit_code} without a result: {tail}")


#: Stages at which a reply code is the server's own decision (later, a 425 reports the network).
DECIDED_BY_SERVER = ("connect", "tls", "login", "data-setup")


def refused_by(stage: str, code: int | None, obs: Observation) -> str | None:
    """The node that decided a failure no device dropped: the server, when it answered with a
    refusal before any data connection; None otherwise (a reset, a timeout, the client's own)."""
    return obs.server_node if code is not None and stage in DECIDED_BY_SERVER else None


def _announced(c: dict | None, obs: Observation, dropped: bool = True) -> str:
    """`; announced 10.1.1.10:60005 in the 227 reply, reachable 203.0.113.1` where they differ."""
    if not c or not c["announced"] or str(c["announced"]).startswith(":"):
        return ""
    where = f" in {c['announced_in']}" if c.get("announced_in") else ""
    host = str(c["announced"]).rsplit(":", 1)[0]
    if c.get("announced_in") in ("PORT", "EPRT"):
        # The server connects to what the client announced: worth saying when that was dropped.
        return f"; {c['announced_in']} announced {c['announced']} (the client's own address)" if dropped else ""
    if obs.control_address and host != obs.control_address:
        return f"; announced {c['announced']}{where}, reachable {obs.control_address}"
    return ""
