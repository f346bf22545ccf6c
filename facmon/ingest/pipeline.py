"""The ingest pipeline: batches of messages decoded, made durable, handed to the rules, then acknowledged."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from facmon.facility.clock import Clock, epoch_ms
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Reading, Reject
from facmon.facility.state import StateStore
from facmon.ingest.decode import Decoder
from facmon.ingest.dedup import DuplicateFilter
from facmon.ingest.errors import SpoolError, TelemetryStoreError
from facmon.ingest.metrics import IngestMetrics
from facmon.ingest.presence import DevicePresence
from facmon.ingest.spool import Spool
from facmon.ingest.storage import TelemetryStore
from facmon.ingest.subscriber import Message

log = logging.getLogger(__name__)

DRAIN_CHUNK = 5000


class ReadingSink(Protocol):
    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        """Called with each durable batch, on the ingest thread."""


class IngestPipeline:
    """One thread drains the queue: decode → drop duplicates → store or spool → rejects → presence → sinks → ack.

    A message is acknowledged only once its readings are in the telemetry store or the spool and its reject is
    in the state store. While the telemetry store fails, batches go to the spool and are replayed in order once
    it is back; rules and presence go on meanwhile. When the spool is full or the state store fails, the batch
    is retried and nothing is acknowledged, so the broker keeps it.
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
        retry_delay: float = 1.0,
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
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_drain = 0.0
        self.duplicates = DuplicateFilter()
        self.sinks: list[ReadingSink] = []
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.last_error: str | None = None
        metrics.watch_spool(lambda: spool.depth, self._spool_age)

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

    def process(self, messages: Sequence[Message]) -> None:
        """Decode, make durable and hand on one batch; raise SpoolError or StateStoreError if it is not durable."""
        readings: list[Reading] = []
        rejects: list[Reject] = []
        decode = self._decoder.decode
        for message in messages:
            decoded = decode(message.topic, message.payload, message.received_ms)
            readings += decoded.readings
            rejects += decoded.rejects
        fresh = self.duplicates.fresh(readings)
        self._make_durable(fresh)
        if rejects:
            with self._state.begin() as tx:
                tx.add_rejects(rejects)
        gaps = self.duplicates.remember(fresh)
        now = self._clock.now()
        self._presence.observe(fresh, epoch_ms(now))
        for sink in self.sinks:
            try:
                sink.on_readings(fresh, now)
            except Exception:
                log.exception("%s failed on a batch of %d readings", type(sink).__name__, len(fresh))
        self._count(messages, fresh, len(readings) - len(fresh), rejects, gaps)
        for message in messages:
            self._acknowledge(message)

    def _make_durable(self, readings: list[Reading]) -> None:
        """Into the telemetry store, or the spool when the store fails or readings are already waiting there."""
        if not readings:
            return
        if self._spool.depth == 0:
            started = time.perf_counter()
            try:
                self._telemetry.write(readings)
                self._metrics.write_seconds.observe(time.perf_counter() - started)
                return
            except TelemetryStoreError as exc:
                self._metrics.store_failures.inc()
                self.last_error = str(exc)
                log.error("ingest: %s; keeping readings in the spool %s until it is back", exc, self._spool.path)
                self._next_drain = time.monotonic() + self._retry_delay
        # Behind readings already waiting: the store gets them in the order they came.
        self._spool.append(readings, self._now_ms())

    def _drain_spool(self) -> None:
        """Move one chunk from the spool into the telemetry store, when it is time to try."""
        if self._spool.depth == 0 or time.monotonic() < self._next_drain:
            return
        try:
            last_id, readings = self._spool.peek(DRAIN_CHUNK)
            started = time.perf_counter()
            self._telemetry.write(readings)
            self._metrics.write_seconds.observe(time.perf_counter() - started)
            self._spool.remove_through(last_id)
        except (TelemetryStoreError, SpoolError) as exc:
            self._metrics.store_failures.inc()
            self.last_error = str(exc)
            self._next_drain = time.monotonic() + self._retry_delay
            return
        if self._spool.depth == 0:
            log.info("ingest: the spool is empty; the telemetry store has every reading")
            self.last_error = None

    def _count(
        self, messages: Sequence[Message], fresh: list[Reading], duplicates: int, rejects: list[Reject], gaps: int
    ) -> None:
        m = self._metrics
        self.received += len(messages)
        self.accepted += len(fresh)
        m.messages.inc(len(messages))
        m.batch_size.observe(len(messages))
        if fresh:
            m.accepted.inc(len(fresh))
        if duplicates:
            m.duplicates.inc(duplicates)
        if gaps:
            m.seq_gaps.inc(gaps)
        for reject in rejects:
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
            self._process_until_durable(batch)

    def _process_until_durable(self, batch: list[Message]) -> None:
        while True:
            try:
                self.process(batch)
                if self._spool.depth == 0:
                    self.last_error = None
                return
            except (SpoolError, StateStoreError) as exc:
                self.last_error = str(exc)
                log.error(
                    "ingest: %s; not acknowledging %d messages, retrying in %.0f s", exc, len(batch), self._retry_delay
                )
            except Exception as exc:  # a store failing in a way we did not foresee must not kill ingest
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ingest: unexpected failure on a batch of %d; retrying", len(batch))
            if self._stopping.wait(self._retry_delay):
                return
            self._next_drain = 0.0
            self._drain_spool()  # room in the spool, or the store back, lets the batch through

    def _now_ms(self) -> int:
        return epoch_ms(self._clock.now())

    def _spool_age(self) -> float:
        oldest = self._spool.oldest_ms
        return 0.0 if oldest is None else max(0.0, (self._now_ms() - oldest) / 1000)


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
