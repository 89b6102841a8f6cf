"""The login throttle on its own (lab/ftps/throttle.py), with a fake clock: the limit holds under
parallel attempts, locks end when failures age out, IPv6 clients count per /64, memory is bounded."""

from __future__ import annotations

import threading

from lab.ftps import throttle
from lab.ftps.throttle import LoginThrottle, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_counts_attempts_in_flight():
    t = LoginThrottle(limit=3, window=60, clock=Clock())
    open_attempts = [t.begin("10.0.0.1", "alice") for _ in range(5)]     # 5 at once, none ended yet
    assert [a.locked for a in open_attempts] == [None, None, None, "address 10.0.0.1", "address 10.0.0.1"]


def test_a_lock_ends_when_the_failures_age_out():
    clock = Clock()
    t = LoginThrottle(limit=2, window=60, clock=clock)
    engaged = [t.end(t.begin("10.0.0.1", "alice"), ok=False) for _ in range(2)]
    assert engaged == [[], ["address 10.0.0.1", "user 'alice'"]]
    assert t.begin("10.0.0.2", "alice").locked == "user 'alice'"
    assert t.begin("10.0.0.1", "bob").locked == "address 10.0.0.1"
    clock.now += 60.5
    attempt = t.begin("10.0.0.1", "alice")
    assert attempt.locked is None
    assert t.end(attempt, ok=True) == [] and t.failures(attempt) == 0


def test_a_right_password_is_not_a_failure():
    t = LoginThrottle(limit=1, window=60, clock=Clock())
    for _ in range(5):
        assert t.end(t.begin("10.0.0.1", "alice"), ok=True) == []
    assert t.begin("10.0.0.1", "alice").locked is None


def test_ipv6_clients_count_per_64():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::1") == "address 2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "address 10.0.0.1"
    assert address_key("192.0.2.1") == "address 192.0.2.1"


def test_no_limit_when_0():
    t = LoginThrottle(limit=0, window=60, clock=Clock())
    for _ in range(100):
        assert t.begin("10.0.0.1", "alice").locked is None


def test_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(throttle, "MAX_KEYS", 100)
    t = LoginThrottle(limit=5, window=60, clock=Clock())
    for i in range(1000):
        t.end(t.begin(f"10.0.{i // 256}.{i % 256}", "x" * 5000 + str(i)), ok=False)
    assert len(t._failed) <= 101 and max(len(k) for k in t._failed) < 300


def test_parallel_attempts_never_exceed_the_limit():
    t = LoginThrottle(limit=7, window=60, clock=Clock())
    admitted = []

    def guess() -> None:
        attempt = t.begin("10.0.0.1", "alice")
        if attempt.locked is None:
            admitted.append(attempt)
            t.end(attempt, ok=False)
    threads = [threading.Thread(target=guess) for _ in range(200)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(admitted) == 7
