"""The ingest pipeline: batches of messages decoded, made durable, handed to the rules, then acknowledged."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from facmon.facility.clock import Clock, epoch_ms
from facmon.facility.errors import FencedError, StateStoreError
from facmon.facility.model import Reading, Reject
from facmon.facility.state import Fence, StateStore, fenced
from facmon.ingest.decode import Decoder
from facmon.ingest.dedup import DuplicateFilter
from facmon.ingest.errors import ReadingsRefusedError, SinkBehindError, SpoolError, TelemetryStoreError
from facmon.ingest.metrics import IngestMetrics
from facmon.ingest.presence import DevicePresence
from facmon.ingest.spool import Spool
from facmon.ingest.storage import TelemetryStore
from facmon.ingest.subscriber import Message

log = logging.getLogger(__name__)

DRAIN_CHUNK = 5000
RETRY_DELAY_S = 1.0


class ReadingSink(Protocol):
    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        """Called with each durable batch, on the ingest thread.

        Raise SinkBehindError(done) when only the first `done` readings were taken (the state store is down): the
        rest are handed over again until taken, and the batch is not acknowledged meanwhile. Called with no
        readings, a sink finishes what it could not (a save that failed). Any other exception is the sink's
        own fault, logged and not retried: a reading that trips a bug must not stop ingest.
        """


class RejectGate(Protocol):
    def admit(self, rejects: list[Reject], now_ms: int) -> list[Reject]:
        """The rejects to keep; the rest are counted, not stored (a gateway flooding bad input)."""


@dataclass(slots=True)
class _Batch:
    """One batch on its way through the stages; a retry resumes at the stage that failed, never redoes one.

    Redoing would spool readings twice, count duplicates of themselves, or hand the rules readings they judged.
    """

    messages: Sequence[Message]
    readings: list[Reading]
    rejects: list[Reject]
    duplicates: int
    durable: bool = False
    kept: list[Reject] | None = None  # the rejects the gate let through, until they are stored
    gaps: int | None = None
    todo: dict[int, Sequence[Reading]] = field(default_factory=dict)  # sink index -> readings not yet taken


class IngestPipeline:
    """One thread drains the queue: decode → drop duplicates → store or spool → rejects → presence → sinks → ack.

    A message is acknowledged only once its readings are in the telemetry store or the spool, its reject is in
    the state store and the rules have committed what its readings raised. While the telemetry store fails,
    batches go to the spool and are replayed in order once it is back; rules and presence go on meanwhile. When
    the spool is full or the state store fails, the batch is retried from the stage that failed and nothing is
    acknowledged, so the broker keeps it and everything behind it, in order.

    A batch that the telemetry store refuses for what it holds (or fails on in a way nobody foresaw) is halved
    until each refused reading stands alone; those become rejects with the store's reason and the rest are
    stored: one bad reading never holds back the readings behind it.
    """

    def __init__(
        self,
        decoder: Decoder,
        telemetry: TelemetryStore,
        state: StateStore,
        presence: DevicePresence,
        clock: Clock,
        *,
        spool: Spool,
        metrics: IngestMetrics,
        acknowledge: Callable[[Message], None],
        batch_size: int = 1000,
        retry_delay: float = RETRY_DELAY_S,
        reject_gate: RejectGate | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        fences: Callable[[int], Fence] | None = None,
    ) -> None:
        self._decoder = decoder
        self._telemetry = telemetry
        self._state = state
        self._presence = presence
        self._clock = clock
        self._spool = spool
        self._metrics = metrics
        self._acknowledge = acknowledge
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._reject_gate = reject_gate
        self._monotonic = monotonic
        self._fences = fences
        self._abandoned: set[int] = set()
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_drain = 0.0
        self._stalled_since: float | None = None
        self.duplicates = DuplicateFilter()
        self.sinks: list[ReadingSink] = []
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.last_error: str | None = None
        metrics.watch_spool(lambda: spool.depth, self._spool_age)
        metrics.watch_stall(self.stalled_for)

    @property
    def spool(self) -> Spool:
        return self._spool

    def submit(self, message: Message) -> None:
        """Queue a message; safe from any thread."""
        self._queue.put(message)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="facmon-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand and stop; messages still queued stay unacknowledged for the broker to resend."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def abandon(self, partition: int) -> None:
        """Give up a partition's batch in hand and its messages queued, unacknowledged, until `resume(partition)`:
        this worker no longer acts for it (its lease went to another worker, to whom the broker sends them
        again)."""
        self._abandoned = self._abandoned | {partition}

    def resume(self, partition: int) -> None:
        """Take a partition's messages again: this worker holds its lease once more."""
        self._abandoned = self._abandoned - {partition}

    def stalled_for(self) -> float:
        """Seconds the batch in hand has been waiting for a store to take it; 0 while ingest flows."""
        since = self._stalled_since
        return 0.0 if since is None else max(0.0, self._monotonic() - since)

    def process(self, messages: Sequence[Message]) -> None:
        """Decode, make durable, judge and acknowledge one batch in one attempt.

        Raises SpoolError, StateStoreError or SinkBehindError when the batch is not through; the ingest thread then
        retries it with `_advance`, from where it stopped.
        """
        self._advance(self._decode(messages))

    def _decode(self, messages: Sequence[Message]) -> _Batch:
        readings: list[Reading] = []
        rejects: list[Reject] = []
        decode = self._decoder.decode
        for message in messages:
            decoded = decode(message.topic, message.payload, message.received_ms)
            readings += decoded.readings
            rejects += decoded.rejects
        fresh = self.duplicates.fresh(readings)
        return _Batch(messages, fresh, rejects, len(readings) - len(fresh))

    def _advance(self, batch: _Batch) -> None:
        if not batch.durable:
            refused = self._make_durable(batch.readings)
            if refused:
                out = {id(reading) for reading, _ in refused}
                batch.readings = [r for r in batch.readings if id(r) not in out]
                batch.rejects += [self._refused(reading, reason) for reading, reason in refused]
            batch.durable = True
            batch.todo = dict.fromkeys(range(len(self.sinks)), batch.readings)
        if batch.kept is None:
            batch.kept = self._admit(batch.rejects)
        if batch.kept:
            self._store_rejects(batch.kept)
            batch.kept = []
        now = self._clock.now()
        if batch.gaps is None:
            batch.gaps = self.duplicates.remember(batch.readings)
            self._presence.observe(batch.readings, epoch_ms(now))
        for index, sink in enumerate(self.sinks):
            todo = batch.todo.get(index)
            if todo is None:
                continue
            try:
                sink.on_readings(todo, now)
            except SinkBehindError as exc:
                batch.todo[index] = todo[exc.done :]
                raise
            except FencedError:
                raise
            except Exception:
                log.exception("%s failed on a batch of %d readings", type(sink).__name__, len(todo))
            del batch.todo[index]
        self._count(batch)
        for message in batch.messages:
            self._acknowledge(message)

    def _admit(self, rejects: list[Reject]) -> list[Reject]:
        """The rejects to store: those the gate lets through (it counts the rest)."""
        if self._reject_gate is None or not rejects:
            return rejects
        return self._reject_gate.admit(rejects, self._now_ms())

    def _store_rejects(self, rejects: list[Reject]) -> None:
        if rejects:
            with self._state.begin() as tx:
                tx.add_rejects(rejects)

    def _refused(self, reading: Reading, reason: str) -> Reject:
        return self._decoder.reject_reading(reading, f"the telemetry store refused the reading: {reason}")

    def _make_durable(self, readings: list[Reading]) -> list[tuple[Reading, str]]:
        """Into the telemetry store, or the spool when the store fails or readings are already waiting there.

        Returns the readings the store refused, with its reason: they are neither stored nor spooled.
        """
        if not readings:
            return []
        if self._spool.depth == 0:
            try:
                return self._write(readings)
            except TelemetryStoreError as exc:
                self._metrics.store_failures.inc()
                self.last_error = str(exc)
                log.error("ingest: %s; keeping readings in the spool %s until it is back", exc, self._spool.path)
                self._next_drain = self._monotonic() + self._retry_delay
        # Behind readings already waiting: the store gets them in the order they came.
        self._spool.append(readings, self._now_ms())
        return []

    def _write(self, readings: Sequence[Reading]) -> list[tuple[Reading, str]]:
        """Write, halving a batch the store refuses until each refused reading stands alone; those are returned.

        Raises TelemetryStoreError when the store is down, even halfway: what was written is written again
        later, which the stores' idempotent writes allow.
        """
        started = self._monotonic()
        try:
            self._telemetry.write(readings)
            self._metrics.write_seconds.observe(self._monotonic() - started)
            return []
        except TelemetryStoreError:
            raise
        except ReadingsRefusedError as exc:
            reason = str(exc)
            if len(readings) == 1:
                return [(readings[0], reason)]
        except Exception as exc:  # the store failed in a way nobody foresaw: find the reading, if it is one
            reason = f"{type(exc).__name__}: {exc}"
            if len(readings) == 1:
                log.exception("ingest: the telemetry store failed on one reading of %s", readings[0].device_id)
                # Only while the store answers is the reading the cause; otherwise it is an outage.
                self._telemetry.ping()
                return [(readings[0], reason)]
        self._metrics.bisections.inc()
        middle = len(readings) // 2
        return self._write(readings[:middle]) + self._write(readings[middle:])

    def _drain_spool(self) -> None:
        """Move one chunk from the spool into the telemetry store, when it is time to try."""
        if self._spool.depth == 0 or self._monotonic() < self._next_drain:
            return
        try:
            last_id, readings = self._spool.peek(DRAIN_CHUNK)
            refused = self._write(readings)
            if refused:
                self._store_rejects(self._admit([self._refused(reading, reason) for reading, reason in refused]))
            self._spool.remove_through(last_id)
        except (TelemetryStoreError, SpoolError, StateStoreError) as exc:
            self._drain_failed(str(exc))
            return
        except Exception as exc:  # nothing unforeseen may stop the thread that drains the spool
            log.exception("ingest: draining the spool failed")
            self._drain_failed(f"{type(exc).__name__}: {exc}")
            return
        if self._spool.depth == 0:
            log.info("ingest: the spool is empty; the telemetry store has every reading")
            self.last_error = None

    def _drain_failed(self, error: str) -> None:
        self._metrics.store_failures.inc()
        self.last_error = error
        self._next_drain = self._monotonic() + self._retry_delay

    def _count(self, batch: _Batch) -> None:
        m = self._metrics
        messages, fresh = batch.messages, batch.readings
        self.received += len(messages)
        self.accepted += len(fresh)
        m.messages.inc(len(messages))
        m.batch_size.observe(len(messages))
        if fresh:
            m.accepted.inc(len(fresh))
        if batch.duplicates:
            m.duplicates.inc(batch.duplicates)
        if batch.gaps:
            m.seq_gaps.inc(batch.gaps)
        for reject in batch.rejects:
            reason = _reason_class(reject.reason)
            self.rejected[reason] += 1
            m.rejected.labels(reason).inc()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._drain_spool()
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._fences is None:
                self._process_until_through(batch)
                continue
            # In a cluster: each partition's messages on their own, in their order, under its lease's fence.
            for partition, messages in _by_partition(batch, self._abandoned).items():
                with fenced(None if partition is None else self._fences(partition)):
                    self._process_until_through(messages, partition)

    def _process_until_through(self, messages: list[Message], partition: int | None = None) -> None:
        batch: _Batch | None = None
        while True:
            try:
                if batch is None:
                    batch = self._decode(messages)
                self._advance(batch)
                self._stalled_since = None
                if self._spool.depth == 0:
                    self.last_error = None
                return
            except FencedError as exc:
                if partition is None:
                    raise  # a fence without a partition is a caller's mistake, not the broker's messages' fault
                # The partition's lease is another worker's now, at a later epoch: this worker will not get it
                # through, and the batch must not hold up the other partitions' while its keeper catches up.
                log.warning("ingest: partition %d: %s; its messages are given up, unacknowledged", partition, exc)
                self.abandon(partition)
                self._stalled_since = None
                return
            except (SpoolError, StateStoreError, SinkBehindError) as exc:
                self.last_error = str(exc)
                log.error(
                    "ingest: %s; not acknowledging %d messages, retrying in %.0f s",
                    exc,
                    len(messages),
                    self._retry_delay,
                )
            except Exception as exc:  # a failure nobody foresaw must not kill ingest; the batch is tried again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ingest: unexpected failure on a batch of %d; retrying", len(messages))
            if self._stalled_since is None:
                self._stalled_since = self._monotonic()
            if self._stopping.wait(self._retry_delay) or partition in self._abandoned:
                return
            self._next_drain = 0.0
            self._drain_spool()  # room in the spool, or the store back, lets the batch through

    def _now_ms(self) -> int:
        return epoch_ms(self._clock.now())

    def _spool_age(self) -> float:
        oldest = self._spool.oldest_ms
        return 0.0 if oldest is None else max(0.0, (self._now_ms() - oldest) / 1000)


def _by_partition(messages: list[Message], abandoned: set[int]) -> dict[int | None, list[Message]]:
    """The messages of each partition, in the order they came; those of abandoned partitions are left out."""
    groups: dict[int | None, list[Message]] = {}
    for message in messages:
        if message.partition not in abandoned:
            groups.setdefault(message.partition, []).append(message)
    return groups


def _reason_class(reason: str) -> str:
    """Group reject reasons for counting: `[3] pressure_bar must be a number …` → `pressure_bar must be`.

    Words from the message (quoted names, numbers) end the class: a metric label must not take every value a
    gateway can send, such as each unknown device id.
    """
    words: list[str] = []
    for word in reason.split("] ", 1)[-1].split()[:3]:
        if any(c in word for c in "'\"0123456789[{"):
            break
        words.append(word.rstrip(":,"))
    return " ".join(words) or "other"
