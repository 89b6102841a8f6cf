"""Fixtures for interop tests: third-party FTP servers on 127.0.0.1 (tests/peers.py), a lab CA with a
server certificate, and payload files. Each server fixture skips the test, naming the reason, when
its binary is missing; otherwise it starts a fresh server and stops it (by PID) afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import peers
import pytest


def _require(*tools: str) -> None:
    for tool in tools:
        reason = peers.missing(tool)
        if reason:
            pytest.skip(reason)


def _require_root() -> None:
    reason = peers.need_root()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> peers.Certs:
    return peers.make_certs(tmp_path_factory.mktemp("certs"))


def _serve(tool: str, start: Callable[[], peers.Peer], request: pytest.FixtureRequest,
           root: bool = True) -> Iterator[peers.Peer]:
    """Skip unless `tool` is there (and we are root when the server needs it), else start the peer
    for the test and stop it afterwards."""
    _require(tool)
    if root:
        _require_root()
    peer = start()
    try:
        yield peer
    finally:
        _stop(peer, request)


def _stop(peer: peers.Peer, request: pytest.FixtureRequest) -> None:
    """Stop a peer; print its logs first when the test failed."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"--- {peer.name} logs ---\n{peer.logs()}")
    peer.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # Remember each phase's report on the test item, so a fixture can print server logs on failure.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def vsftpd_explicit(certs: peers.Certs, request: pytest.FixtureRequest) -> Iterator[peers.Peer]:
    """vsftpd, explicit FTPS (AUTH TLS), TLS forced on login and data, require_ssl_reuse=YES."""
    yield from _serve("vsftpd", lambda: peers.start_vsftpd(certs), request)


@pytest.fixture
def vsftpd_implicit(certs: peers.Certs, request: pytest.FixtureRequest) -> Iterator[peers.Peer]:
    """vsftpd with implicit_ssl=YES (and require_ssl_reuse=YES)."""
    yield from _serve("vsftpd", lambda: peers.start_vsftpd(certs, implicit=True), request)


@pytest.fixture
def proftpd_explicit(certs: peers.Certs, request: pytest.FixtureRequest) -> Iterator[peers.Peer]:
    """ProFTPD + mod_tls, explicit, `TLSRequired auth+data` (so CCC is accepted after login)."""
    yield from _serve("proftpd", lambda: peers.start_proftpd(certs), request)


@pytest.fixture
def proftpd_implicit(certs: peers.Certs, request: pytest.FixtureRequest) -> Iterator[peers.Peer]:
    """ProFTPD + mod_tls with `TLSOptions UseImplicitSSL`."""
    yield from _serve("proftpd", lambda: peers.start_proftpd(certs, implicit=True), request)


@pytest.fixture
def pyftpdlib_tls(certs: peers.Certs, request: pytest.FixtureRequest) -> Iterator[peers.Peer]:
    """pyftpdlib, explicit FTPS with TLS required on control and data."""
    yield from _serve("pyftpdlib", lambda: peers.start_pyftpdlib(certs), request, root=False)


@pytest.fixture
def ftlab_server(certs: peers.Certs, request: pytest.FixtureRequest):
    """A factory: ftlab_server(ftpdata="SECURE_FTP REQUIRED", implicit_listener=True) starts the lab's
    server (`ftlab server` in its own process) and stops it after the test."""
    started: list[peers.Peer] = []

    def start(ftpdata: str = "", **kw) -> peers.Peer:
        peer = peers.start_ftlab(certs, ftpdata, **kw)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        _stop(peer, request)
