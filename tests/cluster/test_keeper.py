"""Lease keepers of several workers over one state store: an even share each, one leader, takeovers, fencing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest

from facmon.cluster.keeper import LeaseChanges, LeaseKeeper
from facmon.config.cluster import LEADER, ClusterConfig
from facmon.facility.errors import FencedError
from facmon.facility.state import StateStore
from tests.conftest import FakeClock

CONFIG = ClusterConfig(enabled=True, partitions=8, lease=timedelta(seconds=15))


def keepers(store: StateStore, clock: FakeClock, *names: str) -> list[LeaseKeeper]:
    return [LeaseKeeper(store, CONFIG, clock, worker=name) for name in names]


def settle(workers: Iterable[LeaseKeeper], clock: FakeClock, rounds: int = 3) -> None:
    """A few renewal rounds, five seconds apart (three within a lease), of every worker given."""
    workers = list(workers)
    for _ in range(rounds):
        for worker in workers:
            worker.step()
        clock.advance(seconds=5)


def owners(workers: Iterable[LeaseKeeper]) -> dict[int, str]:
    return {p: w.worker for w in workers for p in w.partitions()}


def test_three_workers_share_eight_partitions_evenly_with_one_leader(state_store: StateStore, clock: FakeClock) -> None:
    workers = keepers(state_store, clock, "a", "b", "c")
    settle(workers, clock)
    assert sorted(len(w.partitions()) for w in workers) == [2, 3, 3]
    assert sorted(owners(workers)) == list(range(8))  # each partition held, by exactly one
    assert sum(w.is_leader for w in workers) == 1
    held = {le.name: le.owner for le in state_store.leases()}
    assert held == {f"partition-{p}": o for p, o in owners(workers).items()} | {
        LEADER: next(w.worker for w in workers if w.is_leader)
    }


def test_a_new_worker_is_handed_its_share_and_a_stopped_one_hands_all_over(
    state_store: StateStore, clock: FakeClock
) -> None:
    a, b = keepers(state_store, clock, "a", "b")
    settle([a], clock)
    assert a.partitions() == set(range(8))
    settle([a, b], clock)
    assert (len(a.partitions()), len(b.partitions())) == (4, 4)
    assert a.handovers == 4

    a.release_all()  # an orderly stop
    settle([b], clock, rounds=1)
    assert b.partitions() == set(range(8))
    assert b.is_leader or not a.is_leader


def test_the_partitions_of_a_worker_that_died_are_taken_over_within_a_lease(
    state_store: StateStore, clock: FakeClock
) -> None:
    a, b, c = keepers(state_store, clock, "a", "b", "c")
    settle([a, b, c], clock)
    dead = set(a.partitions())
    died_at = clock.now()
    while dead - (b.partitions() | c.partitions()):  # a is killed: it steps no more
        settle([b, c], clock, rounds=1)
    assert clock.now() - died_at <= CONFIG.lease + timedelta(seconds=10)
    assert b.partitions() | c.partitions() == set(range(8))
    assert sorted(len(w.partitions()) for w in (b, c)) == [4, 4]


def test_a_worker_paused_past_its_lease_loses_its_partitions_and_cannot_write_for_them(
    state_store: StateStore, clock: FakeClock
) -> None:
    seen: list[LeaseChanges] = []
    a = LeaseKeeper(state_store, CONFIG, clock, worker="a", on_change=seen.append)
    (b,) = keepers(state_store, clock, "b")
    settle([a, b], clock)
    before = {f"partition-{p}": a.epoch(f"partition-{p}") for p in a.partitions()}
    seen.clear()

    for _ in range(5):  # a is stopped (SIGSTOP) for 25 s; b goes on
        settle([b], clock, rounds=1)
    assert b.partitions() == set(range(8))

    a.step()  # a resumes
    assert a.partitions() == set()
    assert set(seen[0].lost) - {LEADER} == set(before)
    for name, epoch in before.items():
        assert epoch is not None
        with pytest.raises(FencedError), state_store.begin() as tx:
            tx.fence(name, "a", epoch)
    settle([a, b], clock)
    assert (len(a.partitions()), len(b.partitions())) == (4, 4)


def test_a_lease_given_up_is_free_for_another_worker_at_once(state_store: StateStore, clock: FakeClock) -> None:
    a, b = keepers(state_store, clock, "a", "b")
    a.step()
    assert 3 in a.partitions()
    a.give_up("partition-3")  # a could not take the partition up (its store failed while restoring it)
    assert 3 not in a.partitions()
    with pytest.raises(FencedError):
        a.fence_for("partition-3")()
    b.step()  # within the lease a would have held it for
    assert 3 in b.partitions()
