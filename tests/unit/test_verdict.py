"""lab.matrix.verdict: client result + device events -> pass | fail | error, stage and a one-line reason."""

from __future__ import annotations

import hashlib

from lab.matrix.verdict import Observation, describe_drop, verdict

DATA = b"x" * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def drop(**kw) -> dict:
    base = {"ts": 1.0, "device": "fw", "type": "drop", "reason": "no pinhole", "rule": "dyn-new",
            "proto": "tcp", "src": "198.51.100.10", "sport": 40001, "dst": "203.0.113.10",
            "dport": 60005, "flags": "S"}
    return {**base, **kw}


def ok_result(**kw) -> dict:
    return {"ok": True, "bytes": len(DATA), "sha256": SHA, "seconds": 0.01, "mbps": 0.8, **kw}


def failed(stage: str, reason: str, code=None, **kw) -> dict:
    return {"ok": False, "error": {"stage": stage, "reason": reason, "code": code, **kw}}


def obs(client, **kw) -> Observation:
    return Observation(client, expected_bytes=len(DATA), expected_sha256=SHA,
                       control_address="203.0.113.1", **kw)


def test_whole_file_passes():
    v = verdict(obs(ok_result(), exit_code=0))
    assert (v.outcome, v.stage) == ("pass", None)
    assert "SHA-256 verified" in v.reason


def test_damaged_file_fails_at_verify():
    v = verdict(obs(ok_result(sha256="0" * 64)))
    assert (v.outcome, v.stage) == ("fail", "verify")
    short = verdict(obs(ok_result(bytes=10)))
    assert (short.outcome, short.stage) == ("fail", "verify") and "10 of 1000" in short.reason


def test_drop_names_device_and_packet():
    # The runner killed the client on the drop: no client JSON at all.
    v = verdict(obs(None, killed_on_drop=True, exit_code=-9, events=[drop()]))
    assert (v.outcome, v.stage) == ("fail", "data-connect")
    assert v.reason == "fw dropped tcp 198.51.100.10:40001 -> 203.0.113.10:60005 [S] (no pinhole)"
    assert v.drop["device"] == "fw"


def test_drop_of_control_connection_fails_at_connect():
    v = verdict(obs(None, killed_on_drop=True, events=[drop(dport=990, device="nat-s")]))
    assert (v.outcome, v.stage) == ("fail", "connect") and v.reason.startswith("nat-s dropped")


def test_unreachable_pasv_names_announced_and_reachable_address():
    ev = drop(device="internet", reason="private destination", dst="10.1.1.10", dport=60007)
    v = verdict(obs(failed("data-connect", "connect timed out", announced="10.1.1.10:60007"), events=[ev]))
    assert v.outcome == "fail" and v.stage == "data-connect"
    assert "internet dropped" in v.reason
    assert "announced 10.1.1.10:60007, reachable 203.0.113.1" in v.reason


def test_refusal_carries_reply_code():
    v = verdict(obs(failed("data-setup", "PORT rejected: address is not the client's", code=504)))
    assert (v.outcome, v.stage, v.code) == ("fail", "data-setup", 504)
    assert "504" in v.reason


def test_ack_drop_is_not_decisive():
    # A stray ACK dropped after the fact does not decide the cell; the client's own report does.
    v = verdict(obs(failed("login", "530 Login incorrect", code=530), events=[drop(flags="A")]))
    assert (v.outcome, v.stage) == ("fail", "login")


def test_lab_breakage_is_error_not_fail():
    assert verdict(obs(None, exit_code=1, stderr="Traceback ...\nImportError: x")).outcome == "error"
    hung = verdict(obs(None, timed_out=True))
    assert hung.outcome == "error" and "no device reported a drop" in hung.reason
    crashed = verdict(obs(None, events=[{"type": "error", "device": "nat-c", "message": "queue died"}]))
    assert crashed.outcome == "error" and "nat-c" in crashed.reason
    odd = verdict(obs(failed("internal", "bug")))
    assert odd.outcome == "error"


def test_success_wins_over_unrelated_drops():
    assert verdict(obs(ok_result(), events=[drop()])).outcome == "pass"


def test_describe_drop_tolerates_missing_fields():
    assert describe_drop({"device": "fw"}).startswith("fw dropped tcp ?:? -> ?:?")


