"""The matrix's client agent (lab.matrix.agent) on loopback: it runs `ftlab client` cell after cell
in one process, an abort ends a client that waits for a dropped data connection at once, with its
stage and transcript, and its timed transfers measure a real server."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest

from lab.endpoints import peers
from lab.matrix.agent import Agent


class Silent:
    """An FTP server that accepts PORT and RETR but never connects back (as if a firewall dropped
    its SYN): the client waits DATACONNTIME for a data connection that never comes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    @staticmethod
    def session(conn: socket.socket) -> None:
        replies = {b"USER": b"331 password\r\n", b"PASS": b"230 in\r\n", b"TYPE": b"200 ok\r\n",
                   b"PORT": b"200 ok\r\n", b"RETR": b"150 opening\r\n", b"QUIT": b"221 bye\r\n"}
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 silent\r\n")
            for line in f:
                conn.sendall(replies.get(line[:4].upper(), b"502 no\r\n"))


@pytest.fixture
def agent():
    a = Agent.start(lambda argv, **kw: subprocess.Popen(argv, **kw), "here")
    yield a
    a.stop()


def cell_argv(port: int, out, data: str = "port") -> list[str]:
    return [f"ftp://lab@127.0.0.1:{port}/data.bin", "--security", "plain", "--data", data, "--password", "x",
            "--timeout", "8", "--json", "get", "-o", str(out)]


def test_an_abort_ends_the_wait_for_a_dropped_data_connection_at_once(agent, tmp_path):
    server = Silent()
    for _ in range(2):                                   # the agent serves cell after cell
        agent.send({"cell": cell_argv(server.port, tmp_path / "out")})
        assert agent.reply(0.3) is None                  # waiting for the data connection (2 s)
        aborted = time.monotonic()
        agent.abort()
        reply = agent.reply(5)
        assert reply is not None and time.monotonic() - aborted < 1.0     # not the 2 s wait; room for CI load
        result = json.loads(reply["stdout"])
        assert result["outcome"] == "failed" and reply["rc"] != 0
        assert "> RETR data.bin" in result["transcript"] and "< 150 opening" in result["transcript"]
    assert agent.exited() is None


def test_an_abort_between_cells_is_ignored(agent, tmp_path):
    agent.abort()                                        # nothing runs: nothing to end
    agent.send({"cell": ["ftp://lab@127.0.0.1:1/x", "--json", "--password", "x", "--timeout", "2",
                         "get", "-o", str(tmp_path / "x")]})
    reply = agent.reply(10)
    assert json.loads(reply["stdout"])["stage"] == "connect"      # refused: port 1, nobody listens


def test_timed_transfers_measure_a_real_server(agent, tmp_path):
    server = peers.start_ftlab_server(None, None, quiet=True, workbase=tmp_path)
    try:
        (server.root / "big.bin").write_bytes(b"\x5a" * (8 << 20))
        replies = []
        for _ in range(2):                               # one session, kept from one round to the next
            agent.send({"measure": {"host": "127.0.0.1", "port": server.port, "user": server.user,
                                    "password": server.password, "path": "big.bin", "security": "plain",
                                    "data": "pasv", "seconds": 0.3, "session": "passive/clear"}})
            replies.append(agent.reply(20))
        agent.send({"close": True})
        closed = agent.reply(10)
        log = server.log.read_text()
    finally:
        server.stop()
    for reply in replies:
        assert reply["transfers"] >= 1 and reply["bytes"] == reply["transfers"] * (8 << 20)
        assert 0 < reply["seconds"] < 5
    assert closed == {"closed": True}
    sessions = {line.split("]")[0].split("[")[1] for line in log.splitlines() if "big.bin" in line}
    assert len(sessions) == 1, log[-2000:]             # every transfer of both rounds on one session
