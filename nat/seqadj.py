"""TCP sequence adjustment for a device that changes the length of a stream (pure).

When the ALG replaces `PORT 10,0,1,2,4,1` by `PORT 203,0,113,1,4,1`, every later byte of that
direction moves by the difference, and the other side acknowledges positions in the moved stream.
A SeqMap holds, for one direction, the rewritten lines ("units": original range -> new bytes), so:

- `to_out(offset)` shifts a sequence position of this direction (segments' seq);
- `to_orig(offset)` shifts back an acknowledgement of this direction (the other direction's ack and
  SACK blocks);
- `segment()` builds what to forward for any original segment, the same way every time: a
  retransmission of a rewritten segment is rewritten identically, because units are remembered by
  their original offsets. A unit is sent whole in the segment that completes it (also when its
  first bytes came in an earlier segment: those were held back, see lab.devkit.ctrlstream), and a segment
  that holds only part of a unit does not carry it.

Offsets are stream offsets (0 = the first byte after the SYN); lab.devkit.ctrlstream converts sequence
numbers. Memory is bounded by max_units (the oldest units are folded into a base delta: only
positions older than every remembered unit lose precision, and those are long acknowledged).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    start: int        # original offsets [start, end)
    end: int
    out: bytes        # what is forwarded instead
    out_start: int    # where it lands in the forwarded stream

    @property
    def out_end(self) -> int:
        return self.out_start + len(self.out)

    @property
    def delta_after(self) -> int:
        return self.out_end - self.end


class SeqMap:
    """One direction: original stream offsets <-> forwarded stream offsets."""

    def __init__(self, max_units: int = 4096) -> None:
        self.units: list[Unit] = []
        self._ends: list[int] = []
        self._out_starts: list[int] = []
        self.base_delta = 0
        self.max_units = max_units

    @property
    def delta(self) -> int:
        """The shift of every position after the last unit."""
        return self.units[-1].delta_after if self.units else self.base_delta

    def add(self, start: int, end: int, out: bytes) -> Unit:
        """Remember that original [start, end) is forwarded as `out` (units come in stream order)."""
        if self.units and start < self.units[-1].end:
            raise ValueError(f"unit at {start} overlaps the previous one (ends {self.units[-1].end})")
        unit = Unit(start, end, bytes(out), start + self.delta)
        self.units.append(unit)
        self._ends.append(end)
        self._out_starts.append(unit.out_start)
        if len(self.units) > self.max_units:
            old = self.units.pop(0)
            self._ends.pop(0)
            self._out_starts.pop(0)
            self.base_delta = old.delta_after
        return unit

    def find(self, start: int) -> Unit | None:
        i = bisect_right(self._ends, start)
        if i < len(self.units) and self.units[i].start == start:
            return self.units[i]
        return None

    def _containing(self, pos: int) -> Unit | None:
        """The unit with start < pos < end, if any."""
        i = bisect_right(self._ends, pos)
        if i < len(self.units) and self.units[i].start < pos:
            return self.units[i]
        return None

    def to_out(self, pos: int) -> int:
        """Forwarded offset of an original position (a position inside a unit maps to its start)."""
        inside = self._containing(pos)
        if inside is not None:
            return inside.out_start
        i = bisect_right(self._ends, pos) - 1
        return pos + (self.units[i].delta_after if i >= 0 else self.base_delta)

    def to_orig(self, q: int) -> int:
        """Original offset of a forwarded position (an acknowledgement). Inside a unit it maps to
        the unit's start: a rewritten line counts as received only when all of it is."""
        i = bisect_right(self._out_starts, q) - 1
        if i < 0:
            return q - self.base_delta
        u = self.units[i]
        if q < u.out_end:
            return u.start
        return q - u.delta_after

    def segment(self, start: int, data: bytes, held_start: int | None = None) -> tuple[int, bytes]:
        """What to forward for the original segment [start, start+len(data)): (offset, payload).

        Bytes from held_start on are not sent yet (their line is incomplete). The result is a pure
        function of the units and the segment, so retransmissions come out identical.
        """
        end = start + len(data)
        lo, hi = start, end if held_start is None else max(start, min(end, held_start))
        first = self._containing(lo)
        if first is not None:
            if first.end <= hi:
                lo = first.start              # send the unit whole, from its beginning
            else:
                return first.out_start, b""   # only a part of a unit: nothing to send now
        last = self._containing(hi)
        if last is not None:
            hi = last.start                   # the unit is completed by a later segment
        if hi <= lo:
            return self.to_out(lo), b""
        i = bisect_right(self._ends, lo)
        pieces = []
        pos = lo
        while i < len(self.units) and self.units[i].start < hi:
            u = self.units[i]
            if u.start > pos:
                pieces.append(data[pos - start:u.start - start])
            pieces.append(u.out)
            pos = u.end
            i += 1
        if pos < hi:
            pieces.append(data[pos - start:hi - start])
        return self.to_out(lo), b"".join(pieces)

    def position(self, pos: int, held_start: int | None = None) -> int:
        """Forwarded offset for an empty segment (a pure ACK or FIN) at original `pos`."""
        if held_start is not None and pos > held_start:
            pos = held_start
        return self.to_out(pos)