def test_announced_address_read_from_the_client_transcript():
    transcript = ["> PASV", "< 227 Entering Passive Mode (10,1,1,10,234,101)", "> RETR data.bin"]
    result = {"outcome": "failed", "stage": "data-connect", "reason": "connect timed out", "code": None,
              "transcript": transcript}
    ev = drop(device="internet", reason="private address not routed", dst="10.1.1.10", dport=60005)
    v = verdict(obs(result, events=[ev]))
    assert v.reason.endswith("; announced 10.1.1.10:60005 in the 227 reply, reachable 203.0.113.1")
    port = {"outcome": "failed", "stage": "data-connect", "reason": "no connection",
            "transcript": ["> PORT 192,168,1,10,163,209", "< 200 ok"]}
    v = verdict(obs(port, events=[drop(device="internet", dst="192.168.1.10", dport=41937)]))
    assert "PORT announced 192.168.1.10:41937 (the client's own address)" in v.reason
    epsv = {"outcome": "failed", "stage": "data-connect", "reason": "refused",
            "transcript": ["< 229 Entering Extended Passive Mode (|||60005|)"]}
    assert "announced" not in verdict(obs(epsv)).reason      # EPSV names no address


def test_a_dropped_packet_of_the_control_connection_decides_a_transfer_failure():
    """The firewall forgot the idle control connection and dropped the server's 226: the cell
    fails at transfer, decided by that drop (the event names the expired connection)."""
    from lab.matrix.verdict import Observation, verdict

    drop = {"type": "drop", "device": "fw", "proto": "tcp", "src": "10.1.1.10", "sport": 21,
            "dst": "198.51.100.10", "dport": 40000, "flags": "PA",
            "reason": "control connection 198.51.100.10:40000 -> 203.0.113.1:21 expired: idle longer than the "
                      "idle timeout (2 s)"}
    client = {"outcome": "failed", "stage": "transfer", "reason": "no reply from the server (timeout)"}
    v = verdict(Observation(client, events=[drop]))
    assert (v.outcome, v.stage, v.device, v.drop) == ("fail", "transfer", "fw", drop)
    assert v.reason.startswith("no reply from the server (timeout): fw dropped tcp 10.1.1.10:21 -> "
                               "198.51.100.10:40000 [PA] (control connection")
    data = {**drop, "sport": 60001, "src": "10.1.1.10"}       # a data packet's drop decides nothing here
    assert verdict(Observation(client, events=[data])).device is None


def test_a_dropped_data_syn_fails_at_data_connect_whatever_the_client_was_doing():
    # Active mode: the server sent its 150 before it connected, so the client says "transfer";
    # the dropped SYN from the server's port 989 is what decided the cell.
    client = failed("transfer", "the data connection was not made", code=425)
    ev = drop(device="fw", src="203.0.113.10", sport=989, dst="198.51.100.10", dport=40001)
    v = verdict(obs(client, events=[ev]))
    assert (v.outcome, v.stage, v.device) == ("fail", "data-connect", "fw")


def test_a_stray_control_drop_does_not_overrule_the_servers_reply():
    """Seen in a run: server-nat/tls/pasv+v6 - the server answered 522 (PASV on an IPv6 session),
    while the internet dropped an IPv4 RST of an earlier cell's control connection. The server
    decided; the stray drop did not."""
    from lab.matrix.verdict import Observation, verdict

    stray = {"type": "drop", "device": "internet", "proto": "tcp", "src": "198.51.100.10", "sport": 55436,
             "dst": "10.1.1.10", "dport": 21, "flags": "R", "reason": "private address not routed on the internet"}
    client = failed("data-setup", "PASV refused: No IPv4 address available for PASV. Use EPSV.", code=522)
    v = verdict(Observation(client, events=[stray], server_node="server"))
    assert (v.outcome, v.stage, v.device, v.code) == ("fail", "data-setup", "server", 522)


def test_a_segment_a_device_would_not_read_does_not_decide_the_cell():
    """A control segment refused by the stream checks (a stray, a one-off reordering) is dropped,
    and TCP sends it again: it must not end the cell as a decisive drop would."""
    from lab.matrix.verdict import decides_cell

    refused = {"type": "drop", "device": "nat-c", "proto": "tcp", "src": "203.0.113.1", "sport": 21,
               "dst": "198.51.100.1", "dport": 41844, "flags": "PA",
               "reason": "not read: its timestamp is older than the sender's last (PAWS): the receiver discards it"}
    assert not decides_cell(refused)
    assert decides_cell({**refused, "reason": "control connection expired: idle longer than the idle timeout"})
