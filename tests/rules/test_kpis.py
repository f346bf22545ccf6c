"""Alarm-system KPIs from plain events with explicit times, and the store's reads that feed them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facmon.facility.model import Alarm, AlarmEvent, AlarmState, AlarmTransition, Severity
from facmon.facility.state import StateStore
from facmon.rules.kpis import TRANSITIONS, compute_kpis

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOUR = END - timedelta(hours=1)


def event(
    at: datetime,
    kind: str = "raised",
    rule: str = "smoke-alarm",
    device: str = "smoke-A-01",
    severity: Severity = Severity.CRITICAL,
    site: str = "riverside",
) -> AlarmTransition:
    return AlarmTransition(0, 0, site, rule, device, kind, severity, at)


def alarm(raised_at: datetime, state: AlarmState = AlarmState.ACTIVE_UNACKED, site: str = "riverside") -> Alarm:
    return Alarm(7, "pump-pressure-low", "pump-1", site, Severity.MAJOR, state, raised_at, 2.1, "low")


def before(**delta: float) -> datetime:
    return END - timedelta(**delta)


@pytest.mark.parametrize(
    ("times", "counts"),
    [
        pytest.param([], [0] * 6, id="none"),
        pytest.param([END], [0, 0, 0, 0, 0, 1], id="at the end: the newest bucket"),
        pytest.param([before(minutes=10)], [0, 0, 0, 0, 1, 0], id="on an edge: the older bucket"),
        pytest.param([before(minutes=10) + timedelta(microseconds=1)], [0] * 5 + [1], id="just after an edge"),
        pytest.param([HOUR], [0] * 6, id="at the window's start: outside"),
        pytest.param([HOUR + timedelta(seconds=1)], [1, 0, 0, 0, 0, 0], id="just after the start"),
        pytest.param([END + timedelta(seconds=1)], [0] * 6, id="after the end: outside"),
        pytest.param([before(minutes=m) for m in (1, 2, 3, 25, 59)], [1, 0, 0, 1, 0, 3], id="several"),
    ],
)
def test_alarm_rate_buckets_are_aligned_to_the_window_end(times: list[datetime], counts: list[int]) -> None:
    rate = compute_kpis([event(t) for t in times], [], start=HOUR, end=END).rate
    assert [b.count for b in rate.buckets] == counts
    assert [b.start for b in rate.buckets] == [HOUR + timedelta(minutes=10 * i) for i in range(6)]
    assert rate.buckets[-1].end == END
    assert rate.max_per_10min == max(counts)
    assert rate.average_per_10min == pytest.approx(sum(counts) / 6)


def test_a_window_that_is_not_whole_buckets_cuts_the_oldest_short() -> None:
    start = before(minutes=25)
    rate = compute_kpis([event(before(minutes=24)), event(before(minutes=5))], [], start=start, end=END).rate
    assert [(b.start, b.end, b.count) for b in rate.buckets] == [
        (start, before(minutes=20), 1),
        (before(minutes=20), before(minutes=10), 0),
        (before(minutes=10), END, 1),
    ]
    assert rate.average_per_10min == pytest.approx(2 / 2.5)


@pytest.mark.parametrize(
    ("kinds", "counts"),
    [
        pytest.param(["raised", "reactivated"], 2, id="raised and reactivated are annunciations"),
        pytest.param(["returned", "cleared", "acknowledged", "severity_changed", "shelved"], 0, id="others are not"),
    ],
)
def test_only_annunciations_count_towards_the_rate(kinds: list[str], counts: int) -> None:
    events = [event(before(minutes=1 + i), kind=k) for i, k in enumerate(kinds)]
    kpis = compute_kpis(events, [], start=HOUR, end=END)
    assert sum(b.count for b in kpis.rate.buckets) == counts
    assert sum(kpis.priority_mix.values()) == counts


@pytest.mark.parametrize(
    ("offsets", "kinds", "chattering"),
    [
        pytest.param([0, 30, 60], ["raised", "returned", "reactivated"], 3, id="3 in exactly 60 s"),
        pytest.param([0, 30, 61], ["raised", "returned", "reactivated"], None, id="3 in 61 s"),
        pytest.param([0, 20], ["raised", "returned"], None, id="2 only"),
        pytest.param([0, 10, 20, 30, 40], ["raised", "returned", "reactivated", "returned", "reactivated"], 5, id="5"),
        pytest.param([0, 59, 100, 118], ["raised", "returned", "reactivated", "returned"], 3, id="most in any 60 s"),
        pytest.param([0, 10, 20], ["raised", "acknowledged", "cleared"], None, id="acks are not transitions"),
        pytest.param([0, 10, 20], ["raised", "returned_latched", "reactivated"], 3, id="a latched alarm returning"),
        pytest.param([0, 10, 20], ["raised", "cleared", "raised"], 3, id="a new alarm of the same rule and device"),
    ],
)
def test_chattering_is_three_transitions_within_60_s(
    offsets: list[int], kinds: list[str], chattering: int | None
) -> None:
    start = before(minutes=30)
    events = [event(start + timedelta(seconds=s), kind=k) for s, k in zip(offsets, kinds, strict=True)]
    events.append(event(start + timedelta(seconds=5), device="smoke-A-02"))  # another device: not counted with it
    found = compute_kpis(events, [], start=HOUR, end=END).chattering
    assert [(c.rule, c.device_id, c.transitions) for c in found] == (
        [("smoke-alarm", "smoke-A-01", chattering)] if chattering else []
    )


def test_chattering_alarms_are_listed_most_transitions_first() -> None:
    start = before(minutes=30)
    events = [event(start + timedelta(seconds=s), device="smoke-A-02") for s in (0, 1, 2)]
    events += [event(start + timedelta(seconds=s), device="smoke-A-03") for s in (0, 1, 2, 3)]
    events += [event(start + timedelta(seconds=s), rule="smoke-battery-low", device="smoke-A-02") for s in (0, 1, 2)]
    assert [(c.rule, c.device_id, c.transitions) for c in compute_kpis(events, [], start=HOUR, end=END).chattering] == [
        ("smoke-alarm", "smoke-A-03", 4),
        ("smoke-alarm", "smoke-A-02", 3),
        ("smoke-battery-low", "smoke-A-02", 3),
    ]


@pytest.mark.parametrize(
    ("raised_at", "state", "stale"),
    [
        pytest.param(before(hours=24), AlarmState.ACTIVE_UNACKED, False, id="exactly 24 h"),
        pytest.param(before(hours=24, seconds=1), AlarmState.ACTIVE_UNACKED, True, id="24 h and 1 s"),
        pytest.param(before(days=3), AlarmState.ACTIVE_ACKED, True, id="acknowledged but active"),
        pytest.param(before(days=3), AlarmState.RETURNED_UNACKED, True, id="returned, never acknowledged"),
        pytest.param(before(days=3), AlarmState.CLEARED, False, id="cleared"),
    ],
)
def test_stale_is_active_more_than_24_h(raised_at: datetime, state: AlarmState, stale: bool) -> None:
    found = compute_kpis([], [alarm(raised_at, state)], start=HOUR, end=END).stale
    assert [(s.alarm_id, s.raised_at, s.active_for) for s in found] == (
        [(7, raised_at, END - raised_at)] if stale else []
    )


def test_stale_alarms_oldest_first_and_only_of_the_site() -> None:
    alarms = [alarm(before(days=2)), alarm(before(days=5)), alarm(before(days=9), site="hillside")]
    found = compute_kpis([], alarms, start=HOUR, end=END, site="riverside").stale
    assert [s.raised_at for s in found] == [before(days=5), before(days=2)]


def test_top_10_by_annunciations_ties_by_rule_then_device() -> None:
    events = []
    for n in range(12):  # smoke-A-00 once … smoke-A-11 twelve times
        events += [event(before(minutes=1), device=f"smoke-A-{n:02d}")] * (n + 1)
    events += [event(before(minutes=2), kind="returned", device="smoke-A-00")] * 50  # not annunciations
    events += [event(before(minutes=2), rule="a-rule", device="smoke-A-05")] * 6  # ties with smoke-A-05
    top = compute_kpis(events, [], start=HOUR, end=END).top
    assert [(t.rule, t.device_id, t.count) for t in top] == [
        ("smoke-alarm", "smoke-A-11", 12),
        ("smoke-alarm", "smoke-A-10", 11),
        ("smoke-alarm", "smoke-A-09", 10),
        ("smoke-alarm", "smoke-A-08", 9),
        ("smoke-alarm", "smoke-A-07", 8),
        ("smoke-alarm", "smoke-A-06", 7),
        ("a-rule", "smoke-A-05", 6),
        ("smoke-alarm", "smoke-A-05", 6),
        ("smoke-alarm", "smoke-A-04", 5),
        ("smoke-alarm", "smoke-A-03", 4),
    ]


@pytest.mark.parametrize(
    ("severities", "mix"),
    [
        pytest.param([], {"critical": 0, "major": 0, "minor": 0, "warning": 0}, id="none: all zero"),
        pytest.param(
            [Severity.MINOR, Severity.CRITICAL, Severity.MINOR],
            {"critical": 1, "major": 0, "minor": 2, "warning": 0},
            id="missing severities are zero",
        ),
    ],
)
def test_priority_mix_names_every_severity(severities: list[Severity], mix: dict[str, int]) -> None:
    events = [event(before(minutes=1), severity=s) for s in severities]
    assert compute_kpis(events, [], start=HOUR, end=END).priority_mix == mix


def test_a_site_counts_only_its_own_alarms() -> None:
    events = [event(before(minutes=1)), event(before(minutes=1), site="hillside", severity=Severity.WARNING)]
    riverside = compute_kpis(events, [], start=HOUR, end=END, site="riverside")
    everywhere = compute_kpis(events, [], start=HOUR, end=END)
    assert (riverside.rate.max_per_10min, riverside.priority_mix[Severity.WARNING]) == (1, 0)
    assert (everywhere.rate.max_per_10min, everywhere.priority_mix[Severity.WARNING]) == (2, 1)


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        compute_kpis([], [], start=END, end=END)


def test_the_store_reads_events_with_their_alarm_and_stale_candidates(state_store: StateStore) -> None:
    """On SQLite and PostgreSQL: the window is open at its start and closed at its end, and a site filters."""
    with state_store.begin() as tx:
        old = tx.insert_alarm(alarm(before(days=2)))
        tx.add_alarm_event(AlarmEvent(old.id, before(days=2), "raised", old.state, old.severity))
        fresh = tx.insert_alarm(alarm(before(minutes=30), site="hillside"))
        for at, kind in [(HOUR, "raised"), (before(minutes=30), "returned"), (END, "reactivated")]:
            tx.add_alarm_event(AlarmEvent(fresh.id, at, kind, fresh.state, Severity.MINOR))
        tx.add_alarm_event(AlarmEvent(fresh.id, before(minutes=20), "acknowledged", fresh.state, Severity.MINOR))

    found = state_store.alarm_transitions(HOUR, END, TRANSITIONS)
    assert [(t.alarm_id, t.site, t.rule, t.device_id, t.kind, t.severity, t.at) for t in found] == [
        (fresh.id, "hillside", "pump-pressure-low", "pump-1", "returned", Severity.MINOR, before(minutes=30)),
        (fresh.id, "hillside", "pump-pressure-low", "pump-1", "reactivated", Severity.MINOR, END),
    ]
    assert state_store.alarm_transitions(HOUR, END, TRANSITIONS, site="riverside") == []
    assert [a.id for a in state_store.active_alarms_raised_before(before(hours=24))] == [old.id]
    assert state_store.active_alarms_raised_before(before(hours=24), site="hillside") == []
