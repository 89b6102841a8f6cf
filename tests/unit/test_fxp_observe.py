"""What a three-way (FXP) case observed (lab.matrix.fxprun.observe): the client's --json result, the
copy's check and the device events in; outcome, stage and the node that decided out, by the two-party
rules (lab.matrix.verdict): a dropped SYN names its device and packet, a server's refusal before any
data connection names the node of the server (src or dst) that refused. And the comparison with the
prediction (fxprun.agrees) on outcome, stage and node; and the per-case event window
(lab.matrix.worker.cell_events) that leaves out an earlier case's retransmitted SYNs."""

from __future__ import annotations

from lab.matrix import fxprun
from lab.matrix.pathwalk import Prediction
from lab.matrix.worker import cell_events

SERVERS = {"src": {"node": "server-b", "address": "203.0.113.10", "statements": {}},
           "dst": {"node": "server-a", "address": "192.0.2.10", "statements": {}}}
TRANSCRIPT = ["[src] > PASV", "[src] < 227 Entering Passive Mode (203,0,113,10,234,139)", "[src] > RETR f.bin",
              "[dst] > PORT 203,0,113,10,234,139", "[dst] < 200 PORT command successful", "[dst] > STOR copy.bin",
              "[dst] < 425 Can't open data connection to 203.0.113.10:60043: timed out."]
SYN = {"ts": 1.0, "device": "fw", "type": "drop", "proto": "tcp", "src": "192.0.2.10", "sport": 20,
       "dst": "203.0.113.10", "dport": 60043, "flags": "S", "reason": "no pinhole"}


def failed(stage: str, reason: str, code: int | None, transcript: list[str] | None = None) -> dict:
    return {"outcome": "failed", "stage": stage, "reason": reason, "code": code, "transcript": transcript or TRANSCRIPT}


def test_a_copy_that_arrived_passes_and_names_no_node():
    ok = {"outcome": "ok", "stage": None, "reason": "", "code": None, "bytes": 1024, "transcript": TRANSCRIPT}
    obs = fxprun.observe(ok, True, [{"device": "nat-b", "type": "rewrite"}], SERVERS)
    assert (obs["outcome"], obs["stage"], obs["device"], obs["drop"]) == ("pass", None, None, None)
    assert obs["events"] == [{"device": "nat-b", "type": "rewrite"}] and obs["transcript"] == TRANSCRIPT
    gone = fxprun.observe(ok, False, [], SERVERS)          # the client said ok, dst holds no good copy
    assert (gone["outcome"], gone["stage"], gone["device"]) == ("fail", "verify", None)


def test_a_dropped_syn_decides_and_names_its_device_and_packet():
    client = failed("data-connect", "src: Can't open data connection: nothing connected. (dst: 425 ...)", 425)
    ack = {**SYN, "flags": "A", "sport": 21, "dport": 40000}           # not a new connection: not decisive
    obs = fxprun.observe(client, False, [{"device": "fw", "type": "pinhole-open"}, ack, SYN, SYN], SERVERS)
    assert (obs["outcome"], obs["stage"], obs["device"]) == ("fail", "data-connect", "fw")
    assert obs["drop"] == SYN and len(obs["events"]) == 4
    assert obs["reason"].startswith("fw dropped tcp 192.0.2.10:20 -> 203.0.113.10:60043 [S] (no pinhole)")
    assert "the client: src: Can't open data connection" in obs["reason"]
    # the PORT names the passive server, not the client: verdict's "(the client's own address)" is not said
    assert "own address" not in obs["reason"]


def test_a_dropped_control_syn_fails_at_connect():
    syn = {**SYN, "device": "internet", "src": "198.51.100.10", "sport": 40000, "dst": "10.2.2.10", "dport": 21}
    obs = fxprun.observe(failed("connect", "timed out", None, []), False, [syn], SERVERS)
    assert (obs["outcome"], obs["stage"], obs["device"]) == ("fail", "connect", "internet")


