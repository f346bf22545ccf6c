"""Duplicates and order: a resent reading is handled once, and gaps in a device's `seq` are counted.

A reading is the same as another when its device, `ts` and `seq` are the same. The stores already keep a
(device, ts) once; this filter is what keeps a resend from reaching the rules a second time and counts it. It
remembers the last `window` readings of each device, in memory: a resend older than that, or one that arrives
after a restart, is stored again (harmlessly, as the same values) and counted as new.

`seq` gaps: when a device's `seq` jumps from 41 to 45, three readings are missing. A `seq` below the last one
is either a late reading (its `ts` is older too: a backlog, not a gap) or a counter that restarted (a device
reboot: its `ts` is newer), after which counting goes on from the new value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from facmon.facility.model import Reading


@dataclass(slots=True)
class _Seen:
    keys: set[tuple[int, int | None]] = field(default_factory=set)
    order: deque[tuple[int, int | None]] = field(default_factory=deque)
    last_seq: int | None = None
    last_seq_ts: int = 0
    gaps: int = 0
    late: int = 0


class DuplicateFilter:
    def __init__(self, window: int = 1024) -> None:
        self._window = window
        self._devices: dict[str, _Seen] = {}

    def fresh(self, readings: Sequence[Reading]) -> list[Reading]:
        """The readings not seen before, nor earlier in the same batch; nothing is remembered yet."""
        out: list[Reading] = []
        batch: set[tuple[str, int, int | None]] = set()
        devices = self._devices
        for r in readings:
            key = (r.device_id, r.ts_ms, r.seq)
            seen = devices.get(r.device_id)
            if key in batch or (seen is not None and (r.ts_ms, r.seq) in seen.keys):
                continue
            batch.add(key)
            out.append(r)
        return out

    def remember(self, readings: Sequence[Reading]) -> int:
        """Remember readings once they are durable; returns how many `seq` values went missing with them."""
        new_gaps = 0
        window = self._window
        for r in readings:
            seen = self._devices.get(r.device_id)
            if seen is None:
                seen = self._devices[r.device_id] = _Seen()
            key = (r.ts_ms, r.seq)
            seen.keys.add(key)
            seen.order.append(key)
            if len(seen.order) > window:
                seen.keys.discard(seen.order.popleft())
            seq = r.seq
            if seq is None:
                continue
            last = seen.last_seq
            if last is None or seq > last:
                if last is not None and seq > last + 1:
                    seen.gaps += seq - last - 1
                    new_gaps += seq - last - 1
                seen.last_seq, seen.last_seq_ts = seq, r.ts_ms
            elif seq < last:
                if r.ts_ms < seen.last_seq_ts:
                    seen.late += 1
                else:
                    seen.last_seq, seen.last_seq_ts = seq, r.ts_ms  # the device's counter restarted
        return new_gaps

    def gaps(self, device_id: str) -> int:
        seen = self._devices.get(device_id)
        return seen.gaps if seen is not None else 0

    def late(self, device_id: str) -> int:
        seen = self._devices.get(device_id)
        return seen.late if seen is not None else 0
