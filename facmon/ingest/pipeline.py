"""The ingest pipeline: batches of messages decoded, stored, handed to the rules, then acknowledged."""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from facmon.facility.clock import Clock
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Reading, Reject
from facmon.facility.state import StateStore
from facmon.ingest.decode import Decoder
from facmon.ingest.errors import TelemetryStoreError
from facmon.ingest.presence import DevicePresence
from facmon.ingest.storage import TelemetryStore
from facmon.ingest.subscriber import Message

log = logging.getLogger(__name__)


class ReadingSink(Protocol):
    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        """Called with each stored batch, on the ingest thread."""


class IngestPipeline:
    """One thread drains the queue: decode → store (telemetry and rejects) → presence → sinks → acknowledge.

    A message is acknowledged only after its readings, or its reject, are committed; when a store fails the
    batch is retried and nothing is acknowledged, so the broker keeps it.
    """

    def __init__(
        self,
        decoder: Decoder,
        telemetry: TelemetryStore,
        state: StateStore,
        presence: DevicePresence,
        clock: Clock,
        *,
        acknowledge: Callable[[Message], None],
        batch_size: int = 1000,
        retry_delay: float = 1.0,
    ) -> None:
        self._decoder = decoder
        self._telemetry = telemetry
        self._state = state
        self._presence = presence
        self._clock = clock
        self._acknowledge = acknowledge
        self._batch_size = batch_size
        self._retry_delay = retry_delay
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sinks: list[ReadingSink] = []
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.last_error: str | None = None

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
        """Decode, store and hand on one batch; raise TelemetryStoreError or StateStoreError if it is not durable."""
        readings: list[Reading] = []
        rejects: list[Reject] = []
        for message in messages:
            decoded = self._decoder.decode(message.topic, message.payload, message.received_ms)
            readings.extend(decoded.readings)
            rejects.extend(decoded.rejects)
        self._telemetry.write(readings)
        if rejects:
            with self._state.begin() as tx:
                tx.add_rejects(rejects)
        now = self._clock.now()
        self._presence.observe(readings, int(now.timestamp() * 1000))
        for sink in self.sinks:
            try:
                sink.on_readings(readings, now)
            except Exception:
                log.exception("%s failed on a batch of %d readings", type(sink).__name__, len(readings))
        self.received += len(messages)
        self.accepted += len(readings)
        for reject in rejects:
            self.rejected[_reason_class(reject.reason)] += 1
        for message in messages:
            self._acknowledge(message)

    def _run(self) -> None:
        while not self._stopping.is_set():
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
                self.last_error = None
                return
            except (TelemetryStoreError, StateStoreError) as exc:
                self.last_error = str(exc)
                log.error("ingest: %s; retrying the batch of %d in %.0f s", exc, len(batch), self._retry_delay)
            except Exception as exc:  # a store failing in a way we did not foresee must not kill ingest
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("ingest: unexpected failure on a batch of %d; retrying", len(batch))
            if self._stopping.wait(self._retry_delay):
                return


def _reason_class(reason: str) -> str:
    """Group reject reasons for counting: `[3] pressure_bar must be a number …` → `pressure_bar must be`."""
    text = reason.split("] ", 1)[-1]
    return " ".join(text.split()[:3])
