"""Failed-login throttling across sessions, per client address and per user name.

LOGINDELAY slows the guesses of one session; an attacker opens many sessions, from one address or
from many. So the server keeps, for each client address (an IPv6 client: its /64, which one host
usually owns whole) and for each user name, the failed logins of the last LOGINWINDOW seconds:

- At LOGINLIMIT failures the address or the user is locked: a PASS for it is refused without
  comparing the password, until its oldest failure is LOGINWINDOW seconds old. Attempts in flight
  count as failures until they end, so parallel sessions cannot overrun the limit: at most
  LOGINLIMIT passwords are compared per address and per user in any LOGINWINDOW seconds.
- A failure waits LOGINDELAY times the failures its address or user has in the window (a delay
  that grows); a right password is never delayed.
- The price (as with RACF revoking a user ID): an attacker can lock a user out for a window.

Public API
    t = LoginThrottle(limit=10, window=300)     # limit 0 = no throttling
    attempt = t.begin(client_ip, user)          # reserve the right to compare one password
    attempt.locked                              # None, or what is locked ("address 10.0.0.5", "user 'bob'")
    t.end(attempt, ok) -> list[str]             # the keys this failure has just locked (log them)
    t.failures(attempt) -> int                  # failures of its address or user in the window
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 10000      # addresses and users remembered; the oldest are forgotten beyond this
MAX_NAME = 256        # characters of a user name in its key (a name may be a 2 KiB command line)


@dataclass
class Attempt:
    keys: tuple[str, ...]
    locked: str | None = None
    _counted: bool = field(default=False, repr=False)


def address_key(ip: str) -> str:
    """The throttling key of a client address: an IPv4 address, or the /64 of an IPv6 one."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"address {ip}"
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return f"address {addr.ipv4_mapped}"
        return f"address {ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address {addr}"


class LoginThrottle:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._lock = threading.Lock()
        self._failed: dict[str, deque[float]] = {}
        self._inflight: dict[str, int] = {}

    def begin(self, client_ip: str, user: str) -> Attempt:
        attempt = Attempt((address_key(client_ip), f"user {user[:MAX_NAME]!r}"))
        if self.limit <= 0:
            return attempt
        with self._lock:
            now = self.clock()
            for key in attempt.keys:
                if self._recent(key, now) + self._inflight.get(key, 0) >= self.limit:
                    attempt.locked = key
                    return attempt
            for key in attempt.keys:
                self._inflight[key] = self._inflight.get(key, 0) + 1
            attempt._counted = True
        return attempt

    def end(self, attempt: Attempt, ok: bool) -> list[str]:
        """Close an attempt begin() admitted; a failure is remembered. Returns the keys that this
        failure has just brought to the limit."""
        if not attempt._counted:
            return []
        engaged = []
        with self._lock:
            now = self.clock()
            for key in attempt.keys:
                left = self._inflight.get(key, 1) - 1
                if left:
                    self._inflight[key] = left
                else:
                    self._inflight.pop(key, None)
                if not ok:
                    self._failed.setdefault(key, deque()).append(now)
                    if self._recent(key, now) == self.limit:
                        engaged.append(key)
            attempt._counted = False
            if len(self._failed) > MAX_KEYS:
                self._forget(now)
        return engaged

    def failures(self, attempt: Attempt) -> int:
        with self._lock:
            now = self.clock()
            return max(self._recent(key, now) for key in attempt.keys)

    def _recent(self, key: str, now: float) -> int:
        """Failures of key in the window (older ones are dropped here)."""
        times = self._failed.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[key]
            return 0
        return len(times)

    def _forget(self, now: float) -> None:
        """Keep the table bounded: drop expired keys, then the ones whose last failure is oldest."""
        for key in list(self._failed):
            self._recent(key, now)
        if len(self._failed) > MAX_KEYS:
            by_age = sorted(self._failed, key=lambda k: self._failed[k][-1])
            for key in by_age[:len(self._failed) - MAX_KEYS]:
                del self._failed[key]
