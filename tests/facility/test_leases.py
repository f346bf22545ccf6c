"""Leases in the state store: claimed at a new epoch, renewed while held, lost when they lapse, and fenced."""

from __future__ import annotations

from datetime import timedelta

import pytest

from facmon.facility.errors import FencedError
from facmon.facility.state import SharedPresence, StateStore
from tests.conftest import FakeClock

TTL = timedelta(seconds=15)


def test_a_free_lease_is_claimed_at_the_first_epoch_and_a_held_one_is_not(
    state_store: StateStore, clock: FakeClock
) -> None:
    with state_store.begin() as tx:
        lease = tx.claim_lease("partition-3", "a", clock.now(), TTL)
        assert tx.claim_lease("partition-3", "b", clock.now(), TTL) is None
    assert lease is not None
    assert (lease.owner, lease.epoch, lease.expires_at) == ("a", 1, clock.now() + TTL)
    assert lease.held_by("a", clock.now())
    assert [(le.name, le.owner, le.epoch) for le in state_store.leases()] == [("partition-3", "a", 1)]


def test_a_renewed_lease_stays_and_a_lapsed_one_goes_to_the_next_claim_at_the_next_epoch(
    state_store: StateStore, clock: FakeClock
) -> None:
    with state_store.begin() as tx:
        first = tx.claim_lease("leader", "a", clock.now(), TTL)
    assert first is not None
    clock.advance(seconds=10)
    with state_store.begin() as tx:
        renewed = tx.renew_lease(first, clock.now(), TTL)
        assert tx.claim_lease("leader", "b", clock.now(), TTL) is None
    assert renewed is not None and renewed.expires_at == clock.now() + TTL

    clock.advance(seconds=16)  # a misses its renewals: paused, or cut off from the database
    with state_store.begin() as tx:
        taken = tx.claim_lease("leader", "b", clock.now(), TTL)
    assert taken is not None and (taken.owner, taken.epoch) == ("b", 2)
    with state_store.begin() as tx:
        assert tx.renew_lease(renewed, clock.now(), TTL) is None
        assert not tx.release_lease(renewed)


def test_a_write_on_an_epoch_no_longer_held_is_refused(state_store: StateStore, clock: FakeClock) -> None:
    with state_store.begin() as tx:
        old = tx.claim_lease("partition-0", "a", clock.now(), TTL)
    assert old is not None
    with state_store.begin() as tx:
        tx.fence("partition-0", "a", old.epoch)  # still held: goes through
    clock.advance(seconds=20)
    with state_store.begin() as tx:
        new = tx.claim_lease("partition-0", "b", clock.now(), TTL)
    assert new is not None

    with pytest.raises(FencedError, match="partition-0 held at epoch 1 is at epoch 2"), state_store.begin() as tx:
        tx.fence("partition-0", "a", old.epoch)
    with pytest.raises(FencedError), state_store.begin() as tx:
        tx.fence("partition-7", "a", 1)  # never claimed


def test_a_released_lease_is_claimed_at_once_and_its_old_epoch_fenced(
    state_store: StateStore, clock: FakeClock
) -> None:
    with state_store.begin() as tx:
        lease = tx.claim_lease("partition-1", "a", clock.now(), TTL)
    assert lease is not None
    with state_store.begin() as tx:
        assert tx.release_lease(lease)
    with pytest.raises(FencedError, match="is released"), state_store.begin() as tx:
        tx.fence("partition-1", "a", lease.epoch)
    with state_store.begin() as tx:
        again = tx.claim_lease("partition-1", "b", clock.now(), TTL)
    assert again is not None and again.epoch == 2


def test_workers_are_heard_of_and_forgotten(state_store: StateStore, clock: FakeClock) -> None:
    start = clock.now()
    with state_store.begin() as tx:
        tx.heartbeat("a", clock.now())
        tx.heartbeat("b", clock.now())
    clock.advance(seconds=30)
    with state_store.begin() as tx:
        tx.heartbeat("a", clock.now())
    live = state_store.cluster_workers(seen_since=clock.now() - TTL)
    assert [(w.name, w.started_at, w.seen_at) for w in live] == [("a", start, clock.now())]
    with state_store.begin() as tx:
        assert tx.forget_workers(clock.now() - TTL) == 1
    assert [w.name for w in state_store.cluster_workers()] == ["a"]


def test_shared_presence_keeps_the_newest_of_each_device(state_store: StateStore) -> None:
    with state_store.begin() as tx:
        tx.share_presence(
            [
                SharedPresence("pump-1", 2_000, 1_900, {"pressure_bar": 3.9, "pump_running": True}),
                SharedPresence("lift-A1", 1_000, 1_000, {"state": "normal"}),
            ]
        )
    with state_store.begin() as tx:
        # A worker resumed from a pause shares what it saw before; the newer row stays.
        tx.share_presence([SharedPresence("pump-1", 1_500, 1_400, {"pressure_bar": 1.0})])
        tx.share_presence([SharedPresence("lift-A1", 3_000, 2_900, {"state": "fault"})])
    rows = {row.device_id: row for row in state_store.shared_presence()}
    assert rows["pump-1"] == SharedPresence("pump-1", 2_000, 1_900, {"pressure_bar": 3.9, "pump_running": True})
    assert rows["lift-A1"] == SharedPresence("lift-A1", 3_000, 2_900, {"state": "fault"})
