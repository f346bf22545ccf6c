"""The spool: bounded, durable across a restart, drained oldest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from facmon.facility.model import Reading
from facmon.ingest.errors import SpoolError
from facmon.ingest.spool import Spool


def readings(start: int, n: int) -> list[Reading]:
    return [Reading("lift-A1", start + i, {"state": "idle", "floor": i, "entrapment": False}, i) for i in range(n)]


def test_readings_leave_in_the_order_they_came_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 100)
    spool.append(readings(1000, 3), now_ms=50)
    spool.append(readings(2000, 2), now_ms=60)
    assert (spool.depth, spool.oldest_ms) == (5, 50)
    spool.close()

    again = Spool(tmp_path / "spool.db", 100)
    assert (again.depth, again.oldest_ms) == (5, 50)
    last_id, first = again.peek(4)
    assert first == readings(1000, 3) + readings(2000, 1)
    again.remove_through(last_id)
    assert (again.depth, again.oldest_ms) == (1, 60)
    last_id, rest = again.peek(4)
    assert rest == [Reading("lift-A1", 2001, {"state": "idle", "floor": 1, "entrapment": False}, 1)]
    again.remove_through(last_id)
    assert (again.depth, again.oldest_ms) == (0, None)
    assert again.peek(4) == (0, [])
    again.close()


def test_a_full_spool_refuses_the_whole_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 5)
    spool.append(readings(0, 4), now_ms=1)
    with pytest.raises(SpoolError, match="full"):
        spool.append(readings(10, 2), now_ms=2)
    assert spool.depth == 4
    spool.append(readings(10, 1), now_ms=3)
    assert spool.depth == 5
    spool.close()


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="cannot open the spool"):
        Spool(tmp_path / "file" / "spool.db", 5)
