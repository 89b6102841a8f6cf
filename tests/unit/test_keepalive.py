"""FTPKEEPALIVE: both sides take the statement; the control socket gets TCP keepalive with it."""

from __future__ import annotations

import socket

import pytest

from lab.errors import InputError
from lab.ftps.config import ClientConfig, ServerConfig
from lab.ftps.keepalive import PROBES, keep_alive


def test_both_sides_take_the_statement_and_default_to_off():
    assert ServerConfig().FTPKEEPALIVE == ClientConfig().FTPKEEPALIVE == 0
    assert ServerConfig.from_dict({"FTPKEEPALIVE": "2"}).FTPKEEPALIVE == 2
    assert ClientConfig.from_dict({"ftpkeepalive": 60}).FTPKEEPALIVE == 60
    with pytest.raises(InputError, match="FTPKEEPALIVE"):
        ClientConfig.from_dict({"FTPKEEPALIVE": "-1"})


def test_keep_alive_sets_idle_interval_and_count():
    with socket.socket() as s:
        keep_alive(s, 0)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        keep_alive(s, 3)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 3
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == PROBES
