"""What one client may hold of the server: session slots, and time before login.

Every session is a thread with a control connection (and, once logged in, maybe a passive port).
A hostile client opens thousands of control connections, or connects and never speaks - never a
TLS ClientHello, never a command, or a byte a minute (slowloris). So the server:

- admits a connection only while fewer than MAXSESSIONS sessions are alive and fewer than
  MAXSESSIONSPERADDRESS come from its address (an IPv6 client: its /64, which one host usually
  owns whole, as for the login throttle); a refused connection never gets a thread;
- logs refusals as one line at most every REFUSAL_LOG_EVERY seconds, with the number not logged;
- ends a session that has not logged in LOGINTIMEOUT seconds after it connected (TLS handshake
  included): one thread for the whole server watches these deadlines, since a per-read socket
  timeout (INACTIVE) does not bound a peer that sends one byte per read.

Public API
    slots = SessionSlots(max_total=100, max_per_address=10)   # 0 = no limit
    slots.take(ip) -> str | None    # None: admitted, the slot is held; else the statement that refused
    slots.give_back(ip)             # the session ended
    slots.held(ip=None) -> int      # slots held, in all or by ip's address
    log = RefusalLog(every=10.0)
    log.note() -> int | None        # None: do not log this one; n: log it, n refusals were not logged
    timer = Deadlines()
    timer.start()                   # its thread (arm() starts it too, if need be)
    timer.arm(key, seconds, fire)   # fire() once, in the timer's thread, unless disarmed (re-arm replaces)
    timer.disarm(key) -> bool       # True: it was armed and has not fired, and now never will
    timer.close()
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable

from lab.ftps.throttle import address_key

log = logging.getLogger("lab.ftps.server")

REFUSAL_LOG_EVERY = 10.0      # seconds between two log lines about refused connections


class SessionSlots:
    def __init__(self, max_total: int, max_per_address: int):
        self.max_total, self.max_per_address = max_total, max_per_address
        self._lock = threading.Lock()
        self._total = 0
        self._by_address: dict[str, int] = {}

    def take(self, ip: str) -> str | None:
        """Hold a slot for a connection from ip; the statement whose limit is reached if none is left."""
        key = address_key(ip)
        with self._lock:
            if self.max_total and self._total >= self.max_total:
                return "MAXSESSIONS"
            if self.max_per_address and self._by_address.get(key, 0) >= self.max_per_address:
                return "MAXSESSIONSPERADDRESS"
            self._total += 1
            self._by_address[key] = self._by_address.get(key, 0) + 1
        return None

    def give_back(self, ip: str) -> None:
        key = address_key(ip)
        with self._lock:
            left = self._by_address.get(key, 0) - 1
            if left < 0:                   # a slot given back twice would open the limit: a bug
                raise RuntimeError(f"session slot of {key} given back twice")
            if left:
                self._by_address[key] = left
            else:
                del self._by_address[key]       # the table holds only addresses with sessions
            self._total -= 1

    def held(self, ip: str | None = None) -> int:
        with self._lock:
            return self._total if ip is None else self._by_address.get(address_key(ip), 0)


class RefusalLog:
    """Rate-limits the log lines of refused connections, so that a flood does not flood the log."""

    def __init__(self, every: float = REFUSAL_LOG_EVERY, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._unlogged = 0

    def note(self) -> int | None:
        with self._lock:
            now = self.clock()
            if self._last is None or now - self._last >= self.every:
                unlogged, self._unlogged, self._last = self._unlogged, 0, now
                return unlogged
            self._unlogged += 1
            return None


class Deadlines:
    """Calls fire() of each armed key when its time comes, from one thread (started when needed)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[Hashable, tuple[float, int, Callable[[], None]]] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, key: Hashable, seconds: float, fire: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            when, seq = time.monotonic() + seconds, next(self._seq)
            self._armed[key] = (when, seq, fire)
            heapq.heappush(self._heap, (when, seq, key))
            self._start()
            self._cond.notify()

    def start(self) -> None:
        with self._cond:
            if not self._closed:
                self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ftps-deadlines", daemon=True)
            self._thread.start()

    def disarm(self, key: Hashable) -> bool:
        with self._cond:
            return self._armed.pop(key, None) is not None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._armed.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)

    def _due(self) -> list[Callable[[], None]]:
        """Wait for the next deadline; the functions due now (their keys disarmed)."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    _, seq, key = heapq.heappop(self._heap)
                    armed = self._armed.get(key)
                    if armed is not None and armed[1] == seq:     # not disarmed or re-armed since
                        del self._armed[key]
                        due.append(armed[2])
                if due:
                    return due
                if not self._armed:
                    self._heap.clear()            # only stale entries left
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return []

    def _run(self) -> None:
        while fires := self._due():
            for fire in fires:
                try:
                    fire()
                except Exception:          # one broken callback must not stop every other deadline
                    log.exception("deadline callback failed")
