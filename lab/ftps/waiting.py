"""select() without its limit: a busy server (or a test process) easily holds descriptors above
1023, which select.select() refuses ("filedescriptor out of range"). poll() has no such limit."""

from __future__ import annotations

import select as _select


def _fd(obj) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


def select(rlist: list, wlist: list = (), timeout: float | None = None) -> tuple[list, list]:
    """Like select.select(rlist, wlist, [], timeout)[:2], for any descriptor number."""
    poller = _select.poll()
    owners: dict[int, list] = {}
    for obj in rlist:
        owners.setdefault(_fd(obj), []).append((obj, _select.POLLIN))
    for obj in wlist:
        owners.setdefault(_fd(obj), []).append((obj, _select.POLLOUT))
    for fd, entries in owners.items():
        mask = 0
        for _, flag in entries:
            mask |= flag
        poller.register(fd, mask)
    # An error or hang-up makes a descriptor readable/writable: the next call reports what it is.
    done = _select.POLLERR | _select.POLLHUP | _select.POLLNVAL
    readable, writable = [], []
    for fd, events in poller.poll(None if timeout is None else max(0.0, timeout) * 1000):
        for obj, flag in owners[fd]:
            if events & (flag | done):
                (readable if flag == _select.POLLIN else writable).append(obj)
    return readable, writable