def test_a_refused_port_names_the_server_that_refused_it():
    why = "src: PORT refused: Port command rejected: 203.0.113.10 is not the client's address (PORTCOMMANDIPADDR NOREDIRECT)."
    obs = fxprun.observe(failed("data-setup", why, 504), False, [], SERVERS)
    assert (obs["outcome"], obs["stage"], obs["device"]) == ("fail", "data-setup", "server-b")
    assert "PORTCOMMANDIPADDR NOREDIRECT" in obs["reason"]
    obs = fxprun.observe(failed("data-setup", why.replace("src:", "dst:").replace("PORT", "EPRT", 1), 504), False,
                         [], SERVERS)
    assert obs["device"] == "server-a"


def test_a_refused_login_is_told_by_the_side_whose_last_reply_carries_the_code():
    transcript = ["[src] < 220 ready", "[src] > PASS ***", "[src] < 230 logged in",
                  "[dst] < 220 ready", "[dst] > PASS ***", "[dst] < 530 Login incorrect."]
    obs = fxprun.observe(failed("login", "Login incorrect.", 530, transcript), False, [], SERVERS)
    assert (obs["outcome"], obs["stage"], obs["device"]) == ("fail", "login", "server-a")
    both = [line.replace("230 logged in", "530 Login incorrect.") for line in transcript]
    assert fxprun.observe(failed("login", "Login incorrect.", 530, both), False, [], SERVERS)["device"] is None


def test_what_names_no_node():
    # the passive server closed a data connection that was made: a 425, not a refusal before any
    closed = fxprun.observe(failed("data-connect", "dst: Can't open data connection: 1 connection(s) from another "
                                                   "address than 198.51.100.10 closed (PASSIVEDATACONN NOREDIRECT).",
                                   425), False, [], SERVERS)
    assert (closed["outcome"], closed["stage"], closed["device"]) == ("fail", "data-connect", None)
    # the client's own refusal, before any command: no reply code
    own = fxprun.observe(failed("data-setup", "protected three-way transfer needs SSCN", None, []), False, [], SERVERS)
    assert (own["outcome"], own["stage"], own["device"]) == ("fail", "data-setup", None)


def test_no_client_result_or_a_device_error_is_a_lab_error():
    none = fxprun.observe(None, False, [], SERVERS, exit_code=1, stderr="Traceback ...\nBoom")
    assert none["outcome"] == "error" and "Boom" in none["reason"]
    # as for a two-party cell, a drop still decides when the client printed nothing
    assert fxprun.observe(None, False, [SYN], SERVERS, exit_code=1)["device"] == "fw"
    broken = fxprun.observe(failed("data-connect", "timed out", 425), False,
                            [{"device": "fw", "type": "error", "message": "queue gone"}, SYN], SERVERS)
    assert broken["outcome"] == "error" and "queue gone" in broken["reason"] and broken["device"] is None


def test_agrees_compares_outcome_stage_and_node():
    seen = {"outcome": "fail", "stage": "data-setup", "device": "server-b"}
    assert fxprun.agrees(Prediction("fail", "data-setup", "504", "server-b"), seen)
    assert not fxprun.agrees(Prediction("fail", "data-setup", "504", None), seen)         # differs only by node
    assert not fxprun.agrees(Prediction("fail", "data-connect", "drop", "server-b"), seen)
    assert fxprun.agrees(Prediction("pass", None, "ok"), {"outcome": "pass", "stage": None, "device": None})
    assert fxprun.agrees(Prediction("unknown", None, "Kerberos"), seen)
    assert not fxprun.agrees(Prediction("fail", "data-setup", "504", None), {**seen, "outcome": "error"})


def test_an_earlier_cases_retransmitted_syn_is_not_this_cases():
    seen: set = set()
    first = cell_events([SYN, {"device": "fw", "type": "pinhole-open"}], seen)
    assert first == [SYN, {"device": "fw", "type": "pinhole-open"}]
    again = cell_events([{**SYN, "ts": 3.0}, {**SYN, "dport": 60044}], seen)      # the same flow, then a new one
    assert again == [{**SYN, "dport": 60044}]
